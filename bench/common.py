"""Shared set-up for the benchmarks: a PostgreSQL database, Redis, and production-like
settings (DEBUG off), so what is measured is what runs in production."""

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def environment(database, **extra):
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-secret-key-" + "x" * 40,
        "FIELD_ENCRYPTION_KEYS": "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE=",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "CACHE_URL": "redis://127.0.0.1:6379/3",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/4",
        "CELERY_QUEUE": "bench",
        "RATE_LIMIT_PULL_PER_IP": "100000000/m",
        "RATE_LIMIT_PULL_PER_INSTANCE": "100000000/m",
        "SSO_ADMIN_ALLOW_PRIVATE_URLS": "true",
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def fresh_database(name):
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
    subprocess.run(["redis-cli", "-n", "3", "flushdb"], check=True, capture_output=True)
    subprocess.run(["redis-cli", "-n", "4", "flushdb"], check=True, capture_output=True)


def manage(env, *args):
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def wait_for_http(url, timeout=30):
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - our own server
            return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def wrk(url, *, seconds=15, connections=32, threads=2, script=None, env=None):
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url], env=env, check=True, capture_output=True, text=True
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latency = {
        percent: _ms(value)
        for percent, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", output, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rate": rate, "latency": latency, "non_2xx": int(errors.group(1)) if errors else 0}


def _ms(text):
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def cpu_seconds(root_pids):
    """CPU time (user + system) used so far by each named group of process trees (label: pids),
    from /proc, and by PostgreSQL's processes: where a round's time goes on a machine where all
    share two cores."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent, used, command = {}, {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(entry.name)
        parent[pid], command[pid] = int(fields[1]), name
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks

    def tree(pid):
        return used.get(pid, 0) + sum(tree(child) for child, up in parent.items() if up == pid)

    totals = {label: sum(tree(pid) for pid in pids) for label, pids in root_pids.items()}
    totals["postgresql"] = sum(cpu for pid, cpu in used.items() if command[pid] == "postgres")
    return totals


def cpu_used(before, after):
    return {label: round(after[label] - before[label], 1) for label in before}


def percentiles(durations):
    if not durations:
        return {}
    ordered = sorted(durations)
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 1),
    }


# Python run in a child process with the benchmark's settings: a validated Keycloak provider,
# the way the console would hold one after its checks passed.
PROVIDER_SEED = """
import django; django.setup()
from django.utils import timezone
from console import kinds
from console.models import Instance, Provider
provider = Provider(name="Bench Keycloak", kind="keycloak", client_id="diffgram-{instance}",
    keycloak_server_url="https://sso.example.test/auth/", keycloak_realm="diffgram-realm",
    keycloak_master_user="admin", keycloak_diffgram_user="diffgram-admin",
    validation_passed=True, validated_at=timezone.now(),
    discovery_snapshot={"issuer": "https://sso.example.test/auth/realms/diffgram-realm"})
provider.issuer = kinds.of(provider).issuer(provider)
provider.set_secret("keycloak_master_password", "bench-secret")
provider.set_secret("keycloak_diffgram_password", "bench-secret-2")
provider.save()
"""

# A test client signed in as an auditor, in a child process.
AUDITOR_CLIENT = """
import django; django.setup()
from django.contrib.auth.models import Group, User
from django.test import Client
user, _ = User.objects.get_or_create(username="bench-auditor")
user.groups.add(Group.objects.get_or_create(name="auditor")[0])
client = Client()
client.force_login(user)
"""
