"""P5: what an admin waits for. The time from Publish until every one of 1,000 instances has
applied *and verified* the version (docs/BENCHMARKS.md), for webhook pushes and for pull agents
polling every 60 s.

Real: the console on gunicorn, a Celery worker on Redis, PostgreSQL, the node test OP (Cognito's
hosted-UI shape, one app client with the 1,000 callbacks registered). The fleet runs in
processes of 1,000 agents each (BENCH_AGENTS_PER_PROCESS): for each instance, the agent's own
code (agent/diffgram_sso_agent.py: its push handler on a port of its own, or its poll loop) in
threads; one stand-in Diffgram (tests/diffgram_standin.py, in a process of its own) answers
is-oauth2-set for all of them from their .env files.

Run: python bench/verify_rollout.py  (needs PostgreSQL, Redis, node and `npm ci --prefix tests/op`)
Smaller: BENCH_INSTANCES=20 BENCH_ROUNDS=1 BENCH_PULL_INTERVAL=5 python bench/verify_rollout.py
"""

import collections
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from agent import diffgram_sso_agent as agent  # noqa: E402
from agent import signin  # noqa: E402
from bench.common import (  # noqa: E402
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

INSTANCES = int(os.environ.get("BENCH_INSTANCES", 1000))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))  # push rounds; the pull round runs once
PULL_INTERVAL = float(os.environ.get("BENCH_PULL_INTERVAL", 60))
WORKERS = os.environ.get("BENCH_WORKERS", "4")
WEB_PORT = 8773
METRICS_TOKEN = "bench-metrics-token-" + "m" * 20
OP_DIR = ROOT / "tests" / "op"
APP_CLIENT = "diffgram-app"

SEED = """
import django, json, sys; django.setup()
from pathlib import Path
from django.utils import timezone
from console import kinds
from console.models import Instance, Provider
from tests.idp_server import cognito_document
op_base, folder = sys.argv[1], Path(sys.argv[2])
fleet = json.loads((folder / "fleet.json").read_text())
provider = Provider(name="Bench Cognito", kind="cognito", aws_region="eu-west-1",
    user_pool_id="eu-west-1_Bench", client_id="diffgram-app", scopes="openid email",
    validation_passed=True, validated_at=timezone.now(),
    discovery_snapshot=cognito_document("eu-west-1", "eu-west-1_Bench", op_base,
                                        op_base + "/.well-known/jwks.json"))
provider.issuer = kinds.of(provider).issuer(provider)
provider.save()
for member in fleet:
    instance = Instance(name=member["name"], url_base=member["url_base"], provider=provider,
                        push_target="webhook", webhook_url=member["webhook_url"])
    token = instance.new_token()
    secret = instance.new_signing_secret()
    instance.save()
    member["pk"] = instance.pk
    (folder / member["name"] / "token").write_text(token)
    (folder / member["name"] / "signing-secret").write_text(secret)
(folder / "fleet.json").write_text(json.dumps(fleet))
"""

# Publish, then watch the instances until each has verified the version (or failed to).
PUBLISH = """
import django, json, sys, time; django.setup()
from django.db.models import Count, Q
from console import versions
from console.models import Instance, Provider
timeout = float(sys.argv[1])
# A real change each time (the login URL's scopes), so every agent applies and verifies it.
provider = Provider.objects.get()
provider.scopes = "openid email" if "profile" in provider.scopes else "openid email profile"
provider.save(update_fields=["scopes"])
started = time.monotonic()
version = versions.publish(provider, note="bench")
published = time.monotonic() - started
n = version.number
applied_at = None
while True:
    counts = Instance.objects.aggregate(
        total=Count("pk"),
        applied=Count("pk", filter=Q(applied_version_number=n, applied_status="ok")),
        verified=Count("pk", filter=Q(verified_version_number=n, verify_ok=True)),
        failed=Count("pk", filter=Q(verified_version_number=n, verify_ok=False)),
    )
    now = time.monotonic() - started
    if applied_at is None and counts["applied"] == counts["total"]:
        applied_at = now
    if counts["verified"] + counts["failed"] == counts["total"] or now > timeout:
        break
    time.sleep(0.05)
failures = list(Instance.objects.filter(verified_version_number=n, verify_ok=False)
                .values_list("verify_detail", flat=True)[:3])
print(json.dumps({"version": n, "seconds": round(now, 2), "publish_seconds": round(published, 2),
                  "all_applied_seconds": applied_at and round(applied_at, 2), **counts,
                  "failures": failures}))
"""

