"""`make demo`: the console with everything it talks to stood in on this machine, so that a
new admin can publish a provider and watch two Diffgram instances sign users in within minutes,
without AWS or a real Diffgram. Nothing here leaves 127.0.0.1.

The parts, each a real process or server:
- the console on the embedded defaults (SQLite, Celery on the filesystem broker), with its own
  database and queue under var/demo/PORT/, marked as a demo on every page (CONSOLE_DEMO);
- the node OpenID Provider of the tests (tests/op/server.mjs) shaped as a Cognito hosted-UI
  domain, with one app client and one demo user;
- the user pool's discovery document, as Cognito serves it (issuer on cognito-idp, endpoints on
  the hosted UI), where AWS_ENDPOINT_URL points the console;
- two stand-in Diffgrams (tests/diffgram_standin.py: they answer as Diffgram's code does), each
  with the real agent (agent/) polling the console: one signs in with the test account itself,
  the other leaves that to the console.

Seeded: the local admin (one-time password printed), the Cognito provider (validated against the
live documents: every check passes), its test account (the demo user) and the two instances.
Ctrl-C stops every part. Run: make demo [PORT=8000]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.diffgram_standin import StandInDiffgram  # noqa: E402
from tests.idp_server import DocumentServer, cognito_document  # noqa: E402

PYTHON = sys.executable
OP_DIR = ROOT / "tests" / "op"
REGION, POOL = "eu-west-1", "eu-west-1_DemoPool1"
APP_CLIENT = "diffgram-demo"
DEMO_USER = {
    "username": "demo",
    "password": "Demo-password-1",
    "email": "demo@diffgram-demo.test",
    "name": "Demo User",
}
# Name, and who signs in to it after each version: the agent beside it, or the console.
INSTANCES = (("demo-eu", "agent"), ("demo-us", "console"))
POLL_SECONDS = 5  # the agents' interval: a demo wants to see a change within seconds
STARTUP_SECONDS = 60


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DemoFailed(Exception):
    """A part of the demo did not start; the message says which and where its log is."""


def wait_for(url, process, log):
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DemoFailed(f"{url} stopped at start-up (exit {process.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own loopback server
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise DemoFailed(f"{url} did not answer within {STARTUP_SECONDS} s; see {log}")


class Parts:
    """The demo's processes: started with their output in a log file each, stopped together."""

    def __init__(self, folder, env):
        self.folder, self.env = folder, env
        self.running = {}  # name -> (process, log path)

    def start(self, name, command, env=None, cwd=ROOT):
        log = self.folder / f"{name}.log"
        with open(log, "w") as output:
            process = subprocess.Popen(
                command, cwd=cwd, env=env or self.env, stdout=output, stderr=subprocess.STDOUT
            )
        self.running[name] = (process, log)
        return process, log

    def first_stopped(self):
        for name, (process, log) in self.running.items():
            if process.poll() is not None:
                return name, process.returncode, log
        return None

    def stop(self):
        for process, _ in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process, _ in self.running.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def start_op(parts, port, url_bases):
    """The node OP as the pool's hosted UI: the app client with each instance's callback, and
    the demo user (who is also the provider's test account)."""
    client = {
        "client_id": APP_CLIENT,
        "token_endpoint_auth_method": "none",  # a public app client, as Diffgram needs
        "redirect_uris": [f"{base}user/oauth2-login/" for base in url_bases],
        "post_logout_redirect_uris": [f"{base}user/login/" for base in url_bases],
        "grant_types": ["authorization_code", "refresh_token"],
    }
    account = {
        "sub": "demo-user-0001",
        "email": DEMO_USER["email"],
        "name": DEMO_USER["name"],
        "password": DEMO_USER["password"],
    }
    env = {
        **os.environ,
        "PORT": str(port),
        "OP_SHAPE": "cognito",
        "OP_CLIENTS": json.dumps([client]),
        "OP_ACCOUNTS": json.dumps({DEMO_USER["username"]: account}),
    }
    process, log = parts.start("op", ["node", "server.mjs"], env=env, cwd=OP_DIR)
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/.well-known/openid-configuration", process, log)
    return base


def console_environment(folder, port, aws_endpoint):
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sso_admin.settings",
        "CONSOLE_DEMO": "true",
        "DATABASE_URL": f"sqlite:///{folder / 'console.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://localhost/",
        "CELERY_QUEUE": f"demo-{port}",  # apart from `make run`'s tasks on the same broker
        "CACHE_URL": "locmemcache://",
        "AWS_ENDPOINT_URL": aws_endpoint,  # the pool's discovery document, stood in
        "SSO_ADMIN_ALLOW_PRIVATE_URLS": "true",  # every part is on 127.0.0.1
        "CONSOLE_OIDC_ISSUER": "",
    }


