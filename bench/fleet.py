"""F: the fleet's housekeeping at 100,000 instances: the beat's drift check (`check_fleet`,
every 5 minutes, with an alert destination that hears drift), a /metrics scrape, and the fleet
page (first page, a search, a state filter), each computed by the database.

Run: python bench/fleet.py --instances 100000  (needs PostgreSQL and Redis). Prints the rounds
and, as its last line, one JSON object: instances, check_fleet_s, metrics_s (medians of
ROUNDS), fleet_page_p95_ms (over every request of the first page, a search for one instance
and a state filter; a broad search is reported beside them) and fleet_counts_p95_ms (the
state counts the page loads after itself, with and without a search: the larger p95)."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (  # noqa: E402
    AUDITOR_CLIENT,
    PROVIDER_SEED,
    PYTHON,
    ROOT,
    environment,
    fresh_database,
    manage,
)

ROUNDS = 3
REQUESTS = 30  # per page kind

SEED = (
    PROVIDER_SEED
    + """
from bench.fleet_seed import seed
seed(__COUNT__)
"""
)

MEASURE = (
    AUDITOR_CLIENT
    + """
import json, statistics, time
from console import alerts, metrics
from console.models import AlertDestination, AlertEvent

# An email destination that hears drift: the check writes its alerts, then counts repeats.
AlertDestination.objects.create(
    name="ops", kind="email", email_to="ops@corp.test", events=[AlertEvent.INSTANCE_DRIFTING]
)


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


check_rounds, drifting = [], None
for _ in range(__ROUNDS__):
    seconds, drifting = timed(alerts.check_fleet)
    check_rounds.append(round(seconds, 3))
metric_rounds = []
for _ in range(__ROUNDS__):
    seconds, body = timed(metrics.scrape)
    metric_rounds.append(round(seconds, 3))
assert b'diffgram_sso_instances{state="in_sync"}' in body

pages = {
    "first page": ("/instances/", {}),
    "search": ("/instances/", {"q": "i4242"}),  # one instance's name: 11 match
    "broad search": ("/instances/", {"q": "i99"}),  # 1,111 match, after 1/3 of the fleet
    "state filter": ("/instances/", {"state": "failing"}),
    "counts": ("/instances/counts/", {}),  # loaded after the page
    "counts of a search": ("/instances/counts/", {"q": "i99"}),
}


def p95(timings):
    return round(sorted(timings)[int(len(timings) * 0.95) - 1], 1)


page_ms, every = {}, []
for name, (url, query) in pages.items():
    response = client.get(url, query)  # warm
    assert response.status_code == 200 and b"(" in response.content, name
    timings = []
    for _ in range(__REQUESTS__):
        started = time.perf_counter()
        client.get(url, query)
        timings.append((time.perf_counter() - started) * 1000)
    if name in ("first page", "search", "state filter"):
        every += timings
    page_ms[name] = {"p50": round(statistics.median(timings), 1), "p95": p95(timings)}
print(json.dumps({
    "drifting": drifting,
    "check_fleet_rounds_s": check_rounds,
    "metrics_rounds_s": metric_rounds,
    "fleet_page_ms": page_ms,
    "fleet_page_p95_ms": p95(every),
    "fleet_counts_p95_ms": max(page_ms[n]["p95"] for n in ("counts", "counts of a search")),
}))
"""
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100_000)
    count = parser.parse_args().instances
    started = time.monotonic()
    fresh_database("sso_bench_fleet")
    env = environment("sso_bench_fleet", ALLOWED_HOSTS="testserver,127.0.0.1")
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")  # the pages' assets, as in production
    subprocess.run(
        [PYTHON, "-c", SEED.replace("__COUNT__", str(count))], cwd=ROOT, env=env, check=True
    )
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "sso_bench_fleet",
                    "-qc", "VACUUM ANALYZE"], check=True)  # fmt: skip
    seeded = time.monotonic()
    code = MEASURE.replace("__ROUNDS__", str(ROUNDS)).replace("__REQUESTS__", str(REQUESTS))
    result = subprocess.run(
        [PYTHON, "-c", code], cwd=ROOT, env=env, check=True, stdout=subprocess.PIPE, text=True
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    print(json.dumps(measured, indent=2))
    print(json.dumps({
        "instances": count,
        "drifting": measured["drifting"],
        "check_fleet_s": sorted(measured["check_fleet_rounds_s"])[ROUNDS // 2],
        "metrics_s": sorted(measured["metrics_rounds_s"])[ROUNDS // 2],
        "fleet_page_p95_ms": measured["fleet_page_p95_ms"],
        "fleet_counts_p95_ms": measured["fleet_counts_p95_ms"],
        "seed_seconds": round(seeded - started, 1),
        "seconds": round(time.monotonic() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
