import logging

from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from sso_admin.celery import app as celery_app

logger = logging.getLogger(__name__)


def _database_reachable():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        logger.exception("healthz: database unreachable")
        return False


def _broker_reachable():
    try:
        with celery_app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=3)
        return True
    except Exception:
        logger.exception("healthz: broker unreachable")
        return False


@login_not_required
@never_cache
@require_GET
def healthz(request):
    """For load balancers: 200 when the database and the broker answer, 503 otherwise.

    Only "ok"/"unreachable" is returned; the reason (which may name hosts) goes to the log.
    """
    checks = {"database": _database_reachable(), "broker": _broker_reachable()}
    healthy = all(checks.values())
    body = {name: "ok" if ok else "unreachable" for name, ok in checks.items()}
    body["status"] = "ok" if healthy else "unavailable"
    return JsonResponse(body, status=200 if healthy else 503)