PULL_ONLY = """
import django; django.setup()
from console.models import Instance
Instance.objects.update(push_target="none", webhook_url="")
"""


# The stand-in Diffgram in a process of its own: Diffgram does not share the agents' host
# process either, and this one's interpreter lock is busy enough with 1,000 agents.
STAND_IN = """
import sys, threading
from pathlib import Path
from tests.diffgram_standin import StandInDiffgram
diffgram = StandInDiffgram(fleet_folder=Path(sys.argv[1]))
print(diffgram.url_base, flush=True)
sys.stdin.read()  # until the benchmark ends
print(diffgram.requests, flush=True)
"""


class StandInProcess:
    def __init__(self, folder):
        self.process = subprocess.Popen(
            [PYTHON, "-c", STAND_IN, str(folder)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self.pid = self.process.pid
        self.url_base = self.process.stdout.readline().strip()

    def stop(self):
        """Stops it; returns how many requests it answered."""
        self.process.stdin.close()
        requests = int(self.process.stdout.readline() or 0)
        self.process.wait(timeout=10)
        return requests


# A Python interpreter runs about 1,000 agents (threads) well; 10,000 in one stalled
# (docs/BENCHMARKS.md, P5). The fleet is split into processes of this many agents each.
AGENTS_PER_PROCESS = int(os.environ.get("BENCH_AGENTS_PER_PROCESS", 1000))


class FleetShard:
    """Some of the hosts, in a process of their own (`--shard`): each host a folder with its
    .env, token and signing secret, and an agent. Driven by lines on its standard input:
    `serve CONSOLE`, `poll CONSOLE INTERVAL`, `probes` (answers, as JSON, the probes' durations and
    the agents' warnings since the last `probes`); it ends with its input."""

    def __init__(self, folder, names, diffgram_url_base):
        self.folder, self.servers, self.members = folder, [], []
        for name in names:
            url_base = f"{diffgram_url_base}{name}/"
            (folder / name).mkdir()
            (folder / name / ".env").write_text(f"URL_BASE={url_base}\n")
            (folder / name / ".env").chmod(0o600)  # as the agent wants it; else 10,000 warnings
            # Bound now, so the instance can be registered with its port; it handles pushes
            # once the console has issued its secret.
            server = agent.BoundedServer(("127.0.0.1", 0), agent.BaseHTTPRequestHandler)
            self.servers.append(server)
            self.members.append(
                {"name": name, "url_base": url_base,
                 "webhook_url": f"http://127.0.0.1:{server.server_port}/"}
            )  # fmt: skip

    def args(self, member, console, command, *extra):
        home = self.folder / member["name"]
        return agent.parse_args(
            [command, *extra, "--console", console, "--instance", str(member["pk"]),
             "--token-file", str(home / "token"), "--env-file", str(home / ".env")]
        )  # fmt: skip

    def serve(self, console):
        seeded = {m["name"]: m for m in json.loads((self.folder / "fleet.json").read_text())}
        self.members = [seeded[member["name"]] for member in self.members]  # with their pks
        for member, server in zip(self.members, self.servers, strict=True):
            secret = str(self.folder / member["name"] / "signing-secret")
            server.RequestHandlerClass = agent.make_handler(
                self.args(member, console, "serve", "--listen", "127.0.0.1:0",
                          "--secret-file", secret)
            )  # fmt: skip
            # A request wakes the server at once; the interval only paces its check for a
            # shutdown, which never comes (daemon threads). At the default 0.5 s, 10,000
            # servers woke 20,000 times a second and starved the fleet of the interpreter.
            threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 3600}, daemon=True
            ).start()

    def poll(self, console, interval):
        """Every agent polls every `interval` seconds; they start spread over one interval, as
        a fleet that has been polling all day."""
        for member in self.members:
            args = self.args(member, console, "pull", "--interval", str(interval))
            start = random.uniform(0, interval)  # noqa: S311 - spreading, not crypto
            timer = threading.Timer(start, agent.run_pull, (args,))
            timer.daemon = True
            timer.start()


# The node test OP shares this machine's two cores with the console and the whole fleet; a real
# fleet's identity provider (Cognito) does not. Left unbounded, 10,000 probes at once queued in
# its one process until their requests timed out (10 s), a failure of the simulation, not of the
# console. So each shard lets this share of the fleet's PROBES_IN_FLIGHT probe at once; the rest
# wait their turn, and that wait is in the measured time.
PROBES_IN_FLIGHT = int(os.environ.get("BENCH_PROBES_IN_FLIGHT", 200))


