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
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django_ratelimit.core import get_usage, is_ratelimited

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


def first_in_window(name, seconds) -> tuple[bool, int]:
    """Count an occurrence of `name` in the present window of `seconds` (in the shared cache,
    so across web processes): (whether it is the window's first, how many the window before
    had that were not its first). A cache outage counts every occurrence as a first."""
    window = int(time.time() // seconds)
    counter = f"first-in-window:{name}:{window}"
    try:
        if not cache.add(counter, 1, 2 * seconds):
            cache.incr(counter)
            return False, 0
        return True, cache.get(f"first-in-window:{name}:{window - 1}", 1) - 1
    except Exception:  # noqa: BLE001 - whatever the cache backend raises
        return True, 0


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


def pause(seconds) -> None:
    """Wait (the slowed sign-in); tests replace it to move a clock instead."""
    time.sleep(seconds)


@dataclass(frozen=True)
class LoginVerdict:
    refused: str = ""  # why, when the attempt is refused (429) before its password is checked
    retry_after: int = 0
    slow_down: float = 0.0  # seconds to wait before checking the password

    @property
    def minutes(self) -> int:
        return -(-self.retry_after // 60)


def _failures(request, group, rate, key, *, count) -> int:
    """Failed sign-ins in `group`'s window so far (one more when `count`); 0 when the cache
    cannot say (failing open, as `exceeded` does)."""
    try:
        usage = get_usage(request=request, group=group, key=key, rate=rate, increment=count)
    except Exception:  # noqa: BLE001 - whatever the cache backend raises
        return 0
    return usage["count"] if usage else 0


def _login_counters(request):
    """(group, rate, key) of the three counters of failed sign-ins: per client address, per
    username from that address, per username from everywhere."""
    username = request.POST.get("username", "")[:150].lower()
    return (
        ("login-failed-ip", settings.RATE_LIMIT_LOGIN, "ip"),
        (f"login-failed-user-ip:{username}", settings.RATE_LIMIT_LOGIN_PER_USERNAME, "ip"),
        ("login-failed-user", settings.LOGIN_SLOWDOWN_PER_USERNAME, lambda group, r: username),
    )


def login_verdict(request) -> LoginVerdict:
    """What to do with a sign-in attempt, before its password is checked. Only failed sign-ins
    count (login_failed), and only those that got this far: an attempt refused here counts for
    nothing, and a successful sign-in never does.

    - RATE_LIMIT_LOGIN failures from one address: that address is refused for the window;
    - RATE_LIMIT_LOGIN_PER_USERNAME failures for one username from one address: that username
      is refused from that address (someone guessing from one address locks out only that
      address, never the real user elsewhere);
    - LOGIN_SLOWDOWN_PER_USERNAME failures for one username from every address together: each
      further attempt on it waits LOGIN_SLOWDOWN_SECONDS, which slows guessing from many
      addresses without refusing the real user."""
    by_address, by_account, by_username = _login_counters(request)
    for (group, rate, key), why in (
        (by_address, "from your address"),
        (by_account, "for this username from your address"),
    ):
        allowed, window = parse_rate(rate)
        if _failures(request, group, rate, key, count=False) >= allowed:
            return LoginVerdict(refused=why, retry_after=window)
    group, rate, key = by_username
    if _failures(request, group, rate, key, count=False) >= parse_rate(rate)[0]:
        return LoginVerdict(slow_down=settings.LOGIN_SLOWDOWN_SECONDS)
    return LoginVerdict()


def login_failed(request) -> None:
    """Count a sign-in whose credentials were wrong (or refused) in every counter."""
    for group, rate, key in _login_counters(request):
        _failures(request, group, rate, key, count=True)
