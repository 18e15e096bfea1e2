import json
import subprocess
import sys

import pytest
from django.urls import reverse

from tests.support import ROOT, subprocess_environment


@pytest.mark.django_db
def test_it_reports_healthy_without_login(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "status": "ok"}


def healthz_in_a_fresh_process(**environment):
    """GET /healthz in a new process whose settings point at something that does not answer."""
    script = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **subprocess_environment(),
            "DJANGO_SETTINGS_MODULE": "sso_admin.settings",
            "ALLOWED_HOSTS": "testserver",
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_answers_503_when_the_broker_is_unreachable():
    # Nothing listens on port 1: a real connection attempt that fails.
    outcome = healthz_in_a_fresh_process(CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert outcome["status"] == 503
    assert outcome["body"]["broker"] == "unreachable"
    assert "127.0.0.1" not in json.dumps(outcome["body"])  # hosts go to the log only


def test_it_answers_503_when_the_database_is_unreachable():
    outcome = healthz_in_a_fresh_process(DATABASE_URL="postgres://nobody@127.0.0.1:1/nothing")
    assert outcome["status"] == 503
    assert outcome["body"] == {"database": "unreachable", "broker": "ok", "status": "unavailable"}
