"""Rate limits (django-ratelimit over the Django cache): sign-in attempts and the pull API.

Counters live in the default cache: set CACHE_URL to Redis in production so that every web
process shares them (a deploy check warns otherwise).
"""

from django.conf import settings
from django_ratelimit.core import is_ratelimited


def exceeded(request, group, rate, key="ip"):
    """Count this request against `group` and say whether the limit is exceeded."""
    return is_ratelimited(request=request, group=group, key=key, rate=rate, increment=True)


def retry_after(rate):
    """Seconds of the rate's window, for the Retry-After header."""
    _, window = rate.split("/")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number = window[:-1] or "1"
    return int(number) * units[window[-1]]


def login_limited(request):
    username = request.POST.get("username", "")[:150].lower()
    return exceeded(request, "login-ip", settings.RATE_LIMIT_LOGIN) or exceeded(
        request, "login-user", settings.RATE_LIMIT_LOGIN, key=lambda group, r: username
    )
