"""Fault drills with real processes: nothing published is lost, nothing is applied twice, every
delivery is recorded, and a lost worker, a database blink or an agent outage heals by itself.

(The receiver-down drill is tests/test_push.py::test_a_receiver_that_is_down_fails_after_
retries_then_a_repush_delivers; the concurrent-edit drill is tests/test_providers.py::
TestEditing::test_a_stale_edit_is_refused_and_shows_what_changed.)
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection, transaction
from django.utils import timezone

from console import audit, delivery, tasks, versions
from console.models import AuditEvent, Instance, Provider, PushAttempt, PushRequest
from sso_admin.celery import app
from tests import drills
from tests.drills import FleetReceiver
from tests.loopback import LoopbackHTTPServer
from tests.support import (
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


def serve_in_thread(handler):
    """An HTTP server on a free port of 127.0.0.1, serving in daemon threads; (server, URL)."""
    server = LoopbackHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


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

        self.server, self.url = serve_in_thread(Handler)

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
        versions.publish(keycloak_provider)
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

        # The broker is back (this process's broker works): once the push is overdue (a
        # minute after publishing), the beat sweeper sends it.
        assert tasks.sweep_outbox() == 0
        PushRequest.objects.filter(pk=push.pk).update(due_at=timezone.now())
        assert tasks.sweep_outbox() == 1
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
            versions.publish(keycloak_provider)
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


# --- issue 16: concurrent publishes, a lost worker, a database blink, an agent outage ----------


class CountingReceiver:
    """Stands in for many agents: answers every signed push 200 and counts what arrived."""

    def __init__(self):
        receiver = self
        self.received = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                document = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.received.append((document["instance"], document["version"]))
                body = b'{"applied": true}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server, self.url = serve_in_thread(Handler)

    def stop(self):
        self.server.shutdown()


def require_postgresql():
    require_component(
        connection.vendor == "postgresql",
        "PostgreSQL (row locks are what these drills exercise)",
        "run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/…",
    )


def test_concurrent_publishes_with_a_running_worker_neither_deadlock_nor_lose_a_record(
    celery_worker, keycloak_provider
):
    require_postgresql()
    receiver = CountingReceiver()
    for number in range(20):
        make_instance(keycloak_provider, f"fleet-{number}", push_target="webhook",
                      webhook_url=receiver.url)  # fmt: skip
    errors = []

    def admin_publishing(rounds):
        try:
            for _ in range(rounds):
                versions.publish(Provider.objects.get(pk=keycloak_provider.pk))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))
        finally:
            connection.close()

    admins = [threading.Thread(target=admin_publishing, args=(8,)) for _ in range(2)]
    try:
        for admin in admins:
            admin.start()
        for admin in admins:
            admin.join()
        celery_worker.wait_until(
            lambda: not PushRequest.objects.filter(state="pending").exists(),
            "every push to end", timeout=120,
        )  # fmt: skip
    finally:
        receiver.stop()
    assert errors == []
    assert sorted(keycloak_provider.versions.values_list("number", flat=True)) == list(
        range(1, 17)
    )  # unique and contiguous
    assert set(PushRequest.objects.values_list("state", flat=True)) <= {"succeeded", "superseded"}
    # Every delivery that reached an agent is recorded: an attempt row and, when it ended the
    # request, its event.
    assert len(receiver.received) == PushAttempt.objects.filter(ok=True).count()
    succeeded = PushRequest.objects.filter(state="succeeded").count()
    assert AuditEvent.objects.filter(action="push.succeeded").count() == succeeded
    assert "deadlock" not in celery_worker.log().lower()
    assert audit.verify_chain().ok


def test_a_lost_worker_loses_only_what_was_in_flight_and_the_sweeper_sends_it_soon(
    keycloak_provider, tmp_path, django_db_blocker
):
    """No redelivery by the broker here (the default visibility timeout is an hour): the
    sweeper must find the killed batch's unrecorded requests by their own deadline."""
    receiver = CountingReceiver()
    held = SlowFirstProxy(receiver.url, delay=8)  # the first push waits 8 s for its answer
    instances = [
        make_instance(keycloak_provider, f"crash-{number}", push_target="webhook",
                      webhook_url=held.url if number == 0 else receiver.url)[0]
        for number in range(5)
    ]  # fmt: skip
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    database_url = subprocess_database_url(django_db_blocker)
    worker = start_worker(queue, tmp_path, database_url)
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        versions.publish(keycloak_provider)
        wait_for(lambda: held.received == 1 and len(receiver.received) == 4, "the deliveries")
        wait_for(
            lambda: PushRequest.objects.filter(state="succeeded").count() == 4,
            "the four answered ones to be recorded",
        )
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)
        lost = PushRequest.objects.get(instance=instances[0])
        assert lost.state == "pending"
        # Due again once its lease runs out (the batch renewed it while it lived).
        started = lost.attempt_log.first()
        assert lost.due_at - timezone.now() <= timezone.timedelta(seconds=delivery.LEASE_SECONDS)
        assert started is None  # its attempt was never recorded: the worker died waiting
        (tmp_path / "second").mkdir()
        second = start_worker(queue, tmp_path / "second", database_url)
        try:
            wait_for(lambda: tasks.sweep_outbox() == 1, "the sweeper to send it", timeout=60)
            wait_for(
                lambda: PushRequest.objects.get(pk=lost.pk).state == "succeeded",
                "the swept push", timeout=60,
            )  # fmt: skip
        finally:
            stop_worker(second)
    finally:
        app.conf.task_default_queue = previous_queue
        stop_worker(worker)
        held.stop()
        receiver.stop()
    # Only the one in flight was sent twice.
    counts = {name: [n for n, _ in receiver.received].count(name) for name, _ in receiver.received}
    assert counts == {"crash-0": 2, "crash-1": 1, "crash-2": 1, "crash-3": 1, "crash-4": 1}


