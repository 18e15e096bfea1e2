"""Rate limits: sign-in attempts and bad instance tokens (django-ratelimit over the Django
cache), and each instance's pulls (counted in process memory).

Sign-in and bad-token counters live in the default cache: set CACHE_URL to Redis in production
so that every web process shares them (a deploy check warns otherwise). An instance's pulls are
counted in each web process, so that a poll costs no round trip: with N web processes an
instance can make up to N times RATE_LIMIT_PULL_PER_INSTANCE before every process refuses it.
"""

from __future__ import annotations

import functools
import logging
import time

from django.conf import settings
from django_ratelimit.core import is_ratelimited

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
logger = logging.getLogger(__name__)


_cache_down = False


def exceeded(request, group, rate, key="ip") -> bool:
    """Count this request against `group` and say whether the limit is exceeded. When the
    cache cannot be reached the counter fails open (logged once per outage): a limit that
    cannot count must not turn every request into a 500."""
    global _cache_down
    try:
        limited = is_ratelimited(request=request, group=group, key=key, rate=rate, increment=True)
    except Exception as error:  # noqa: BLE001 - whatever the cache backend raises
        if not _cache_down:
            logger.error(
                "Rate limits are not counted: the cache is unreachable (%s).",
                type(error).__name__,
            )
        _cache_down = True
        return False
    if _cache_down:
        logger.warning("Rate limits are counted again: the cache is back.")
    _cache_down = False
    return limited


@functools.cache
def parse_rate(rate) -> tuple[int, int]:
    """'120/m' -> (120, 60); '10/5m' -> (10, 300)."""
    count, window = rate.split("/")
    return int(count), int(window[:-1] or "1") * UNITS[window[-1]]


def retry_after(rate) -> int:
    """Seconds of the rate's window, for the Retry-After header."""
    return parse_rate(rate)[1]


# instance id -> (window number, pulls in it), in this process
_pull_windows: dict[int, tuple[int, int]] = {}


def instance_pull_exceeded(instance_id) -> bool:
    """Count a pull by this instance in this process (a fixed window) and say whether it is
    over RATE_LIMIT_PULL_PER_INSTANCE."""
    allowed, seconds = parse_rate(settings.RATE_LIMIT_PULL_PER_INSTANCE)
    window = int(time.time() // seconds)
    previous = _pull_windows.get(instance_id)
    count = previous[1] + 1 if previous is not None and previous[0] == window else 1
    _pull_windows[instance_id] = (window, count)
    return count > allowed


def login_limited(request) -> bool:
    """Sign-in attempts, as django-axes' combination mode counts them: per client address
    (RATE_LIMIT_LOGIN), so one address guessing cannot lock the account out for everyone
    else, and per username at a slower rate (RATE_LIMIT_LOGIN_PER_USERNAME), against guessing
    one account from many addresses."""
    username = request.POST.get("username", "")[:150].lower()
    ip_limited = exceeded(request, "login-ip", settings.RATE_LIMIT_LOGIN)
    user_limited = exceeded(
        request, "login-user", settings.RATE_LIMIT_LOGIN_PER_USERNAME,
        key=lambda group, r: username,
    )  # fmt: skip
    return ip_limited or user_limited
