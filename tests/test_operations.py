"""Operating the console: Prometheus metrics across gunicorn workers, JSON logs with request ids,
and request ids in audit events. gunicorn runs for real (two workers, gunicorn.conf.py) on the
test database."""

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from console import audit, versions
from console.models import AuditEvent
from tests.support import (
    ROOT,
    free_port,
    make_instance,
    subprocess_database_url,
    subprocess_environment,
    wait_for,
    wait_for_port,
)

pytestmark = pytest.mark.django_db(transaction=True)

METRICS_TOKEN = "metrics-token-for-tests-0123456789abcdef"


class Gunicorn:
    def __init__(self, folder, database_url, metrics_dir=True):
        """metrics_dir=False: gunicorn.conf.py makes the metrics folder, as by default."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.metrics_dir = folder / "metrics"
        self.log_path = folder / "gunicorn.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open while it runs
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "sso_admin.wsgi", "--bind",
             f"127.0.0.1:{self.port}", "--workers", "2"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
            env={**subprocess_environment(), "DATABASE_URL": database_url,
                 "LOG_FORMAT": "json", "METRICS_TOKEN": METRICS_TOKEN,
                 **({"PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)} if metrics_dir else {}),
                 # Redis: each worker keeps the pull state (console/pull_state.py)
                 "CACHE_URL": "redis://127.0.0.1:6379/8"},
        )  # fmt: skip
        wait_for_port(self.port, self.process, self.log_path)

    def get(self, path, headers=None):
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - ours
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as answer:
            return answer.code, dict(answer.headers), answer.read()

    def post(self, path, body, headers):
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **headers},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - ours
            return response.status

    def metrics(self):
        status, _, body = self.get("/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert status == 200, body
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }

    def log_lines(self):
        return self.log_path.read_text().splitlines()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=20)
        self._log.close()


@pytest.fixture
def gunicorn(tmp_path, django_db_blocker):
    server = Gunicorn(tmp_path, subprocess_database_url(django_db_blocker))
    yield server
    server.stop()


def value(metrics, name, **labels):
    return metrics.get((name, tuple(sorted(labels.items()))), 0)


def test_metrics_add_up_every_worker_and_follow_the_fleet(gunicorn, keycloak_provider):
    instance, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    pull = f"/api/v1/instances/{instance.pk}/config"
    good, bad = {"Authorization": f"Bearer {token}"}, {"Authorization": "Bearer wrong"}

    def workers_that_counted():
        return {path.name for path in gunicorn.metrics_dir.glob("counter_*.db")}

    statuses = []
    with ThreadPoolExecutor(8) as pool:
        # Bursts of concurrent polls until both workers have answered some (the kernel hands
        # connections to whichever worker accepts first, so one burst may reach only one).
        for _ in range(40):
            burst = [good] * 20 + [bad] * 5
            statuses += pool.map(lambda h: gunicorn.get(pull, h)[0], burst)
            if len(workers_that_counted()) == 2:
                break
    assert len(workers_that_counted()) == 2, "both workers should have answered pulls"
    assert {200, 401} <= set(statuses) <= {200, 401, 429}  # 429: a per-worker rate limit

    # Whichever worker answers the scrape, it reports what both counted.
    for _ in range(4):
        metrics = gunicorn.metrics()
        for status in set(statuses):
            counted = value(metrics, "diffgram_sso_pulls_total", status=str(status))
            assert counted == statuses.count(status), status
    assert value(metrics, "diffgram_sso_instances", state="drifting") == 1  # pulled, not applied

    def both_workers_hold_the_instance():  # once subscribed to invalidations, each keeps it
        for _ in range(10):
            gunicorn.get(pull, good)
        return value(gunicorn.metrics(), "diffgram_sso_pull_state_entries") == 2

    wait_for(both_workers_hold_the_instance, "both workers to answer from memory", timeout=30)
    assert value(metrics, "diffgram_sso_providers", outcome="passed") == 1
    assert value(metrics, "diffgram_sso_provider_last_passed_age_seconds",
                 provider=keycloak_provider.name) > 0  # fmt: skip
    assert value(metrics, "diffgram_sso_pushes_pending") == 0
    assert value(metrics, "diffgram_sso_audit_events_total") == AuditEvent.objects.count()
    assert "diffgram_sso_celery_queue_length" in {name for name, _ in metrics}
    assert value(metrics, "diffgram_sso_request_duration_seconds_count", view="api-pull-config")

    # The fleet changes: the agent reports the version applied; a second instance appears.
    report = {"version": 1, "status": "ok", "detail": ""}
    assert gunicorn.post(f"/api/v1/instances/{instance.pk}/applied", report, good) == 200
    make_instance(None, "lab-2")  # no provider yet: nothing to run
    metrics = gunicorn.metrics()
    assert value(metrics, "diffgram_sso_instances", state="drifting") == 0
    # Keycloak used directly: Diffgram 56f04d8's own defects block every sign-in.
    assert value(metrics, "diffgram_sso_instances", state="blocked") == 1
    assert value(metrics, "diffgram_sso_instances", state="unassigned") == 1


def test_metrics_count_every_worker_in_the_folder_gunicorn_makes(
    tmp_path, django_db_blocker, keycloak_provider
):
    """Without PROMETHEUS_MULTIPROC_DIR, as the README's defaults run it."""
    server = Gunicorn(tmp_path, subprocess_database_url(django_db_blocker), metrics_dir=False)
    try:
        instance, token = make_instance(keycloak_provider, "lab")
        versions.publish(keycloak_provider)
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(
                lambda _: server.get(f"/api/v1/instances/{instance.pk}/config",
                                     {"Authorization": f"Bearer {token}"})[0],
                range(40),
            ))  # fmt: skip
        assert set(statuses) <= {200, 429}
        counted = value(server.metrics(), "diffgram_sso_pulls_total", status="200")
        assert counted == statuses.count(200) > 0
    finally:
        server.stop()