def seed(folder):
    """What an admin would have entered, through the same forms and functions (so it is in the
    history): returns the local admin's one-time password."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from console import instances, providers, signin_accounts, users
    from console.audit import Actor, ActorType
    from console.instance_forms import InstanceForm
    from console.kinds import CognitoProviderForm

    call_command("migrate", verbosity=0)
    password = users.create_bootstrap_admin()
    demo = Actor(ActorType.SYSTEM, "", "demo set-up")
    form = CognitoProviderForm(
        data={
            "name": "Demo Cognito",
            "aws_region": REGION,
            "user_pool_id": POOL,
            "client_id": APP_CLIENT,
            "scopes": "openid email",
        }
    )
    if not form.is_valid():
        raise DemoFailed(f"the demo provider's form: {form.errors.as_text()}")
    provider = providers.save_provider(form, actor=demo)
    provider, report = providers.run_validation(provider, actor=demo)
    failed = [check for check in report.as_list() if check["status"] == "fail"]
    if failed:
        raise DemoFailed(f"the demo provider fails its checks: {failed}")
    signin_accounts.enter(
        provider,
        username=DEMO_USER["username"],
        email=DEMO_USER["email"],
        password=DEMO_USER["password"],
        actor=demo,
    )
    registered = []
    for name, runner in INSTANCES:
        home = folder / name
        form = InstanceForm(
            data={
                "name": name,
                "url_base": (home / ".env").read_text().split("=", 1)[1].strip(),
                "shape": "compose",
                "rollout_group": "default",
                "provider": provider.pk,
                "push_target": "none",
                "signin_runner": runner,
            }
        )
        if not form.is_valid():
            raise DemoFailed(f"the demo instance {name}: {form.errors.as_text()}")
        instance, token = instances.create_instance(form, actor=demo)
        (home / "token").write_text(token)
        registered.append((name, runner, instance.pk))
    connections.close_all()
    return password, registered


def guide(url, password, folder):
    lines = [
        "",
        "*" * 72,
        f"The demo console is ready: open {url}",
        "",
        "    username: admin",
        f"    password: {password}   (one-time: you choose your own at the first sign-in)",
        "",
        "Then, in about five minutes:",
        "  1. Providers -> Demo Cognito: every check passes (its hosted UI is on this machine).",
        "  2. Publish it. Two stand-in Diffgrams, demo-eu and demo-us, pull it within seconds.",
        "  3. Instances: both go to \u201csigned in\u201d once the demo user signed in through",
        "     Diffgram's callback (demo-eu's agent signs in; the console signs in to demo-us).",
        "  4. History: every step, from the demo set-up to the sign-ins.",
        "",
        f"Demo identity provider user: {DEMO_USER['username']} / {DEMO_USER['password']}",
        f"Logs of every part: {folder}/",
        "Ctrl-C stops the demo.",
        "*" * 72,
    ]
    print("\n".join(lines), flush=True)


def run(port):
    folder = ROOT / "var" / "demo" / str(port)
    shutil.rmtree(folder, ignore_errors=True)  # every demo starts from scratch
    folder.mkdir(parents=True)
    diffgrams = {}
    for name, _ in INSTANCES:
        (folder / name).mkdir()
        diffgrams[name] = StandInDiffgram(env_file=folder / name / ".env")
        diffgrams[name].write_own_settings()
    parts = Parts(folder, env=None)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        op_base = start_op(parts, free_port(), [d.url_base for d in diffgrams.values()])
        pool = DocumentServer()
        pool.json(
            f"/{POOL}/.well-known/openid-configuration",
            cognito_document(REGION, POOL, op_base, f"{op_base}/.well-known/jwks.json"),
        )
        env = console_environment(folder, port, pool.base)
        os.environ.update(env)
        parts.env = env
        password, registered = seed(folder)
        url = f"http://127.0.0.1:{port}/"
        web, web_log = parts.start(
            "web", [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
        )
        parts.start("worker", [PYTHON, "-m", "celery", "-A", "sso_admin", "worker",
                               "--pool=threads", "--concurrency=4", "--loglevel=INFO"])  # fmt: skip
        parts.start("beat", [PYTHON, "-m", "celery", "-A", "sso_admin", "beat", "--loglevel=INFO",
                             "--schedule", str(folder / "celerybeat-schedule")])  # fmt: skip
        wait_for(url + "healthz", web, web_log)
        for name, runner, pk in registered:
            home = folder / name
            agent = [PYTHON, "-m", "agent", "pull", "--console", url.rstrip("/"),
                     "--instance", str(pk), "--token-file", str(home / "token"),
                     "--env-file", str(home / ".env"), "--interval", str(POLL_SECONDS)]  # fmt: skip
            parts.start(f"agent-{name}", agent + (["--signin"] if runner == "agent" else []))
        guide(url, password, folder)
        while not stopping:
            stopped = parts.first_stopped()
            if stopped:
                name, code, log = stopped
                raise DemoFailed(f"{name} stopped (exit {code}); see {log}")
            time.sleep(0.5)  # a signal or a stopped part ends the wait
        print(f"\nThe demo stopped; its data stays in {folder}/ until the next `make demo`.")
        return 0
    except DemoFailed as failure:
        print(f"\nThe demo could not run: {failure}", file=sys.stderr)
        return 1
    finally:
        parts.stop()
        for diffgram in diffgrams.values():
            diffgram.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="the console's port (default 8000)")
    return run(parser.parse_args(argv).port)


if __name__ == "__main__":
    sys.exit(main())
