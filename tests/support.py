"""Helpers the tests share: actors, real components started as processes (Celery workers, the
node OpenID Provider, agents), and objects made the way the console makes them. Fixtures are in
tests/conftest.py; this is an ordinary module that tests import.

Tests that need a component which may not be running (PostgreSQL, Redis, Chromium, Node) ask for
it through `require_component`: outside CI a missing component skips the test with a message
saying what to start; with CI=true it fails the test.
"""

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from console import agent_setup, audit, kinds, providers
from console.kinds import CognitoProviderForm, KeycloakProviderForm
from console.models import ApiToken, AuditEvent, Provider
from tests.idp_server import cognito_document

ROOT = Path(__file__).resolve().parent.parent

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

CHROMIUM = "/usr/bin/chromium"

PASSWORD = "correct horse battery staple 42"


def browser_sign_in(page, live_server, user, password=PASSWORD):
    """Sign in through the console's login form in a Playwright page."""
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def add_keycloak_in_browser(page, live_server, server_url, *, name, url_base, master_password):
    """Fill in and submit the new Keycloak provider form as an admin would."""
    page.goto(f"{live_server.url}/providers/new/keycloak/")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Server URL").fill(server_url)
    page.get_by_label("Realm").fill("diffgram-realm")
    page.get_by_label("Client id").fill("diffgram-{instance}")
    page.get_by_label("Master admin user").fill("admin")
    page.get_by_label("Master admin password").fill(master_password)
    page.get_by_label("Diffgram admin user").fill("diffgram-admin")
    page.get_by_label("Diffgram admin password").fill(master_password + "-diffgram")
    page.get_by_label("Diffgram URL_BASE").fill(url_base)
    page.get_by_role("button", name="Add and validate").click()


def subprocess_environment():
    """The environment for child processes, without the test-only async override."""
    return {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}


class MakeTarget:
    """`make ARGS…` as a user runs it in a terminal: in a session of its own, so that Ctrl-C
    (interrupt()) reaches every process it starts; its output collected line by line."""

    def __init__(self, *args, env):
        self.process = subprocess.Popen(
            ["make", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True).start()

    @property
    def output(self):
        return "".join(self.lines)

    def read_until(self, pattern, timeout):
        """Wait until a line matches `pattern` (regular expression); its match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} never printed:\n" + "".join(self.lines[-80:]))

    def interrupt(self, timeout=30):
        """Ctrl-C; returns once every process of the session has stopped (else kills them)."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise


def require_component(available, what, how_to_start):
    """Skip (locally) or fail (CI=true) when a real component is missing."""
    if available:
        return
    message = f"{what} is not available; {how_to_start}"
    if IN_CI:
        pytest.fail(f"CI=true requires it: {message}")
    pytest.skip(message)  # only outside CI: with CI=true it failed just above


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(condition, what, timeout=60, interval=0.2):
    """Poll `condition` until it is true; fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout}s")


def make_user(django_user_model, username, role=None):
    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def database_url_for_subprocess(settings_dict):
    """A DATABASE_URL pointing a child process at the database the tests are using."""
    if settings_dict["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


def broker_reachable():
    from sso_admin.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
        return True
    except Exception:
        return False


class Worker:
    """A real `celery -A sso_admin worker` process consuming a queue of its own."""

    def __init__(self, queue, marker_dir, process, log_path):
        self.queue = queue
        self.marker_dir = marker_dir
        self.process = process
        self.log_path = log_path

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_until(self, condition, what, timeout=60):
        """Poll `condition` (which reads the database) until it is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"{what} did not happen within {timeout}s:\n{self.log()[-5000:]}")

    def wait_for_marker(self, name, timeout=60):
        deadline = time.monotonic() + timeout
        marker = self.marker_dir / name
        while time.monotonic() < deadline:
            if marker.exists():
                return True
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"marker {name!r} not written within {timeout}s:\n{self.log()}")


