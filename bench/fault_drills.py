"""R1, R2: the two fault drills of docs/BENCHMARKS.md's reliability table, at fleet scale, with a
real Celery worker (prefork x 4) and a real beat on PostgreSQL and Redis.

R1: a worker is SIGKILLed (with its pool) in the middle of a publish to 500 pushed instances, and
    started again at once (as a supervisor would). Measured: seconds from the kill until every
    push is recorded, deliveries sent twice, and how many were in flight (sent and not
    recorded) at the kill; messages the broker still holds unacknowledged afterwards.
R2: PostgreSQL refuses every audit insert (SQLSTATE 53100, disk full) for 45 s in the middle of
    a publish to 500 pushed instances. Measured: seconds from the fault clearing until the first
    outcome is recorded and until every push is, and deliveries sent twice.

Run: python bench/fault_drills.py  (needs PostgreSQL and Redis; about ten minutes). Prints one
JSON object, the rounds beside their medians, as its last line. BENCH_ROUNDS, BENCH_INSTANCES and
BENCH_FAULT_SECONDS change the defaults (3, 500, 45)."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import PROVIDER_SEED, PYTHON, ROOT, environment, fresh_database, manage  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
INSTANCES = int(os.environ.get("BENCH_INSTANCES", 500))
FAULT_SECONDS = float(os.environ.get("BENCH_FAULT_SECONDS", 45))
DATABASE = "sso_bench_drills"

# Runs in a child process with the benchmark's settings (bench/common.py: environment).
DRILL = (
    PROVIDER_SEED
    + """
import json, os, sys, time, uuid
from pathlib import Path
from console import versions
from console.models import PushRequest
from tests import drills
from tests.support import start_worker, stop_worker
from sso_admin.celery import app

kind, instances, fault_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
folder = Path(sys.argv[4])
receiver = drills.FleetReceiver(delay=0.05 if kind == "kill" else 0.0)
fleet = drills.seed_fleet(provider, instances, receiver.url)
database_url = os.environ["DATABASE_URL"]
prefork = ("prefork", "--concurrency", "4")
queue = app.conf.task_default_queue
worker = start_worker(queue, folder, database_url, {}, pool=prefork)
beat = __import__("subprocess").Popen(
    [sys.executable, "-m", "celery", "-A", "sso_admin", "beat", "--loglevel", "WARNING",
     "--schedule", str(folder / "beat-schedule")], stdout=open(folder / "beat.log", "w"),
    stderr=__import__("subprocess").STDOUT)
time.sleep(3)  # the worker and the beat connect to Redis

def done():
    return drills.settled()[1] == 0

def wait(condition, limit):
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise SystemExit(f"not within {limit} s: {drills.settled()}")
        time.sleep(0.05)
    return time.monotonic() - started

result = {}
try:
    if kind == "kill":
        versions.publish(provider)
        wait(lambda: receiver.count() >= instances * 0.3, 120)
        drills.kill(worker)
        killed_at = time.monotonic()
        wait(receiver.idle, 30)  # what was sent before the kill is read to the end
        arrived = receiver.arrivals()
        recorded = set(PushRequest.objects.filter(state="succeeded")
                       .values_list("instance__name", flat=True))
        (folder / "second").mkdir()
        worker = start_worker(queue, folder / "second", database_url, {}, pool=prefork)
        wait(done, 600)
        result = {"recovery_seconds": round(time.monotonic() - killed_at, 1),
                  "in_flight_at_kill": len(set(arrived) - recorded)}
    else:
        receiver.hold.clear()
        versions.publish(provider)
        # Every thread of the 4 processes waits for an answer (well within the 5 s read
        # timeout): the fault starts in the middle of the push.
        wait(lambda: receiver.count() >= 64, 120)
        with drills.AuditInsertsRefused() as fault:
            receiver.hold.set()
            time.sleep(fault_seconds)  # the length of the outage being measured
            refused = fault.refusals()
            recorded_before = drills.settled()[0]
            fault.clear()
            cleared_at = time.monotonic()
            first = wait(lambda: drills.settled()[0] > recorded_before, 600)
            wait(done, 600)
        result = {"first_record_after_clear_seconds": round(first, 1),
                  "all_recorded_after_clear_seconds": round(time.monotonic() - cleared_at, 1),
                  "inserts_refused": refused}
finally:
    beat.terminate()
    stop_worker(worker)
arrivals = receiver.arrivals()
receiver.stop()
result.update(
    lost=len({i.name for i in fleet} - set(arrivals)),
    sent_twice=sum(arrivals.values()) - len(arrivals),
    succeeded=PushRequest.objects.filter(state="succeeded").count(),
    unacked_left=drills.unacked_messages(queue),
    unexpected=sum("raised unexpected" in p.read_text() for p in folder.rglob("*.log")),
)
print(json.dumps(result))
"""
)


def main():
    report = {"instances": INSTANCES, "worker": "prefork x 4", "fault_seconds": FAULT_SECONDS}
    for kind, name in (("kill", "R1_worker_killed"), ("full", "R2_audit_inserts_refused")):
        rounds = []
        for _ in range(ROUNDS):
            fresh_database(DATABASE)
            env = environment(DATABASE, LOG_LEVEL="WARNING")
            manage(env, "migrate", "--noinput")
            with tempfile.TemporaryDirectory() as folder:
                output = subprocess.run(
                    [PYTHON, "-c", DRILL, kind, str(INSTANCES), str(FAULT_SECONDS), folder],
                    cwd=ROOT, env=env, check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
            rounds.append(json.loads(output.strip().splitlines()[-1]))
            print(name, rounds[-1], file=sys.stderr)
        timed = [key for key in rounds[0] if key.endswith("_seconds")]
        report[name] = {
            "median": {key: statistics.median(r[key] for r in rounds) for key in timed},
            "rounds": rounds,
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
