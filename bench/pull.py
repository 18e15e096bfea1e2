"""P1: the pull API under a fleet of instances (1,000 unless --instances N), against a trivial
view on the same gunicorn. Run: python bench/pull.py [--instances N]  (needs PostgreSQL, Redis
and wrk; see docs/BENCHMARKS.md)"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (
    PROVIDER_SEED,
    PYTHON,
    ROOT,
    environment,
    fresh_database,
    manage,
    wait_for_http,
    wrk,
)  # noqa: E402

INSTANCES = int(os.environ.get("BENCH_INSTANCES", 1000))
SECONDS = int(os.environ.get("BENCH_SECONDS", 10))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))
PORT = 8771
PACE_MS = 10

# The fleet, written in bulk (bench/fleet_seed.py); a line "id token ETag" per instance that
# has a version, for pull.lua and bench/memory.py.
SEED = (
    PROVIDER_SEED
    + """
from bench.fleet_seed import seed
seed(__COUNT__, __PATH__)
"""
)


METRICS_TOKEN = "bench-metrics-token-" + "m" * 20  # the minimum length is 32
WARM_UP_LIMIT = 1800  # seconds; the report says how much was held when measuring began


def _entries_held(base):
    """What the workers hold in memory, summed (/metrics: diffgram_sso_pull_state_entries)."""
    request = urllib.request.Request(  # noqa: S310 - our own server
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our server
        text = response.read().decode()
    found = re.search(r"^diffgram_sso_pull_state_entries (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else 0


def _worker_rss_mb(server_pid):
    """The resident memory of each of gunicorn's workers (the arbiter's children), in MB."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    sizes = []
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        sizes.append(round(int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024))
    return sorted(sizes)


def _ratios_per_round(runs, baseline):
    """{path: [its rate / the baseline's rate, in each round]}."""
    return {
        name: [round(r["rate"] / b["rate"], 2) for r, b in zip(found, runs[baseline], strict=True)]
        for name, found in runs.items()
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=INSTANCES)
    instances = parser.parse_args().instances
    fresh_database("sso_bench_pull")
    env = environment("sso_bench_pull", METRICS_TOKEN=METRICS_TOKEN)
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    tokens = Path(tempfile.mkdtemp()) / "tokens.txt"
    print(f"instance tokens: {tokens} (for bench/profile_api.py pull)", file=sys.stderr)
    seed = SEED.replace("__COUNT__", str(instances)).replace("__PATH__", repr(str(tokens)))
    subprocess.run([PYTHON, "-c", seed], cwd=ROOT, env=env, check=True)
    pollers = len(tokens.read_text().splitlines())  # the instances with a version
    workers = os.environ.get("BENCH_WORKERS", "4")
    server = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "bench.wsgi", "--bind", f"127.0.0.1:{PORT}",
         "--workers", workers, "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{PORT}"
        wait_for_http(f"{base}/bench/trivial")
        if server.poll() is not None:  # another server answered
            raise RuntimeError(f"gunicorn did not start: is port {PORT} taken?")
        script = Path(__file__).with_name("pull.lua")
        url = f"{base}/api/v1/instances/1/config"
        wrk(f"{base}/bench/trivial", seconds=3)  # warm up every worker
        wrk(f"{base}/bench/bare", seconds=2)
        # Steady state: every instance has pulled this version already (the seed notes it; that
        # first pull is an audit event, and a fleet polls the same version for hours), and
        # every web process holds every instance (the pull_state_entries metric, summed over
        # the workers; a poll loads an instance into the worker that answers it).
        polled = {**env, "BENCH_TOKENS": str(tokens)}
        wrk(url, seconds=10, script=script, env=polled)
        held, given_up_at = _entries_held(base), time.monotonic() + WARM_UP_LIMIT
        while held < pollers * int(workers) and time.monotonic() < given_up_at:
            print(f"warming up: {held:,} of {pollers * int(workers):,} held", file=sys.stderr)
            wrk(url, seconds=20, script=script, env=polled)
            held = _entries_held(base)
        modes = {
            "bare WSGI": (f"{base}/bench/bare", {}),
            "trivial": (f"{base}/bench/trivial", {}),
            "304": (url, {"script": script, "env": {**env, "BENCH_TOKENS": str(tokens),
                                                    "BENCH_MODE": "304"}}),
            "200": (url, {"script": script, "env": {**env, "BENCH_TOKENS": str(tokens),
                                                    "BENCH_MODE": "200"}}),
        }  # fmt: skip
        # The three alternate ROUNDS times; each figure is the round with the median rate.
        runs = {name: [] for name in modes}
        for _ in range(ROUNDS):
            for name, (target_url, options) in modes.items():
                runs[name].append(wrk(target_url, seconds=SECONDS, **options))
        results = {
            name: sorted(found, key=lambda r: r["rate"])[len(found) // 2]
            for name, found in runs.items()
        }
        # Ratios are taken within each round (side by side), then their median: to the trivial
        # Django view, and to the bare WSGI answer (the machine's limit on this gunicorn).
        ratios = _ratios_per_round(runs, "trivial")
        ratios_to_bare = _ratios_per_round(runs, "bare WSGI")
        # Latency at 80 % of the 304 path's maximum rate: wrk has no fixed rate, so each
        # connection pauses PACE_MS between requests, with enough connections to offer that
        # rate (each connection's cycle is the pause plus the unloaded latency).
        target = 0.8 * results["304"]["rate"]
        unloaded = wrk(url, seconds=5, connections=1, threads=1, **modes["304"][1])
        cycle_ms = PACE_MS + unloaded["latency"]["50"]
        connections = max(2, round(target * cycle_ms / 1000))
        paced = {**modes["304"][1]["env"], "BENCH_DELAY_MS": str(PACE_MS)}
        calibration = wrk(url, seconds=5, connections=connections, script=script, env=paced)
        connections = max(2, round(connections * target / calibration["rate"]))
        results["304 at 80%"] = wrk(
            url, seconds=SECONDS, connections=connections, script=script, env=paced
        )
        results["304 at 80%"].update(target_rate=round(target), connections=connections)
        worker_rss_mb = _worker_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    trivial = results["trivial"]["rate"]
    summary = {
        name: {
            **result,
            "ratio": statistics.median(ratios[name])
            if name in ratios
            else round(result["rate"] / trivial, 2),
            **({"ratio_to_bare": statistics.median(ratios_to_bare[name])} if name in runs else {}),
        }
        for name, result in results.items()
    }
    rates = {name: [r["rate"] for r in found] for name, found in runs.items()}
    report = {
        "instances": instances,
        "held_when_measuring": held,
        "worker_rss_mb": worker_rss_mb,
        "workers": workers,
        "rounds": ROUNDS,
        "results": summary,
    }
    print(
        json.dumps(
            {
                **report,
                "rates_per_round": rates,
                "ratios_per_round": ratios,
                "ratios_to_bare_per_round": ratios_to_bare,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