def start_worker(queue, folder, database_url, extra_environment=None, pool=("solo",)):
    """A real `celery -A sso_admin worker` process consuming `queue`, in a process group of its
    own (a drill can kill it with its children): the solo pool, or `pool` such as
    ("prefork", "--concurrency", "2")."""
    marker_dir = folder / f"{queue}-markers"
    marker_dir.mkdir(exist_ok=True)
    log_path = folder / f"{queue}.log"
    environment = {
        **subprocess_environment(),
        "DATABASE_URL": database_url,
        "CELERY_TEST_MARKER_DIR": str(marker_dir),
        "CELERY_QUEUE": queue,  # tasks the worker itself sends stay on its queue
        # Agents and the moto server listen on 127.0.0.1; retries are kept short.
        "SSO_ADMIN_ALLOW_PRIVATE_URLS": "true",
        "PUSH_RETRY_BACKOFF_SECONDS": "1",
        "PUSH_MAX_ATTEMPTS": "3",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **(extra_environment or {}),
    }
    log_file = open(log_path, "w")  # noqa: SIM115 - kept open for the worker's lifetime
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "sso_admin", "worker",
            "--include", "tests.worker_tasks", "--queues", queue,
            "--pool", *pool, "--loglevel", "INFO", "--hostname", f"{queue}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    worker = Worker(queue, marker_dir, process, log_path)
    worker.log_file = log_file
    return worker


def stop_worker(worker):
    if worker.process.poll() is None:
        worker.process.terminate()
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
    worker.log_file.close()


def subprocess_database_url(django_db_blocker):
    from django.db import connection

    with django_db_blocker.unblock():
        return database_url_for_subprocess(connection.settings_dict)


AUDIT_TRIGGER_MIGRATION = "console.migrations.0003_audit_append_only"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process, log_path, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return
        if process.poll() is not None:
            raise AssertionError(f"process exited early:\n{log_path.read_text()}")
        time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port} after {timeout}s:\n{log_path.read_text()}")


OP_DIR = ROOT / "tests" / "op"