def test_a_database_connection_lost_while_pushing_is_reopened_to_record_the_outcomes(
    keycloak_provider, monkeypatch
):
    require_postgresql()
    monkeypatch.setattr(tasks, "dispatch_after_commit", lambda ids: None)  # delivered here
    receiver = CountingReceiver()
    held = SlowFirstProxy(receiver.url, delay=2)
    instance, _ = make_instance(keycloak_provider, "blink", push_target="webhook",
                                webhook_url=held.url)  # fmt: skip
    versions.publish(keycloak_provider)
    push = PushRequest.objects.get(instance=instance)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]

    def restart_while_it_waits():
        wait_for(lambda: held.received >= 1, "the push waiting for the agent's answer", 30)
        database = connection.settings_dict
        with psycopg.connect(
            host=database["HOST"] or "127.0.0.1", port=database["PORT"] or 5432,
            user=database["USER"] or "postgres", dbname=database["NAME"], autocommit=True,
        ) as admin:  # fmt: skip
            admin.execute("SELECT pg_terminate_backend(%s)", [backend])

    blink = threading.Thread(target=restart_while_it_waits)
    blink.start()
    try:
        assert delivery.deliver([push.pk]) == []
    finally:
        blink.join()
        held.stop()
        receiver.stop()
    push.refresh_from_db()
    assert push.state == "succeeded" and push.attempt_log.count() == 1
    assert AuditEvent.objects.filter(action="push.succeeded").count() == 1