def timed_probes(durations, in_flight):
    """Count how long each agent's probe takes (the agent calls it as signin.probe), and let at
    most `in_flight` run at once."""
    probe = signin.probe
    turns = threading.BoundedSemaphore(in_flight)

    def timed(*args, **kwargs):
        started = time.monotonic()
        try:
            with turns:
                return probe(*args, **kwargs)
        finally:
            durations.append(time.monotonic() - started)

    signin.probe = timed


def run_shard(folder, first, stop, diffgram_url_base, probes_in_flight):
    """The `--shard` process: hosts i{first} to i{stop - 1}, at most `probes_in_flight` of
    them probing at once."""
    warnings = []  # what the agents would have logged as warnings or errors (a report given up)
    agent.log = lambda message: (
        message.startswith(("warning", "error")) and warnings.append(message)
    )
    durations = []
    timed_probes(durations, probes_in_flight)
    names = [f"i{n}" for n in range(first, stop)]
    shard = FleetShard(Path(folder), names, diffgram_url_base)
    print(json.dumps(shard.members), flush=True)
    for line in sys.stdin:
        command, *arguments = line.split()
        if command == "serve":
            shard.serve(*arguments)
        elif command == "poll":
            shard.poll(arguments[0], float(arguments[1]))
        elif command == "probes":
            taken = {"durations": list(durations), "warnings": list(warnings)}
            durations[:], warnings[:] = [], []
            print(json.dumps(taken), flush=True)
            continue
        print("ok", flush=True)


