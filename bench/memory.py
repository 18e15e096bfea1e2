"""What the pull state (console/pull_state.py) holds per instance in one web process, after
every instance has polled once in the agent's format (env), as in a fleet that polls all day:
by tracemalloc (Python's allocations, the figure the pull state controls) and by RSS.

Run: python bench/memory.py --instances 100000  (needs PostgreSQL and Redis). Prints one JSON
object as its last line: instances, cached (at most MAX_ENTRIES), bytes_per_instance
(tracemalloc), rss_bytes_per_instance, seconds."""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import PYTHON, ROOT, environment, fresh_database, manage  # noqa: E402
from bench.pull import SEED  # noqa: E402

# Each cold poll reads the next batch of the fleet with it (console/pull_state.LOAD_BATCH), so
# polling every instance in id order reads the fleet a batch at a time, as a web process does.
SETUP = """
import django; django.setup()
from console.api import pull
"""

MEASURE = (
    SETUP
    + """
import gc, json, sys, time, tracemalloc
from django.test import RequestFactory
from console.pull_state import MAX_ENTRIES, pull_states

fleet = [line.split() for line in open(sys.argv[1])]
pull_states.get(0, lambda: None)  # subscribes this process to invalidations (Redis)
deadline = time.monotonic() + 30
while not pull_states.trusted and time.monotonic() < deadline:
    time.sleep(0.05)
assert pull_states.trusted, "not subscribed to Redis: the pull state would not keep entries"
factory = RequestFactory()


def poll(pk, token):
    request = factory.get(f"/api/v1/instances/{pk}/config", HTTP_AUTHORIZATION=f"Bearer {token}")
    response = pull.pull_config(request, int(pk))
    assert response.status_code == 200, response.content


for pk, token, _ in fleet[:50]:  # the code paths warm, and a version's secrets decrypted
    poll(pk, token)
pull_states.drop()
gc.collect()
tracemalloc.start()
before = tracemalloc.get_traced_memory()[0]
for pk, token, _ in fleet:  # traced: what the polls keep of it is counted
    poll(pk, token)
gc.collect()
held = tracemalloc.get_traced_memory()[0] - before
tracemalloc.stop()
cached = len(pull_states._entries)
print(json.dumps({"cached": cached, "held": held, "max_entries": MAX_ENTRIES}))
"""
)

# A fleet that polls all day has noted its pulls of the current version already (the first
# poll of a version writes to the database and the history; later ones do not).
POLLED = """
import django; django.setup()
from django.utils import timezone
from console.models import Instance
Instance.objects.update(last_pulled_version_number=1, last_pull_at=timezone.now())
"""

RSS = (
    SETUP
    + """
import gc, json, resource, sys, time
from django.test import RequestFactory
from console.pull_state import pull_states

fleet = [line.split() for line in open(sys.argv[1])]
pull_states.get(0, lambda: None)
deadline = time.monotonic() + 30
while not pull_states.trusted and time.monotonic() < deadline:
    time.sleep(0.05)
factory = RequestFactory()
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
for pk, token, _ in fleet[:50]:  # warm up the request path before the baseline
    pull.pull_config(
        factory.get(f"/api/v1/instances/{pk}/config", HTTP_AUTHORIZATION=f"Bearer {token}"),
        int(pk),
    )
pull_states.drop()
gc.collect()
base = rss()
for pk, token, _ in fleet:
    pull.pull_config(
        factory.get(f"/api/v1/instances/{pk}/config", HTTP_AUTHORIZATION=f"Bearer {token}"),
        int(pk),
    )
gc.collect()
print(json.dumps({"rss_growth": rss() - base, "cached": len(pull_states._entries)}))
"""
)


def run(code, env, *args):
    result = subprocess.run(
        [PYTHON, "-c", code, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    count = parser.parse_args().instances
    started = time.monotonic()
    fresh_database("sso_bench_memory")
    env = environment("sso_bench_memory")  # CACHE_URL is Redis: the pull state is on
    manage(env, "migrate", "--noinput")
    fleet = Path(tempfile.mkdtemp()) / "fleet.txt"
    seed = SEED.replace("__COUNT__", str(count)).replace("__PATH__", repr(str(fleet)))
    subprocess.run([PYTHON, "-c", seed], cwd=ROOT, env=env, check=True)
    subprocess.run([PYTHON, "-c", POLLED], cwd=ROOT, env=env, check=True)
    seeded = time.monotonic()
    traced = run(MEASURE, env, str(fleet))
    resident = run(RSS, env, str(fleet))
    cached = traced["cached"]
    print(json.dumps({
        "instances": count,
        "cached": cached,
        "max_entries": traced["max_entries"],
        "bytes_per_instance": round(traced["held"] / cached) if cached else None,
        "rss_bytes_per_instance": round(resident["rss_growth"] / cached) if cached else None,
        "seed_seconds": round(seeded - started, 1),
        "seconds": round(time.monotonic() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
