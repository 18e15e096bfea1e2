"""Fault drills with real processes: nothing published is lost, nothing is applied twice.

(The receiver-down drill is tests/test_push.py::test_a_receiver_that_is_down_fails_after_
retries_then_a_repush_delivers; the concurrent-edit drill is tests/test_providers.py::
TestEditing::test_a_stale_edit_is_refused_and_shows_what_changed.)
"""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings as django_settings
from django.db import transaction

from console import rollout
from console.models import AuditEvent, Instance, PushRequest
from sso_admin.celery import app
from tests.conftest import (
    ROOT,
    AgentProcess,
    free_port,
    make_instance,
    require_component,
    start_worker,
    stop_worker,
    subprocess_database_url,
    subprocess_environment,
    wait_for,
)
from tests.worker_tasks import write_marker

pytestmark = pytest.mark.django_db(transaction=True)


class SlowFirstProxy:
    """Forwards webhook POSTs to the agent; holds the first one for `delay` seconds, so a
    worker can be killed while it waits for the answer."""

    def __init__(self, target, delay):
        proxy = self
        self.received = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                proxy.received += 1
                if proxy.received == 1:
                    time.sleep(delay)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                forwarded = urllib.request.Request(target, data=body, headers=dict(self.headers))
                try:
                    with urllib.request.urlopen(forwarded, timeout=10) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the worker that asked is gone

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def test_a_worker_killed_mid_push_is_redelivered_and_applied_once(
    keycloak_provider, live_server, tmp_path, django_db_blocker
):
    require_component(
        django_settings.CELERY_BROKER_URL.startswith("redis://"),
        "A Redis broker (the filesystem broker cannot redeliver unacknowledged tasks)",
        "run with CELERY_BROKER_URL=redis://127.0.0.1:6379/1 and Redis started",
    )
    agent_port = free_port()
    proxy = SlowFirstProxy(f"http://127.0.0.1:{agent_port}/", delay=6)
    instance, token = make_instance(
        keycloak_provider, "drill", push_target="webhook", webhook_url=proxy.url
    )
    agent = AgentProcess(tmp_path, instance, token, live_server.url)
    agent.serve(agent_port)
    queue = f"drill-{uuid.uuid4().hex[:8]}"
    environment = {"CELERY_VISIBILITY_TIMEOUT": "5"}
    database_url = subprocess_database_url(django_db_blocker)
    first = start_worker(queue, tmp_path, database_url, environment)
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    second = None
    try:
        rollout.publish(keycloak_provider)
        wait_for(lambda: proxy.received == 1, "the first delivery")
        os.kill(first.process.pid, signal.SIGKILL)  # mid-task: the message is not acked
        first.process.wait(timeout=10)
        (tmp_path / "second").mkdir()
        second = start_worker(queue, tmp_path / "second", database_url, environment)
        wait_for(
            lambda: PushRequest.objects.filter(instance=instance, state="succeeded").exists(),
            "the redelivered push",
            timeout=90,
        )
    finally:
        app.conf.task_default_queue = previous_queue
        for worker in (first, second):
            if worker:
                stop_worker(worker)
        agent.stop()
        proxy.stop()
    push = PushRequest.objects.get(instance=instance)
    assert push.attempts == 2  # the killed attempt, then the redelivered one
    assert proxy.received == 2
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1
    assert Instance.objects.get(pk=instance.pk).applied_version_number == 1


def test_a_publish_while_the_broker_is_down_is_delivered_by_the_sweeper(
    celery_worker, keycloak_provider, live_server, tmp_path, settings, django_db_blocker
):
    port = free_port()
    instance, token = make_instance(
        keycloak_provider, "outage", push_target="webhook", webhook_url=f"http://127.0.0.1:{port}/"
    )
    agent = AgentProcess(tmp_path, instance, token, live_server.url)
    agent.serve(port)
    try:
        # The admin publishes from a console whose broker is unreachable.
        result = subprocess.run(
            [sys.executable, "manage.py", "publish", "Lab Keycloak", "--note", "during outage"],
            cwd=ROOT,
            env={
                **subprocess_environment(),
                "DATABASE_URL": subprocess_database_url(django_db_blocker),
                "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "1"
        push = PushRequest.objects.get(instance=instance)
        assert (push.state, push.attempts) == ("pending", 0)  # kept in the outbox

        # The broker is back (this process's broker works): the beat sweeper sends it.
        settings.PUSH_SWEEP_AFTER_SECONDS = 0
        assert rollout.sweep_outbox() == 1
        celery_worker.wait_until(
            lambda: (
                Instance.objects.get(pk=instance.pk).applied_version_number == 1
                and PushRequest.objects.get(pk=push.pk).state == "succeeded"
            ),
            "the swept push",
        )
    finally:
        agent.stop()
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1


def test_a_rolled_back_publish_sends_nothing(celery_worker, keycloak_provider, tmp_path):
    port = free_port()
    proxy = SlowFirstProxy(f"http://127.0.0.1:{port}/", delay=0)
    make_instance(keycloak_provider, "rolled-back", push_target="webhook", webhook_url=proxy.url)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            rollout.publish(keycloak_provider)
            raise RuntimeError("the request failed after publishing")
        # The solo worker runs tasks in order: once this marker is written, a push sent
        # before it would have reached the receiver.
        with transaction.atomic():
            write_marker.delay_on_commit("after-rollback")
        celery_worker.wait_for_marker("after-rollback")
    finally:
        proxy.stop()
    assert proxy.received == 0
    assert not PushRequest.objects.exists()