class NodeOP:
    """The node `oidc-provider` (a certified OpenID Provider) as a real process, shaped as a
    plain OP, a Keycloak realm or a Cognito hosted-UI domain (tests/op/server.mjs)."""

    def __init__(self, tmp_dir, shape="plain", realm="diffgram-realm"):
        self.tmp_dir = tmp_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.shape, self.realm = shape, realm
        self.issuer = self.base + (f"/realms/{realm}" if shape == "keycloak" else "")
        self.process = None
        self.clients, self.accounts, self.jwks, self.cognito_pool = [], {}, None, None
        self.keycloak_admin = ("admin", "admin")

    def start(self, *, clients=None, accounts=None, jwks=None, cognito_pool=None,
              keycloak_admin=None):  # fmt: skip
        """(Re)start with these clients and accounts. `cognito_pool` (cognito shape):
        {"endpoint", "region", "pool"} of a moto user pool whose users sign in at this hosted
        UI; `keycloak_admin` (keycloak shape): the master realm admin's (user, password)."""
        self.stop()
        self.clients = clients if clients is not None else self.clients
        self.accounts = accounts if accounts is not None else self.accounts
        self.jwks = jwks if jwks is not None else self.jwks
        self.cognito_pool = cognito_pool if cognito_pool is not None else self.cognito_pool
        self.keycloak_admin = keycloak_admin if keycloak_admin is not None else self.keycloak_admin
        environment = {
            **subprocess_environment(),
            "PORT": str(self.port),
            "OP_SHAPE": self.shape,
            "OP_REALM": self.realm,
            "OP_CLIENTS": json.dumps(self.clients),
            "OP_ACCOUNTS": json.dumps(self.accounts),
            "OP_KEYCLOAK_ADMIN": ":".join(self.keycloak_admin),
        }
        if self.jwks:
            environment["OP_JWKS"] = json.dumps(self.jwks)
        if self.cognito_pool:
            environment["OP_COGNITO_POOL"] = json.dumps(self.cognito_pool)
        self.log_path = self.tmp_dir / f"op-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open while the OP runs
        self.process = subprocess.Popen(
            ["node", "server.mjs"], cwd=OP_DIR, env=environment,
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for_port(self.port, self.process, self.log_path)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self._log.close()
        self.process = None


def validated_cognito_provider(op, idp, settings, region, pool, **fields):
    """A validated Cognito provider whose pool publishes real Cognito's discovery document
    (issuer on cognito-idp, served by the `idp` fixture; endpoints on the hosted-UI domain, here
    the node OP `op`). `fields` are the form's other fields (client_id, scopes, ...)."""
    idp.json(
        f"/{pool}/.well-known/openid-configuration",
        cognito_document(region, pool, op.base, f"{op.base}/.well-known/jwks.json"),
    )
    settings.AWS_ENDPOINT_URL = idp.base
    data = {"name": "Corp Cognito", "aws_region": region, "user_pool_id": pool, **fields}
    form = CognitoProviderForm(data=data)
    assert form.is_valid(), form.errors
    provider, report = providers.run_validation(providers.save_provider(form))
    assert report.ok, [c for c in report.as_list() if c["status"] == "fail"]
    return provider


def stored_cognito_provider(pool="eu-west-1_Stored1", name="Corp Cognito"):
    """A Cognito provider as a passed validation leaves it, without contacting anything: its
    stored document is real Cognito's shape, at hosts that never resolve."""
    provider = Provider(
        name=name, kind="cognito", aws_region=REGION, user_pool_id=pool,
        client_id="diffgram-app", scopes="openid email", validation_passed=True,
        validated_at=timezone.now(),
        discovery_snapshot=cognito_document(
            REGION, pool, "https://hosted-ui.invalid", "https://jwks.invalid/keys"
        ),
    )  # fmt: skip
    provider.issuer = kinds.of(provider).issuer(provider)
    provider.save()
    return provider


def validated_keycloak_provider(server_url, realm="diffgram-realm", **fields):
    """A validated Keycloak provider at `server_url` (the document server's or the node OP's),
    with the credentials Diffgram needs at start-up; `fields` override the form's values."""
    data = {
        "name": "Lab Keycloak", "keycloak_server_url": server_url, "keycloak_realm": realm,
        "client_id": "diffgram-{instance}", "keycloak_master_user": "admin",
        "keycloak_master_password": "kc-master-canary", "keycloak_diffgram_user": "diffgram-admin",
        "keycloak_diffgram_password": "kc-diffgram-canary", **fields,
    }  # fmt: skip
    form = KeycloakProviderForm(data=data)
    assert form.is_valid(), form.errors
    provider, report = providers.run_validation(providers.save_provider(form))
    assert report.ok, [c for c in report.as_list() if c["status"] == "fail"]
    return provider


def require_node_op():
    require_component(
        shutil.which("node") and (OP_DIR / "node_modules" / "oidc-provider").is_dir(),
        "The node oidc-provider test OP",
        "install Node 20 and run: npm ci --prefix tests/op",
    )


def make_instance(provider, name, **fields):
    """Register an instance the way the form does; returns (instance, token)."""
    from console import instances
    from console.instance_forms import InstanceForm

    data = {
        "name": name,
        "url_base": f"https://{name}.example.test/",
        "shape": "compose",
        "rollout_group": "default",
        "provider": provider.pk if provider else "",
        "push_target": "none",
        **fields,
    }
    form = InstanceForm(data=data)
    assert form.is_valid(), form.errors
    return instances.create_instance(form)


@functools.cache
def agent_file():
    """The agent as operators download it (console/agent_setup.py: one zip application),
    written once per test run."""
    path = Path(tempfile.mkdtemp(prefix="agent-")) / agent_setup.AGENT_DOWNLOAD_NAME
    path.write_bytes(agent_setup.agent_source())
    return path


class AgentProcess:
    """Runs the agent the way an operator would: the file the console serves."""

    def __init__(self, tmp_path, instance, token, console_url, diffgram_url="", extra_args=()):
        """With `diffgram_url` the agent verifies what it applied against that Diffgram;
        without, it does not verify (no Diffgram runs in most tests). `extra_args` go on
        every command line (e.g. --signin)."""
        self.folder = tmp_path
        self.diffgram_url = diffgram_url
        self.extra_args = tuple(extra_args)
        self.instance, self.console_url = instance, console_url
        self.env_file = tmp_path / ".env"
        self.token_file = tmp_path / "token"
        self.token_file.write_text(token + "\n")
        self.secret_file = tmp_path / "signing-secret"
        self.secret_file.write_text(instance.signing_secret())
        self.server = None

    def common_args(self):
        verify = ["--diffgram-url", self.diffgram_url] if self.diffgram_url else ["--no-verify"]
        return [
            "--console", self.console_url, "--instance", str(self.instance.pk),
            "--token-file", str(self.token_file), "--env-file", str(self.env_file), *verify,
            *self.extra_args,
        ]  # fmt: skip

    def pull(self, *extra):
        return subprocess.run(
            [sys.executable, str(agent_file()), "pull", "--once", *self.common_args(), *extra],
            capture_output=True, text=True, timeout=60, env=subprocess_environment(),
        )  # fmt: skip

    def serve(self, port, *extra):
        self.log_path = self.folder / f"agent-{port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open while it serves
        self.server = subprocess.Popen(
            [sys.executable, str(agent_file()), "serve", "--listen", f"127.0.0.1:{port}",
             "--secret-file", str(self.secret_file), *self.common_args(), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=subprocess_environment(),
        )  # fmt: skip
        wait_for_port(port, self.server, self.log_path)

    def stop(self):
        if self.server and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(timeout=10)
            self._log.close()

    def env(self):
        from dotenv import dotenv_values

        return dotenv_values(self.env_file, interpolate=False)


SSO_USERS = [
    ("alice-sub", {"email": "alice@example.test", "groups": ["sso-admins"]}),
    ("oscar-sub", {"email": "oscar@example.test", "groups": ["sso-auditors"]}),
    ("nora-sub", {"email": "nora@example.test", "groups": ["engineering"]}),
]


def set_claims(op, sub, **claims):
    """The OP's own admin API: the claims a user has at the IdP, as an IdP admin would set
    them (an admin of the console's groups unless `groups` says otherwise)."""
    import urllib.request

    request = urllib.request.Request(
        f"{op}/users/{sub}",
        data=json.dumps({"groups": ["sso-admins"], **claims}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


def set_groups(op, sub, groups):
    """A user's groups at the IdP (and the email their sub implies)."""
    set_claims(op, sub, email=sub.replace("-sub", "@example.test"), groups=groups)


# --- moved from the test modules that first needed them ------------------------------------

REGION = "eu-west-1"
PROVIDER = (AuditEvent.TargetType.PROVIDER, 7, "Corporate Okta")  # a target for audit tests


GOOD_CLIENT = {
    "ClientName": "diffgram",
    "CallbackURLs": ["https://lab.example.test/user/oauth2-login/", "https://other.app/cb"],
    "LogoutURLs": ["https://lab.example.test/user/login/"],
    "AllowedOAuthFlows": ["code"],
    "AllowedOAuthFlowsUserPoolClient": True,
    "AllowedOAuthScopes": ["openid", "email", "profile"],
    "ExplicitAuthFlows": ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    "SupportedIdentityProviders": ["COGNITO"],
    "RefreshTokenValidity": 7,
    "ReadAttributes": ["email", "name"],
    "PreventUserExistenceErrors": "ENABLED",
}


def aws(moto):
    return boto3.client("cognito-idp", region_name=REGION, endpoint_url=moto)


def make_pool(moto, client_config=GOOD_CLIENT, domain="diffgram-lab", secret=False):
    client = aws(moto)
    pool = client.create_user_pool(PoolName="diffgram")["UserPool"]["Id"]
    if domain:
        client.create_user_pool_domain(UserPoolId=pool, Domain=domain)
    app = client.create_user_pool_client(UserPoolId=pool, GenerateSecret=secret, **client_config)[
        "UserPoolClient"
    ]
    return pool, app


def make_pool_for_signins(moto):
    """A moto user pool with a public app client that lets users sign in with a password (the
    hosted UI of the node OP checks them there): (pool id, app client id)."""
    client = aws(moto)
    pool = client.create_user_pool(PoolName="diffgram")["UserPool"]["Id"]
    app = client.create_user_pool_client(
        UserPoolId=pool, ClientName="diffgram", GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]  # fmt: skip
    return pool, app


def make_provider(pool, app, secret=""):
    provider = Provider(
        name="Corp Cognito", kind="cognito", aws_region=REGION, user_pool_id=pool,
        client_id=app["ClientId"], scopes="openid email",
    )  # fmt: skip
    provider.issuer = kinds.of(provider).issuer(provider)
    if secret:
        provider.set_secret("client_secret", secret)
    provider.save()
    make_instance(provider, "lab", url_base="https://lab.example.test/")
    return provider


def token_for(user, **fields):
    token = ApiToken(user=user, name="ci", expires_at=timezone.now() + timedelta(days=30), **fields)
    secret = token.new_token()
    token.save()
    return secret


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def authorize_at_op(authorize_url, sub):
    """What the user does at the OP: pick the account. Returns the callback URL."""
    opener = urllib.request.build_opener(NoRedirect)
    data = urllib.parse.urlencode({"sub": sub}).encode()
    try:
        opener.open(urllib.request.Request(authorize_url, data=data), timeout=10)
    except urllib.error.HTTPError as redirect:
        assert redirect.code in (302, 303), redirect.read()
        return redirect.headers["Location"]
    raise AssertionError("the OP did not redirect back")


def sso_login(client, sub, start=None):
    start = client.get(start or reverse("oidc_authentication_init"))
    assert start.status_code == 302, start.content
    callback = authorize_at_op(start["Location"], sub)
    parts = urllib.parse.urlsplit(callback)
    return client.get(f"{parts.path}?{parts.query}"), start["Location"]


def write_events(count, **overrides):
    for number in range(count):
        audit.record(
            overrides.get("action", audit.Action.PROVIDER_CHANGED),
            target=overrides.get("target", PROVIDER),
            changes={"scopes": [f"openid {number}", f"openid email {number}"]},
        )


class Host:
    """One Diffgram host: its stand-in Diffgram (tests/diffgram_standin.py) and the real agent
    next to it. With `push`, the agent serves webhook pushes on a free port; with
    `agent_verifies=False`, it applies without verifying (the console verifies instead);
    `agent_args` go on the agent's command line (e.g. --signin)."""

    def __init__(self, tmp_path, provider, name, live_server, push=False, agent_verifies=True,
                 agent_args=(), **fields):  # fmt: skip
        from tests.diffgram_standin import StandInDiffgram

        folder = tmp_path / name
        folder.mkdir()
        self.diffgram = StandInDiffgram(folder / ".env")
        self.diffgram.write_own_settings()
        if push:
            port = free_port()
            fields = {
                **fields,
                "push_target": "webhook",
                "webhook_url": f"http://127.0.0.1:{port}/",
            }
        self.instance, token = make_instance(
            provider, name, url_base=self.diffgram.url_base, **fields
        )
        self.agent = AgentProcess(
            folder, self.instance, token, live_server.url,
            diffgram_url=self.diffgram.url_base if agent_verifies else "", extra_args=agent_args,
        )  # fmt: skip
        if push:
            self.agent.serve(port)

    def refresh(self):
        from console.models import Instance

        return Instance.objects.select_related("assigned_version").get(pk=self.instance.pk)

    def verified(self, number):
        instance = self.refresh()
        return instance.verified_version_number == number and instance.verify_ok is not None

    def stop(self):
        self.agent.stop()
        self.diffgram.stop()


def check_statuses(report):
    """{check id: status} of a discovery report."""
    return {check.id: check.status for check in report.checks}


def check_message(report, check_id):
    return next(check.message for check in report.checks if check.id == check_id)


def run_check_issuer(*args):
    """(exit code, what it printed) of the check_issuer command."""
    from io import StringIO

    from django.core.management import call_command

    out, err = StringIO(), StringIO()
    try:
        call_command("check_issuer", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue() + err.getvalue()
    return 0, out.getvalue()


def api_error(document):
    """An API error answer without its request id (different on every request), which it must
    carry."""
    body = dict(document)
    assert body.pop("request_id"), "every API error names its request id"
    return body
