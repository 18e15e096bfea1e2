import hmac
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from console import broker, ratelimits
from console import metrics as console_metrics

logger = logging.getLogger(__name__)


def _database_reachable():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.exception("healthz: database unreachable")
        return False


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """For load balancers: 200 when the database and the broker answer, 503 otherwise.

    Only "ok"/"unreachable" is returned; the reason (which may name hosts) goes to the log.
    """
    checks = {"database": _database_reachable(), "broker": broker.reachable()}
    healthy = all(checks.values())
    body = {name: "ok" if ok else "unreachable" for name, ok in checks.items()}
    body["status"] = "ok" if healthy else "unavailable"
    return JsonResponse(body, status=200 if healthy else 503)


@login_not_required
@never_cache
@require_GET
def metrics(request):
    """Prometheus metrics (console/metrics.py), for a scraper holding METRICS_TOKEN; refused
    while no token is set."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return JsonResponse(
            {"error": "Metrics are off: set METRICS_TOKEN and scrape with that bearer token."},
            status=403,
        )
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        # Wrong tokens are counted per client address, as the pull API counts bad instance
        # tokens: guessing is slowed to a trickle, and a scraper with the token is never limited.
        if ratelimits.exceeded(request, "metrics-bad-token", settings.RATE_LIMIT_PULL_PER_IP):
            response = JsonResponse({"error": "Too many wrong metrics tokens."}, status=429)
            response["Retry-After"] = str(ratelimits.retry_after(settings.RATE_LIMIT_PULL_PER_IP))
            return response
        response = JsonResponse({"error": "Missing or wrong metrics token."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(console_metrics.scrape(), content_type=CONTENT_TYPE_LATEST)