def test_metrics_need_the_token(gunicorn, client, settings):
    assert gunicorn.get("/metrics")[0] == 401
    assert gunicorn.get("/metrics", {"Authorization": "Bearer nope"})[0] == 401
    settings.METRICS_TOKEN = ""
    refused = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ")
    assert refused.status_code == 403 and "set METRICS_TOKEN" in refused.json()["error"]


def test_guessing_the_metrics_token_is_slowed_per_address(client, settings):
    settings.METRICS_TOKEN, settings.RATE_LIMIT_PULL_PER_IP = "t" * 32, "3/m"
    guesses = [
        client.get(reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {n}").status_code
        for n in range(5)
    ]
    assert guesses == [401, 401, 401, 429, 429]
    elsewhere = client.get(
        reverse("metrics"), HTTP_AUTHORIZATION=f"Bearer {'t' * 32}", REMOTE_ADDR="192.0.2.9"
    )
    assert elsewhere.status_code == 200


def test_json_logs_parse_line_by_line_and_carry_the_request_id(gunicorn, keycloak_provider):
    instance, token = make_instance(keycloak_provider, "lab")
    given = str(uuid.uuid4())
    status, headers, _ = gunicorn.get("/no-such-page", {"X-Request-ID": given})
    assert status in (302, 404) and headers["X-Request-ID"] == given
    # No X-Request-ID from a proxy (or not a UUID): the console makes one.
    status, headers, _ = gunicorn.get(
        f"/api/v1/instances/{instance.pk}/config",
        {"Authorization": f"Bearer {token}", "X-Request-ID": "not a uuid\\n forged"},
    )
    assert status == 404  # nothing published yet
    made = headers["X-Request-ID"]
    assert made != "not a uuid\\n forged" and uuid.UUID(made)
    gunicorn.stop()

    lines = gunicorn.log_lines()
    records = [json.loads(line) for line in lines]  # every line, gunicorn's own included
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    [not_found] = [r for r in records if r.get("request_id") == made]
    assert not_found["logger"] == "django.request" and not_found["level"] == "WARNING"
    assert not_found["instance_id"] == instance.pk
    assert "forged" not in "\n".join(lines)


def test_audit_events_carry_the_request_id_of_the_change(
    admin_client, keycloak_provider, audit_triggers_disabled
):
    given = str(uuid.uuid4())
    response = admin_client.post(
        reverse("provider-validate", args=[keycloak_provider.pk]), HTTP_X_REQUEST_ID=given
    )
    assert response["X-Request-ID"] == given
    event = AuditEvent.objects.filter(action="provider.validated").latest("id")
    assert event.request_id == given
    page = admin_client.get(reverse("history-event", args=[event.pk])).content.decode()
    assert given in page

    # The hash covers it: pointing an event at another request breaks the chain there.
    assert audit.verify_chain().ok
    with audit_triggers_disabled() as cursor:
        cursor.execute(
            "UPDATE console_auditevent SET request_id = %s WHERE id = %s",
            [str(uuid.uuid4()), event.pk],
        )
    broken = audit.verify_chain()
    assert not broken.ok and broken.first_bad_id == event.pk


def test_the_request_id_follows_a_publish_into_the_push_task(
    celery_worker, admin_client, keycloak_provider, webhook_instance
):
    instance, agent = webhook_instance
    agent.serve(agent.port)
    given = str(uuid.uuid4())
    admin_client.post(
        reverse("provider-publish", args=[keycloak_provider.pk]),
        {"confirm": "yes", "revision": keycloak_provider.revision},
        HTTP_X_REQUEST_ID=given,
    )
    celery_worker.wait_until(
        lambda: AuditEvent.objects.filter(action="push.succeeded").exists(), "the push"
    )
    published = AuditEvent.objects.get(action="version.published")
    pushed = AuditEvent.objects.get(action="push.succeeded")  # written by the worker
    assert published.request_id == pushed.request_id == given
    assert given in celery_worker.log()  # the worker's log lines of that task carry it too