class Fleet:
    """The hosts: AGENTS_PER_PROCESS to a process (FleetShard), and one stand-in Diffgram
    shared by all."""

    def __init__(self, folder, count):
        self.folder = folder
        self.diffgram = StandInProcess(folder)
        firsts = range(0, count, AGENTS_PER_PROCESS)
        probes_in_flight = max(1, PROBES_IN_FLIGHT // len(firsts))  # each shard's share
        self.shards = [
            self._start_shard(first, min(first + AGENTS_PER_PROCESS, count), probes_in_flight)
            for first in firsts
        ]
        self.members = [m for shard in self.shards for m in json.loads(shard.stdout.readline())]
        (folder / "fleet.json").write_text(json.dumps(self.members))

    def _start_shard(self, first, stop, probes_in_flight):
        return subprocess.Popen(
            [PYTHON, __file__, "--shard", str(self.folder), str(first), str(stop),
             self.diffgram.url_base, str(probes_in_flight)],
            cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    @property
    def pids(self):
        return [shard.pid for shard in self.shards]

    def _tell(self, *command):
        for shard in self.shards:
            shard.stdin.write(" ".join(map(str, command)) + "\n")
            shard.stdin.flush()
        return [shard.stdout.readline() for shard in self.shards]

    def serve(self, console):
        self._tell("serve", console)

    def poll(self, console, interval):
        self._tell("poll", console, interval)

    def probes(self):
        """The probes' durations and the agents' warnings since the last call, from every
        shard."""
        answers = [json.loads(answer) for answer in self._tell("probes")]
        return (
            [d for answer in answers for d in answer["durations"]],
            [w for answer in answers for w in answer["warnings"]],
        )

    def stop(self):
        """Stops the shards and the stand-in; returns how many requests the stand-in answered."""
        for shard in self.shards:
            shard.stdin.close()
            shard.wait(timeout=30)
        return self.diffgram.stop()


def start_op(folder, callbacks):
    """The node test OP as Cognito's hosted UI, with the app client and every callback."""
    port = free_port()
    client = {
        "client_id": APP_CLIENT,
        "token_endpoint_auth_method": "none",
        "redirect_uris": callbacks,
        "grant_types": ["authorization_code"],
    }
    log = open(folder / "op.log", "w")  # noqa: SIM115 - open while the OP runs
    clients = folder / "op-clients.json"  # 10,000 callbacks do not fit in a variable
    clients.write_text(json.dumps([client]))
    process = subprocess.Popen(
        ["node", "server.mjs"], cwd=OP_DIR, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PORT": str(port), "OP_SHAPE": "cognito",
             "OP_CLIENTS_FILE": str(clients)},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/.well-known/openid-configuration")
    return process, base


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def publish_and_wait(env, timeout):
    output = subprocess.run(
        [PYTHON, "-c", PUBLISH, str(timeout)], cwd=ROOT, env=env, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(output)


def reports_handled(console):
    """How many reports (POST .../applied) the console's web processes have answered so far,
    from its /metrics: more than the fleet sent means reports sent again, after the agent gave
    up waiting for an answer that the console still worked out."""
    request = urllib.request.Request(  # noqa: S310 - our console
        f"{console}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our console
        text = response.read().decode()
    found = re.search(
        r'^diffgram_sso_request_duration_seconds_count\{view="api-applied"\} (\S+)$', text, re.M
    )
    return int(float(found.group(1))) if found else 0


def summary(warnings):
    """How many warnings and errors the agents logged, by kind (the message with its numbers
    as N), and the first three."""
    kinds = collections.Counter(re.sub(r"\d+", "N", warning) for warning in warnings)
    return {"count": len(warnings), "kinds": dict(kinds.most_common(10)), "first": warnings[:3]}


def main():
    fresh_database("sso_bench_verify")
    env = environment("sso_bench_verify", METRICS_TOKEN=METRICS_TOKEN)
    manage(env, "migrate", "--noinput")
    folder = Path(tempfile.mkdtemp())
    fleet = Fleet(folder, INSTANCES)
    callbacks = [f"{m['url_base']}user/oauth2-login/" for m in fleet.members]
    op, op_base = start_op(folder, callbacks)
    subprocess.run([PYTHON, "-c", SEED, op_base, str(folder)], cwd=ROOT, env=env, check=True)
    console = f"http://127.0.0.1:{WEB_PORT}"
    web = subprocess.Popen(
        [PYTHON, "-m", "gunicorn", "sso_admin.wsgi", "--bind", f"127.0.0.1:{WEB_PORT}",
         "--workers", WORKERS, "--backlog", "2048", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    worker = subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "sso_admin", "worker", "--pool", "prefork",
         "--concurrency", "4", "--queues", "bench", "--loglevel", "WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_http(f"{console}/bench/trivial")
        time.sleep(5)  # the worker connects to Redis
        fleet.serve(console)
        processes = {"agents": fleet.pids, "stand-in Diffgram": [fleet.diffgram.pid],
                     "web (gunicorn)": [web.pid], "celery worker": [worker.pid],
                     "node OP": [op.pid]}  # fmt: skip
        before, reports_before = cpu_seconds(processes), reports_handled(console)
        # ~10 s per 1,000 instances here (docs/BENCHMARKS.md, P5): a generous bound.
        round_limit = max(120, INSTANCES * 0.12)
        push_rounds = [publish_and_wait(env, timeout=round_limit) for _ in range(ROUNDS)]
        push_cpu = cpu_used(before, cpu_seconds(processes))
        push_reports = reports_handled(console) - reports_before
        push_probes, push_warnings = fleet.probes()

        subprocess.run([PYTHON, "-c", PULL_ONLY], cwd=ROOT, env=env, check=True)
        fleet.poll(console, PULL_INTERVAL)
        time.sleep(PULL_INTERVAL + 5)  # every agent has polled (and is at the version) once
        fleet.probes()  # those of the first polls
        before, reports_before = cpu_seconds(processes), reports_handled(console)
        pull_round = publish_and_wait(env, timeout=PULL_INTERVAL * 2 + round_limit)
        pull_cpu = cpu_used(before, cpu_seconds(processes))
        pull_reports = reports_handled(console) - reports_before
        pull_probes, pull_warnings = fleet.probes()
    finally:
        for process in (worker, web, op):
            process.terminate()
            process.wait(timeout=30)
        diffgram_requests = fleet.stop()
    seconds = [r["seconds"] for r in push_rounds]
    print(
        json.dumps(
            {
                "instances": INSTANCES,
                "agent_processes": len(fleet.pids),
                "probes_in_flight": PROBES_IN_FLIGHT,
                "push": {
                    "median_seconds": statistics.median(seconds),
                    "rounds": push_rounds,
                    "probe": percentiles(push_probes),
                    "agent_warnings": summary(push_warnings),
                    "cpu_seconds_all_rounds": push_cpu,
                    "reports_handled_all_rounds": push_reports,
                },
                "pull": {
                    "interval_seconds": PULL_INTERVAL,
                    "round": pull_round,
                    "probe": percentiles(pull_probes),
                    "agent_warnings": summary(pull_warnings),
                    "reports_handled": pull_reports,
                    "cpu_seconds": pull_cpu,
                },
                "stand_in_diffgram_requests": diffgram_requests,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--shard"]:
        run_shard(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
    else:
        main()
