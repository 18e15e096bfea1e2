"""The commands in docs/BENCHMARKS.md keep working: each benchmark runs end to end at a small
scale and its output says the system did the right thing (every push delivered once, every pull
answered, the audit chain verified). Numbers are not asserted here: they are measured, not
tested (docs/BENCHMARKS.md)."""

import json
import shutil
import subprocess
import sys

from tests.support import (
    ROOT,
    port_open,
    require_component,
    require_node_op,
    subprocess_environment,
)


def run_benchmark(script, *arguments, **scale):
    """The benchmark's JSON: all it printed, or its last line when it printed more."""
    require_component(port_open("127.0.0.1", 5432), "PostgreSQL", "start it (README)")
    require_component(port_open("127.0.0.1", 6379), "Redis", "start it (README)")
    completed = subprocess.run(
        [sys.executable, f"bench/{script}", *arguments],
        cwd=ROOT,
        env={**subprocess_environment(), **{k: str(v) for k, v in scale.items()}},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    try:
        return json.loads(completed.stdout)
    except json.JSONDecodeError:
        return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_benchmarks_run_and_their_systems_do_the_right_thing():
    """One test, so they never run at once: they share the benchmark Redis databases."""
    push = run_benchmark("push_fanout.py", BENCH_INSTANCES=20, BENCH_ROUNDS=1)
    (round_,) = push["rounds"]
    assert (round_["succeeded"], round_["failed"], round_["received_duplicates"]) == (20, 0, 0)
    assert round_["received_distinct"] == round_["baseline_ok"] == 20

    history = run_benchmark("history.py", BENCH_EVENTS=2000)
    assert "Audit chain intact: 2001 events verified." in history["verify_audit"]["output"]
    assert history["csv_export"]["lines"] > 2000  # a header and every seeded event

    require_node_op()
    verify = run_benchmark(
        "verify_rollout.py",
        BENCH_INSTANCES=10,
        BENCH_AGENTS_PER_PROCESS=4,
        BENCH_PROBES_IN_FLIGHT=3,  # one probe at a time in each of the three processes
        BENCH_ROUNDS=1,
        BENCH_PULL_INTERVAL=3,
    )
    assert verify["agent_processes"] == 3  # the fleet split as it is at 10,000
    for round_ in (*verify["push"]["rounds"], verify["pull"]["round"]):
        assert (round_["applied"], round_["verified"], round_["failed"]) == (10, 10, 0), round_
    assert verify["pull"]["probe"]["count"] == 10  # each agent verified once, after its poll
    assert (
        verify["push"]["agent_warnings"]["count"] == verify["pull"]["agent_warnings"]["count"] == 0
    )
    # Each agent's verification report once by push; by pull its acknowledgement and its report.
    assert verify["push"]["reports_handled_all_rounds"] == 10
    assert verify["pull"]["reports_handled"] == 20

    reports = run_benchmark("reports.py", "--instances", "40", "--rounds", "1")
    (round_,) = reports["rounds"]
    # Every instance with a version (fleet_seed.py leaves 4 in 100 unassigned) reported once,
    # and the console shows each as verified.
    assert reports["reports"] == round_["outcomes"]["200"] == round_["verified"] > 30

    require_component(shutil.which("wrk"), "wrk", "install it: apt-get install -y wrk")
    pull = run_benchmark("pull.py", BENCH_INSTANCES=20, BENCH_ROUNDS=1, BENCH_SECONDS=1)
    assert {path: result["non_2xx"] for path, result in pull["results"].items()} == {
        "bare WSGI": 0,
        "trivial": 0,
        "304": 0,
        "200": 0,
        "304 at 80%": 0,
    }
    assert len(pull["worker_rss_mb"]) == int(pull["workers"])

    memory = run_benchmark("memory.py", "--instances", "300")
    # Every instance, those with nothing published included: a cold poll reads the next ones.
    assert memory["instances"] == 300 and memory["cached"] == 300
    assert memory["bytes_per_instance"] > 0

    fleet = run_benchmark("fleet.py", "--instances", "300")
    assert (fleet["instances"], fleet["drifting"]) == (300, 24)  # 8 in 100 (fleet_seed.py)
    assert fleet["check_fleet_s"] > 0 and fleet["fleet_page_p95_ms"] > 0