def test_an_agent_down_for_a_while_is_retried_for_about_a_day_and_then_delivered(
    keycloak_provider, admin_user, monkeypatch
):
    from django.test import Client

    sent = []
    monkeypatch.setattr(tasks, "dispatch_after_commit", sent.extend)
    port = free_port()
    instance, _ = make_instance(keycloak_provider, "restarting", push_target="webhook",
                                webhook_url=f"http://127.0.0.1:{port}/")  # fmt: skip
    versions.publish(keycloak_provider)
    push = PushRequest.objects.get(instance=instance)
    PushRequest.objects.filter(pk=push.pk).update(attempts=9)  # nine refused tries so far
    [(pk, delay)] = delivery.deliver([push.pk])  # the tenth: refused too, backing off
    assert 30 <= delay <= 60  # at most a minute in its early tries: back soon after an outage
    push.refresh_from_db()
    assert push.state == "pending" and "connection refused" in push.last_error

    page = Client()
    page.force_login(admin_user)
    fleet = page.get("/instances/").content.decode()
    assert "retrying" in fleet and "tried 10×" in fleet

    receiver = CountingReceiver()  # the agent is back, on a new address
    Instance.objects.filter(pk=instance.pk).update(webhook_url=receiver.url)
    try:
        sent.clear()
        assert tasks.sweep_outbox() == 0  # not due yet
        PushRequest.objects.filter(pk=push.pk).update(due_at=timezone.now())  # the hour passed
        assert tasks.sweep_outbox() == 1 and sent == [push.pk]
        assert delivery.deliver(sent) == []
    finally:
        receiver.stop()
    assert PushRequest.objects.get(pk=push.pk).state == "succeeded"
    # The default schedule: even with the shortest random delays, tries go on for over 12 h.
    monkeypatch.setattr(delivery.random, "uniform", lambda low, high: low)
    shortest = sum(delivery.retry_delay(attempts) for attempts in range(1, 90))
    assert shortest > 12 * 3600 and django_settings.PUSH_MAX_ATTEMPTS == 90


