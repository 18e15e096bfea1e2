"""P2: one publish to a fleet with agent-webhook targets (1,000 instances unless --instances N),
through a real Celery worker on Redis, until every push is acknowledged; against the same signed
POSTs from a plain thread pool. Alternates the two ROUNDS times and reports medians (a shared
2-core machine drifts). Run: python bench/push_fanout.py [--instances N]  (PostgreSQL, Redis)"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import PROVIDER_SEED, PYTHON, ROOT, environment, fresh_database, manage  # noqa: E402

INSTANCES = int(os.environ.get("BENCH_INSTANCES", 1000))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", 4))  # one worker process per core, x2
POOL = os.environ.get("BENCH_POOL", "prefork")
BASELINE_THREADS = 32
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
PORT = 8772

SEED = (
    PROVIDER_SEED
    + """
batch = []
for number in range(__COUNT__):  # in bulk: 10,000 one by one take minutes
    instance = Instance(name=f"i{number}", url_base=f"https://i{number}.example.test/",
                        provider=provider, push_target="webhook",
                        webhook_url=f"http://127.0.0.1:__PORT__/i{number}")
    instance.new_token()
    instance.new_signing_secret()
    batch.append(instance)
Instance.objects.bulk_create(batch, batch_size=5000)
"""
)

PUBLISH = """
import django, time; django.setup()
from console import delivery, versions
from console.models import Provider, PushRequest
started = time.monotonic()
version = versions.publish(Provider.objects.get())
published = time.monotonic() - started
while PushRequest.objects.filter(version=version, state="pending").exists():
    time.sleep(0.02)
elapsed = time.monotonic() - started
states = {s: PushRequest.objects.filter(version=version, state=s).count()
          for s in ("succeeded", "failed", "pending")}
retried = PushRequest.objects.filter(version=version, attempts__gt=1).count()
print(elapsed, states["succeeded"], states["failed"], published, retried)
"""

BASELINE = """
import django, time; django.setup()
from concurrent.futures import ThreadPoolExecutor
from console import delivery, outbound
from console.models import ConfigVersion, Instance
version = ConfigVersion.objects.order_by("-number").first()  # the one just pushed
instances = list(Instance.objects.all())
for instance in instances:
    instance.webhook_url = instance.webhook_url.replace("/i", "/baseline-i")
def send(instance):
    body, headers = delivery.signed_webhook(instance, version)
    return outbound.post(instance.webhook_url, body, headers).status
started = time.monotonic()
with ThreadPoolExecutor(__CONCURRENCY__) as pool:
    statuses = list(pool.map(send, instances))
print(time.monotonic() - started, statuses.count(200))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=INSTANCES)
    instances = parser.parse_args().instances
    fresh_database("sso_bench_push")
    env = environment("sso_bench_push")
    manage(env, "migrate", "--noinput")
    folder = Path(tempfile.mkdtemp())
    received = folder / "received.txt"
    seed = SEED.replace("__COUNT__", str(instances)).replace("__PORT__", str(PORT))
    subprocess.run([PYTHON, "-c", seed], cwd=ROOT, env=env, check=True)
    receiver = subprocess.Popen([PYTHON, "bench/receiver.py", str(PORT), str(received)], cwd=ROOT)
    worker = subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "sso_admin", "worker", "--pool", POOL,
         "--concurrency", str(CONCURRENCY), "--queues", "bench", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,  # its banner; stdout is the report
    )  # fmt: skip
    rounds = []
    try:
        time.sleep(5)  # the worker connects to Redis
        for _ in range(ROUNDS):
            seen = len(received.read_text().split()) if received.exists() else 0
            elapsed, succeeded, failed, published, retried = subprocess.run(
                [PYTHON, "-c", PUBLISH], cwd=ROOT, env=env, check=True, capture_output=True,
                text=True,
            ).stdout.split()  # fmt: skip
            baseline, ok = subprocess.run(
                [PYTHON, "-c", BASELINE.replace("__CONCURRENCY__", str(BASELINE_THREADS))],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            paths = received.read_text().split()[seen:]
            pushed = collections.Counter(p for p in paths if not p.startswith("/baseline-"))
            rounds.append(
                {
                    "celery_seconds": round(float(elapsed), 2),
                    "of_which_publish_seconds": round(float(published), 2),
                    "baseline_seconds": round(float(baseline), 2),
                    "ratio": round(float(elapsed) / float(baseline), 2),
                    "succeeded": int(succeeded),
                    "failed": int(failed),
                    "retried": int(retried),
                    "received_distinct": len(pushed),
                    "received_duplicates": sum(count - 1 for count in pushed.values()),
                    "baseline_ok": int(ok),
                }
            )
    finally:
        for process in (worker, receiver):
            process.terminate()
            process.wait(timeout=30)
    medians = {
        name: statistics.median(r[name] for r in rounds)
        for name in ("celery_seconds", "of_which_publish_seconds", "baseline_seconds", "ratio")
    }
    print(
        json.dumps(
            {
                "instances": instances,
                "worker": f"{POOL} x {CONCURRENCY}",
                "baseline_threads": BASELINE_THREADS,
                "median": medians,
                "rounds": rounds,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
