"""P3: the history at 1,000,000 events: the History page (first and deep page, with a filter),
the CSV export's peak memory, and verify_audit. Run: python bench/history.py
(needs PostgreSQL and Redis; BENCH_EVENTS overrides the count)"""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import AUDITOR_CLIENT, PYTHON, ROOT, environment, fresh_database, manage  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", 1_000_000))
REQUESTS = 100
# The command's time is mostly start-up and one count, near the 1 s goal: several rounds, not one.
SINCE_ROUNDS = 5

PAGES = (
    AUDITOR_CLIENT
    + """
import json, statistics, time
from console.models import AuditEvent
deep = AuditEvent.objects.order_by("id").values_list("id", flat=True)[__DEEP__]
cases = {
    "first page, filter action": ("/history/", {"action": "push.succeeded"}),
    "deep page, filter action": ("/history/", {"action": "push.succeeded", "before": deep}),
    "first page, filter target": ("/history/", {"target_type": "provider", "target_id": "7"}),
    "deep page, no filter": ("/history/", {"before": deep}),
    "first page, target name contains": ("/history/", {"q": "provider 3"}),
}
results = {}
for name, (url, query) in cases.items():
    client.get(url, query)  # warm
    timings = []
    for _ in range(__REQUESTS__):
        started = time.perf_counter()
        response = client.get(url, query)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and b'class="events"' in response.content, name
    timings.sort()
    results[name] = {"p50_ms": round(statistics.median(timings), 2),
                     "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2)}
print(json.dumps(results))
"""
)

EXPORT = (
    AUDITOR_CLIENT
    + """
import resource, time
started = time.perf_counter()
response = client.get("/history/export.csv")
size = rows = 0
for chunk in response.streaming_content:
    size += len(chunk)
    rows += chunk.count(b"\\n")
print(rows, size, round(time.perf_counter() - started, 1),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
)


SERIAL_VERIFY = """
import time, django
django.setup()
from console import audit
started = time.monotonic()
assert audit.verify_chain(processes=1).ok
print(round(time.monotonic() - started, 1))
"""


# --since-checkpoint's own work, without the process's start: what a long-running caller (the
# Celery worker) pays, and how much of the command's time is Python and Django starting.
SINCE_CHECKPOINT_IN_PROCESS = """
import io, time, django
django.setup()
from django.core.management import call_command
from console import audit_anchor
started = time.monotonic()
call_command("verify_audit", "--since-checkpoint", stdout=io.StringIO())
whole = time.monotonic() - started
started = time.monotonic()
assert audit_anchor.verify_against_checkpoints().ok
print(round(time.monotonic() - started, 2), round(whole, 2))
"""


def main():
    fresh_database("sso_bench_history")
    env = environment("sso_bench_history", ALLOWED_HOSTS="testserver,127.0.0.1")
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    started = time.monotonic()
    print(manage(env, "seed_audit", str(EVENTS)).strip(), file=sys.stderr)
    seed_seconds = time.monotonic() - started
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "sso_bench_history",
                    "-qc", "VACUUM ANALYZE console_auditevent"], check=True)  # fmt: skip
    pages_script = PAGES.replace("__DEEP__", str(EVENTS // 2)).replace(
        "__REQUESTS__", str(REQUESTS)
    )
    pages = json.loads(
        subprocess.run([PYTHON, "-c", pages_script], cwd=ROOT, env=env, check=True,
                       capture_output=True, text=True).stdout.strip().splitlines()[-1]
    )  # fmt: skip
    export = subprocess.run([PYTHON, "-c", EXPORT], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True).stdout.split()  # fmt: skip
    started = time.monotonic()
    verify = manage(env, "verify_audit").strip()
    verify_seconds = time.monotonic() - started
    serial = subprocess.run(
        [PYTHON, "-c", SERIAL_VERIFY], cwd=ROOT, env=env, check=True, capture_output=True,
        text=True,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    anchored = {
        **env,
        "AUDIT_SIGNING_KEY": "bench-audit-signing-key",
        "AUDIT_CHECKPOINT_FILE": str(ROOT / "var" / "bench-audit-checkpoints.jsonl"),
    }
    Path(anchored["AUDIT_CHECKPOINT_FILE"]).unlink(missing_ok=True)
    manage(anchored, "audit_checkpoint")
    manage(anchored, "seed_audit", "1000")  # what happened since the checkpoint
    since_rounds = []
    for _ in range(SINCE_ROUNDS):
        started = time.monotonic()
        since = manage(anchored, "verify_audit", "--since-checkpoint").strip()
        since_rounds.append(round(time.monotonic() - started, 2))
    anchors_seconds, in_process_seconds = subprocess.run(
        [PYTHON, "-c", SINCE_CHECKPOINT_IN_PROCESS], cwd=ROOT, env=anchored, check=True,
        capture_output=True, text=True,
    ).stdout.split()[-2:]  # fmt: skip
    print(
        json.dumps(
            {
                "events": EVENTS,
                "seed_seconds": round(seed_seconds, 1),
                "history_pages": pages,
                "csv_export": {
                    "lines": int(export[0]), "bytes": int(export[1]),
                    "seconds": float(export[2]), "peak_rss_mb": int(export[3]),
                },
                "verify_audit": {"seconds": round(verify_seconds, 1), "output": verify},
                "verify_serial_seconds": float(serial),
                "verify_since_checkpoint": {
                    "seconds": statistics.median(since_rounds), "rounds": since_rounds,
                    "output": since,
                    "in_process_seconds": float(in_process_seconds),
                    "of_which_checkpoint_comparison_seconds": float(anchors_seconds),
                },
            },
            indent=2,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