def another_waits_on_a_lock():
    """Whether another session of this database waits for a lock (asked from inside a
    transaction: the statistics snapshot is cleared first)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def test_a_publish_and_a_batch_recording_take_their_locks_in_one_order(keycloak_provider):
    """The deadlock of the concurrent-publish drill, made deterministic: a batch holds a
    pending push row while it records, then takes the audit chain head; a publish supersedes
    that row. Both must take the rows before the head."""
    require_postgresql()
    instance, _ = make_instance(keycloak_provider, "contended", push_target="webhook",
                                webhook_url="http://127.0.0.1:9/")  # fmt: skip
    versions.publish(keycloak_provider)
    pending = PushRequest.objects.get(instance=instance)
    row_locked, errors = threading.Event(), []

    def batch_recording():
        try:
            with audit.change():
                PushRequest.objects.filter(pk=pending.pk).update(last_error="recording")
                row_locked.set()
                wait_for(another_waits_on_a_lock, "the publish waiting for the row", 30)
                audit.record(audit.Action.PUSH_FAILED, target=instance)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"batch: {error!r}")
        finally:
            connection.close()

    def admin_publishing():
        row_locked.wait(10)
        try:
            versions.publish(Provider.objects.get(pk=keycloak_provider.pk))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(f"publish: {error!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=batch_recording), threading.Thread(target=admin_publishing)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert PushRequest.objects.get(pk=pending.pk).state == "superseded"
    assert audit.verify_chain().ok


# --- issue 25: a worker killed mid-batch, and a database refusing writes mid-push ----------------


@pytest.fixture
def shared_cache(settings):
    """Redis as the cache of this process and of the workers, as in production: the batches'
    leases live there."""
    require_component(
        django_settings.CELERY_BROKER_URL.startswith("redis://"),
        "A Redis broker and cache (the drills kill workers and count the broker's messages)",
        "run with CELERY_BROKER_URL=redis://127.0.0.1:6379/1 and Redis started",
    )
    url = "redis://127.0.0.1:6379/8"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": url}}  # fmt: skip
    from django.core.cache import cache

    cache.clear()
    return url


def test_a_worker_killed_mid_batch_loses_nothing_and_resends_only_what_was_in_flight(
    keycloak_provider, tmp_path, django_db_blocker, shared_cache
):
    require_postgresql()
    receiver = FleetReceiver(delay=0.02)
    fleet = drills.seed_fleet(keycloak_provider, 150, receiver.url)
    queue = f"kill-{uuid.uuid4().hex[:8]}"
    database_url = subprocess_database_url(django_db_blocker)
    environment = {"CACHE_URL": shared_cache}
    prefork = ("prefork", "--concurrency", "2")
    worker = start_worker(queue, tmp_path, database_url, environment, pool=prefork)
    previous_queue, app.conf.task_default_queue = app.conf.task_default_queue, queue
    second = None
    try:
        versions.publish(keycloak_provider)
        wait_for(lambda: receiver.count() >= 40, "deliveries under way")
        drills.kill(worker)
        # What the killed worker had sent is read to the end (its connections close).
        wait_for(receiver.idle, "the receiver to read what was sent before the kill")
        arrived = receiver.arrivals()
        recorded = set(
            PushRequest.objects.filter(state="succeeded").values_list("instance__name", flat=True)
        )
        in_flight = len(set(arrived) - recorded)  # sent, answered or not, and not recorded
        (tmp_path / "second").mkdir()
        second = start_worker(queue, tmp_path / "second", database_url, environment, pool=prefork)
        drills.play_the_beat(lambda: drills.settled()[1] == 0, timeout=180)
    finally:
        app.conf.task_default_queue = previous_queue
        for process in (worker, second):
            if process is not None:
                stop_worker(process)
        receiver.stop()
    arrivals = receiver.arrivals()
    assert set(arrivals) == {instance.name for instance in fleet}  # nothing lost
    assert sum(arrivals.values()) - len(fleet) <= in_flight  # nothing else sent twice
    assert PushRequest.objects.filter(state="succeeded").count() == len(fleet)
    assert drills.unacked_messages(queue) == 0  # nothing left to come back in an hour


def test_a_database_refusing_writes_mid_push_records_every_answer_once_and_sends_none_twice(
    keycloak_provider, tmp_path, django_db_blocker, shared_cache
):
    """The audit insert fails (disk full) for longer than the worker used to wait (14 s): the
    answers are recorded once the database takes them, nothing is sent twice, a publish meanwhile
    is refused in one line, and no task dies with a traceback."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from console.models import ConfigVersion

    require_postgresql()
    receiver = FleetReceiver()
    receiver.hold.clear()
    fleet = drills.seed_fleet(keycloak_provider, 40, receiver.url)
    queue = f"full-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        queue, tmp_path, subprocess_database_url(django_db_blocker), {"CACHE_URL": shared_cache}
    )
    previous_queue, app.conf.task_default_queue = app.conf.task_default_queue, queue
    try:
        versions.publish(keycloak_provider)
        wait_for(lambda: receiver.count() >= 16, "pushes waiting for their answers")
        with drills.AuditInsertsRefused() as fault:
            receiver.hold.set()  # the answers come while the database refuses to record them
            wait_for(lambda: fault.refusals() >= 6, "six refused tries (~17 s)", timeout=90)
            versions_before = ConfigVersion.objects.count()
            with pytest.raises(CommandError) as refused:
                call_command("publish", keycloak_provider.name)
            assert "\n" not in str(refused.value)
            assert str(refused.value).startswith("Not published: the database refused the change")
            assert ConfigVersion.objects.count() == versions_before  # nothing half made
            fault.clear()
            drills.play_the_beat(lambda: drills.settled()[1] == 0, timeout=120)
    finally:
        app.conf.task_default_queue = previous_queue
        stop_worker(worker)
        receiver.stop()
    assert receiver.arrivals() == {instance.name: 1 for instance in fleet}  # none sent twice
    assert PushRequest.objects.filter(state="succeeded").count() == len(fleet)
    # Each answered attempt is in the history once (the one the database refused at first).
    assert PushAttempt.objects.filter(ok=True).count() == len(fleet)
    assert AuditEvent.objects.filter(action="push.succeeded").count() == len(fleet)
    log = worker.log()
    assert "The database refused 16 push outcomes" in log or "The database refused" in log
    assert "raised unexpected" not in log and "Traceback" not in log
