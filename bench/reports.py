"""P5's web side: how fast one console takes the verification reports of a fleet that has just
applied a version by push (docs/BENCHMARKS.md, P5). Every instance sends one report at once,
as its agent does after its probe: POST /api/v1/instances/<id>/applied with the probe's result.

Real: the console on gunicorn (the same workers as bench/verify_rollout.py), PostgreSQL and
Redis. The fleet is seeded in bulk (bench/fleet_seed.py), a second version published and
recorded as applied by every assigned instance, as the console does from each push's answer.
The client keeps CONCURRENCY reports in flight, each with the agent's timeout for the console
and no retry, so every report is sent exactly once and a timeout is counted, not hidden.

Run: python bench/reports.py --instances 10000  (needs PostgreSQL and Redis). Prints each
round (the reports' rate, their latencies, the web processes' CPU per report from /proc, and
how many instances the console then shows verified) and, as its last line, one JSON object
with the medians and the rounds.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent.diffgram_sso_agent import CONSOLE_TIMEOUT  # noqa: E402
from bench.common import (  # noqa: E402
    PROVIDER_SEED,
    PYTHON,
    ROOT,
    cpu_seconds,
    cpu_used,
    environment,
    fresh_database,
    manage,
    percentiles,
    wait_for_http,
)

DATABASE = "sso_bench_reports"
WEB_PORT = 8774
WORKERS = "4"

SEED = (
    PROVIDER_SEED
    + """
import sys
from console import versions
from console.models import Instance, Provider
from bench.fleet_seed import seed
seed(int(sys.argv[1]), sys.argv[2])
provider = Provider.objects.get()
provider.scopes = "openid email profile"  # a real change: a new version
provider.save(update_fields=["scopes"])
version = versions.publish(provider, note="bench")
Instance.objects.filter(assigned_version__isnull=False).update(
    assigned_version=version, applied_version_number=version.number, applied_status="ok")
print(version.number)
"""
)

COUNT_VERIFIED = """
import django, sys; django.setup()
from console.models import Instance
print(Instance.objects.filter(verified_version_number=int(sys.argv[1]), verify_ok=True,
                              verify_kind="probe").count())
"""


def unverify(instances):
    """Clear the instances' verification: each report is then news, with its event in the
    history, as after a publish."""
    instances.update(verified_version_number=None, verify_ok=None, verify_kind="")


# Before each round. Not through the web processes' memory: a report reads the instance from
# the database.
UNVERIFY = """
import django; django.setup()
from bench.reports import unverify
from console.models import Instance
unverify(Instance.objects.all())
"""


def report_body(version):
    detail = "Diffgram offers single sign-on; the identity provider shows its login page"
    probe = {"ok": True, "kind": "probe", "step": "", "seconds": 1.2, "detail": detail}
    return json.dumps({"version": version, "status": "ok", "probe": probe}).encode()


def send_reports(instances, body, concurrency):
    """Send each instance's report once, `concurrency` at a time: (durations, outcomes)."""
    durations, outcomes, lock = [], {}, threading.Lock()
    pending = iter(instances)

    def sender():
        while True:
            with lock:
                member = next(pending, None)
            if member is None:
                return
            pk, token = member
            started = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=CONSOLE_TIMEOUT)
            try:
                connection.request("POST", f"/api/v1/instances/{pk}/applied", body,
                                   {"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"})  # fmt: skip
                outcome = str(connection.getresponse().status)
            except TimeoutError:
                outcome = "timeout"
            except OSError as error:
                outcome = type(error).__name__
            finally:
                connection.close()
            with lock:
                durations.append(time.monotonic() - started)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

    threads = [threading.Thread(target=sender) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return durations, outcomes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=int, default=200,
        help="reports in flight (bench/verify_rollout.py probes 200 at a time)",
    )  # fmt: skip
    args = parser.parse_args()
    fresh_database(DATABASE)
    env = environment(DATABASE)
    manage(env, "migrate", "--noinput")
    tokens_file = Path(tempfile.mkdtemp()) / "tokens"
    print(f"instance tokens: {tokens_file} (for bench/profile_api.py report)", file=sys.stderr)
    seeded = subprocess.run(
        [PYTHON, "-c", SEED, str(args.instances), str(tokens_file)], cwd=ROOT, env=env,
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    version = int(seeded.stdout.split()[-1])
    instances = [line.split()[:2] for line in tokens_file.read_text().splitlines()]
    web = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "sso_admin.wsgi", "--bind", f"127.0.0.1:{WEB_PORT}",
         "--workers", WORKERS, "--backlog", "2048", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    rounds = []
    try:
        wait_for_http(f"http://127.0.0.1:{WEB_PORT}/bench/trivial")
        for _ in range(args.rounds):
            subprocess.run([PYTHON, "-c", UNVERIFY], cwd=ROOT, env=env, check=True)
            rounds.append(one_round(instances, version, args.concurrency, web.pid, env))
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        web.terminate()
        web.wait(timeout=30)
    rates = [r["reports_per_second"] for r in rounds]
    print(
        json.dumps(
            {
                "instances": args.instances,
                "reports": len(instances),
                "concurrency": args.concurrency,
                "median_reports_per_second": round(statistics.median(rates), 1),
                "median_web_cpu_ms_per_report": round(
                    statistics.median(r["web_cpu_ms_per_report"] for r in rounds), 2
                ),
                "rounds": rounds,
            }
        )
    )


def one_round(instances, version, concurrency, web_pid, env):
    processes = {"web (gunicorn)": [web_pid]}
    before = cpu_seconds(processes)
    started = time.monotonic()
    durations, outcomes = send_reports(instances, report_body(version), concurrency)
    seconds = time.monotonic() - started
    # The web processes' only: PostgreSQL's backends and autovacuum workers come and go, and
    # the CPU of those that exited in between is not in /proc any more.
    web_cpu = cpu_used(before, cpu_seconds(processes))["web (gunicorn)"]
    verified = subprocess.run(
        [PYTHON, "-c", COUNT_VERIFIED, str(version)], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {
        "seconds": round(seconds, 2),
        "reports_per_second": round(len(instances) / seconds, 1),
        "latency": percentiles(durations),
        "outcomes": outcomes,
        "web_cpu_seconds": web_cpu,
        "web_cpu_ms_per_report": round(web_cpu * 1000 / len(instances), 2),
        "verified": int(verified),
    }


if __name__ == "__main__":
    main()
