"""Fault drills shared by tests/test_fault_drills.py (small, with assertions) and
bench/fault_drills.py (500 instances, measured): a receiver standing in for a fleet of agents,
a worker killed with its children, and a database that refuses audit inserts for a while.

Both drills need PostgreSQL and a Redis broker and cache, as production has."""

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler

import redis
from django.conf import settings
from django.db import connection

from console import tasks
from console.models import Instance, PushRequest
from tests.loopback import LoopbackHTTPServer


class _Server(LoopbackHTTPServer):
    def __init__(self, *args, **kwargs):
        self.connections, self.connections_lock = 0, threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.connections_lock:
                self.connections -= 1


class FleetReceiver:
    """Answers signed pushes as agents do ({"applied": N}) and notes every arrival. While
    `hold` is clear, answers wait for it; `delay` slows every answer down."""

    def __init__(self, delay=0.0):
        receiver = self
        self.received, self.lock = [], threading.Lock()
        self.hold = threading.Event()
        self.hold.set()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                push = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.received.append(push["instance"])
                receiver.hold.wait(120)
                if delay:
                    time.sleep(delay)  # a slow agent (the drill's pace, not a wait for an event)
                body = json.dumps({"applied": push["version"], "changed": True}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the worker that asked is gone

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.received)

    def idle(self):
        """Whether no connection is open: every push sent so far has been read (and counted)."""
        return self.server.connections == 0

    def arrivals(self):
        """{instance name: how many pushes arrived for it}."""
        with self.lock:
            names = list(self.received)
        return {name: names.count(name) for name in set(names)}

    def stop(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def seed_fleet(provider, count, url):
    """`count` pushed instances of `provider`, all answered by the receiver at `url`."""
    fleet = []
    for number in range(count):
        instance = Instance(
            name=f"drill-{number}", url_base=f"https://drill-{number}.example.test/",
            provider=provider, push_target="webhook", webhook_url=f"{url}{number}",
        )  # fmt: skip
        instance.new_token()
        instance.new_signing_secret()
        fleet.append(instance)
    return Instance.objects.bulk_create(fleet)


def kill(worker):
    """SIGKILL the worker and its pool's processes, as an OOM killer or a lost host does."""
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=30)


def settled():
    """(recorded, pending) push requests."""
    pending = PushRequest.objects.filter(state=PushRequest.State.PENDING).count()
    return PushRequest.objects.exclude(state=PushRequest.State.PENDING).count(), pending


def play_the_beat(until, *, timeout, every=1.0, sweep_every=1.0):
    """Send the outbox sweep to the worker as Celery beat does (here every `sweep_every`
    seconds) until `until()` holds; returns the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    last_sweep = 0.0
    while not until():
        now = time.monotonic()
        if now - started > timeout:
            raise AssertionError(f"not done within {timeout} s: {settled()}")
        if now - last_sweep >= sweep_every:
            tasks.sweep_outbox.delay()
            last_sweep = now
        time.sleep(every / 10)  # polling the database for the outcome
    return time.monotonic() - started


def unacked_messages(queue):
    """Messages of `queue` the Redis broker holds as unacknowledged (they would be delivered
    again when the visibility timeout ends)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return sum(queue in value.decode("utf-8", "replace") for value in client.hvals("unacked"))


class AuditInsertsRefused:
    """PostgreSQL refuses every insert into the audit table with SQLSTATE 53100 (disk full)
    while this is active; `refusals()` counts the inserts it refused (a sequence: it counts
    even in the transactions the refusal rolls back)."""

    def __enter__(self):
        with connection.cursor() as cursor:
            cursor.execute("CREATE SEQUENCE IF NOT EXISTS drill_refusals")
            cursor.execute(
                """CREATE OR REPLACE FUNCTION drill_disk_full() RETURNS trigger AS $$
                BEGIN
                    PERFORM nextval('drill_refusals');
                    RAISE EXCEPTION 'could not extend file: No space left on device'
                        USING ERRCODE = '53100';
                END $$ LANGUAGE plpgsql"""
            )
            cursor.execute(
                "CREATE TRIGGER drill_disk_full BEFORE INSERT ON console_auditevent "
                "FOR EACH ROW EXECUTE FUNCTION drill_disk_full()"
            )
        return self

    def refusals(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value, is_called FROM drill_refusals")
            value, called = cursor.fetchone()
        return value if called else 0

    def clear(self):
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS drill_disk_full ON console_auditevent")

    def __exit__(self, *exc):
        self.clear()
        with connection.cursor() as cursor:
            cursor.execute("DROP FUNCTION IF EXISTS drill_disk_full()")
            cursor.execute("DROP SEQUENCE IF EXISTS drill_refusals")
