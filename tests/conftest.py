"""Shared actors and real components for the test suite.

Tests that need a component which may not be running (PostgreSQL, Redis, Chromium, Node) ask for
it through `require_component`: outside CI a missing component skips the test with a message
saying what to start; with CI=true it fails the test.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group

from console.roles import ADMIN, AUDITOR

# Playwright's sync API runs an event loop in the test thread; the ORM calls our tests make
# around it are synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple 42"


def subprocess_environment():
    """The environment for child processes, without the test-only async override."""
    return {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}


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


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Cached JWKS, validations, pull counts and pull state must not leak between tests."""
    from django.core.cache import cache

    from console import ratelimits
    from console.pull_state import pull_states

    cache.clear()
    ratelimits._pull_windows.clear()
    pull_states.drop()


# --- actors -----------------------------------------------------------------------------------


def make_user(django_user_model, username, role=None):
    user = django_user_model.objects.create_user(username=username, password=PASSWORD)
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def admin_user(django_user_model):
    return make_user(django_user_model, "alice-admin", ADMIN)


@pytest.fixture
def auditor_user(django_user_model):
    return make_user(django_user_model, "oscar-auditor", AUDITOR)


@pytest.fixture
def norole_user(django_user_model):
    return make_user(django_user_model, "nora-norole")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def auditor_client(auditor_user):
    from django.test import Client

    client = Client()  # its own session, so a test can hold an admin and an auditor at once
    client.force_login(auditor_user)
    return client


# --- real Celery worker -------------------------------------------------------------------------


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


def start_worker(queue, folder, database_url, extra_environment=None):
    """A real `celery -A sso_admin worker` process (solo pool) consuming `queue`."""
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
            "--pool", "solo", "--loglevel", "INFO", "--hostname", f"{queue}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ],
        cwd=ROOT, env=environment, stdout=log_file, stderr=subprocess.STDOUT,
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


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory, _moto_server):
    """One real worker for the session, on the configured broker and the test database."""
    from django.conf import settings

    from sso_admin.celery import app

    require_component(
        broker_reachable(),
        f"the Celery broker {settings.CELERY_BROKER_URL.split('@')[-1]!r}",
        "start Redis: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''",
    )
    queue = f"test-{uuid.uuid4().hex[:8]}"
    worker = start_worker(
        queue,
        tmp_path_factory.mktemp("celery"),
        subprocess_database_url(django_db_blocker),
        {"AWS_ENDPOINT_URL": _moto_server},
    )
    # Route every task this test process sends to the worker's private queue, so parallel runs
    # and leftovers on a shared broker cannot interfere.
    previous_queue = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    yield worker
    app.conf.task_default_queue = previous_queue
    stop_worker(worker)


# --- browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Playwright drives Debian's Chromium: `playwright install` cannot download here."""
    require_component(
        Path(CHROMIUM).exists() or shutil.which("chromium"),
        "Chromium",
        "install it: apt-get install -y chromium",
    )
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
        "args": [
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ],
    }  # fmt: skip


# --- audit table triggers -----------------------------------------------------------------------

AUDIT_TRIGGER_MIGRATION = "console.migrations.0003_audit_append_only"


@pytest.fixture(autouse=True)
def _sqlite_flush_past_audit_triggers(request):
    """On SQLite, Django empties tables between transactional tests with DELETE, which the
    append-only trigger refuses. Drop the triggers just before that flush and put them back
    before the next test. (PostgreSQL flushes with TRUNCATE, which row triggers do not see.)"""
    transactional = "transactional_db" in request.fixturenames or "live_server" in (
        request.fixturenames
    )
    marker = request.node.get_closest_marker("django_db")
    if marker and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        transactional = True
    if not transactional:
        yield
        return
    request.getfixturevalue("transactional_db")
    from importlib import import_module

    from django.db import connection

    migration = import_module(AUDIT_TRIGGER_MIGRATION)
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        for statement in migration.SQLITE_FORWARD:
            cursor.execute(statement)
    yield
    with connection.cursor() as cursor:
        for statement in migration.SQLITE_BACKWARD:
            cursor.execute(statement)


@pytest.fixture
def audit_triggers_disabled():
    """Tamper with the audit table as someone with raw database access would."""
    from contextlib import contextmanager
    from importlib import import_module

    from django.db import connection

    migration = import_module(AUDIT_TRIGGER_MIGRATION)

    @contextmanager
    def disabled():
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = replica")
            else:
                for statement in migration.SQLITE_BACKWARD:
                    cursor.execute(statement)
            try:
                yield cursor
            finally:
                if connection.vendor == "postgresql":
                    cursor.execute("SET session_replication_role = DEFAULT")
                else:
                    for statement in migration.SQLITE_FORWARD:
                        cursor.execute(statement)

    return disabled


# --- identity providers on 127.0.0.1 ------------------------------------------------------------


@pytest.fixture(scope="session")
def _document_server():
    from tests.idp_server import DocumentServer

    server = DocumentServer()
    yield server
    server.stop()


@pytest.fixture
def idp(_document_server, settings):
    """A local HTTP server for discovery documents; outbound loopback requests allowed."""
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    _document_server.reset()
    yield _document_server
    _document_server.reset()


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
        self.clients, self.accounts, self.jwks = [], {}, None

    def start(self, *, clients=None, accounts=None, jwks=None):
        self.stop()
        self.clients = clients if clients is not None else self.clients
        self.accounts = accounts if accounts is not None else self.accounts
        self.jwks = jwks if jwks is not None else self.jwks
        environment = {
            **subprocess_environment(),
            "PORT": str(self.port),
            "OP_SHAPE": self.shape,
            "OP_REALM": self.realm,
            "OP_CLIENTS": json.dumps(self.clients),
            "OP_ACCOUNTS": json.dumps(self.accounts),
        }
        if self.jwks:
            environment["OP_JWKS"] = json.dumps(self.jwks)
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


def require_node_op():
    require_component(
        shutil.which("node") and (OP_DIR / "node_modules" / "oidc-provider").is_dir(),
        "The node oidc-provider test OP",
        "install Node 20 and run: npm ci --prefix tests/op",
    )


@pytest.fixture(scope="session")
def _node_op_process(tmp_path_factory):
    require_node_op()
    from tests.idp_server import signing_key

    op = NodeOP(tmp_path_factory.mktemp("node-op"))
    op.start(
        clients=[
            {
                "client_id": "console",
                "client_secret": "console-test-secret",
                "redirect_uris": ["http://localhost/oidc/callback/"],
                "token_endpoint_auth_method": "client_secret_post",
            }
        ],
        jwks={"keys": [signing_key("op-key-1").as_dict(private=True)]},
    )
    yield op
    op.stop()


@pytest.fixture
def node_op(_node_op_process, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    return _node_op_process


# --- AWS through a moto server ------------------------------------------------------------------


@pytest.fixture(scope="session")
def _moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(_moto_server, settings, monkeypatch):
    """A real moto server; boto3 and the console's Cognito discovery both point at it."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{_moto_server}/moto-api/reset", method="POST"))
    settings.AWS_ENDPOINT_URL = _moto_server
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    for name, value in {
        "AWS_ENDPOINT_URL": _moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    return _moto_server


# --- providers and instances ready for rollout tests ---------------------------------------------


@pytest.fixture
def keycloak_provider(idp, django_db_blocker):
    """A validated Keycloak provider (served by the local document server) with the
    credentials Diffgram needs at start-up."""
    from console import providers
    from console.forms import KeycloakProviderForm
    from tests import idp_server

    server_url = idp_server.serve_keycloak(idp)
    form = KeycloakProviderForm(
        data={
            "name": "Lab Keycloak",
            "keycloak_server_url": server_url,
            "keycloak_realm": "diffgram-realm",
            "client_id": "diffgram-{instance}",
            "keycloak_master_user": "admin",
            "keycloak_master_password": "kc-master-canary",
            "keycloak_diffgram_user": "diffgram-admin",
            "keycloak_diffgram_password": "kc-diffgram-canary",
        }
    )
    assert form.is_valid(), form.errors
    provider = providers.save_provider(form)
    provider, report = providers.run_validation(provider)
    assert report.ok, report.as_list()
    return provider


def make_instance(provider, name, **fields):
    """Register an instance the way the form does; returns (instance, token)."""
    from console import instances
    from console.forms import InstanceForm

    data = {
        "name": name,
        "url_base": f"https://{name}.example.com/",
        "shape": "compose",
        "rollout_group": "default",
        "provider": provider.pk if provider else "",
        "push_target": "none",
        **fields,
    }
    form = InstanceForm(data=data)
    assert form.is_valid(), form.errors
    return instances.create_instance(form)


# --- the agent as a real process ----------------------------------------------------------------

AGENT = ROOT / "agent" / "diffgram_sso_agent.py"


class AgentProcess:
    """Runs agent/diffgram_sso_agent.py the way an operator would."""

    def __init__(self, tmp_path, instance, token, console_url):
        self.folder = tmp_path
        self.instance, self.console_url = instance, console_url
        self.env_file = tmp_path / ".env"
        self.token_file = tmp_path / "token"
        self.token_file.write_text(token + "\n")
        self.secret_file = tmp_path / "signing-secret"
        self.secret_file.write_text(instance.signing_secret())
        self.server = None

    def common_args(self):
        return [
            "--console", self.console_url, "--instance", str(self.instance.pk),
            "--token-file", str(self.token_file), "--env-file", str(self.env_file),
        ]  # fmt: skip

    def pull(self, *extra):
        return subprocess.run(
            [sys.executable, str(AGENT), "pull", *self.common_args(), *extra],
            capture_output=True, text=True, timeout=60, env=subprocess_environment(),
        )  # fmt: skip

    def serve(self, port, *extra):
        self.log_path = self.folder / f"agent-{port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open while it serves
        self.server = subprocess.Popen(
            [sys.executable, str(AGENT), "serve", "--listen", f"127.0.0.1:{port}",
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


# --- the console's own sign-in against an in-process OP ------------------------------------------

SSO_USERS = [
    ("alice-sub", {"email": "alice@example.com", "groups": ["sso-admins"]}),
    ("oscar-sub", {"email": "oscar@example.com", "groups": ["sso-auditors"]}),
    ("nora-sub", {"email": "nora@example.com", "groups": ["engineering"]}),
]


@pytest.fixture(scope="module")
def mock_op():
    """oidc-provider-mock in a thread: the user is chosen by POSTing `sub` to authorize."""
    from oidc_provider_mock import run_server_in_thread
    from oidc_provider_mock._storage import User as OPUser

    users = [OPUser(sub=sub, claims=claims) for sub, claims in SSO_USERS]
    with run_server_in_thread(port=0, user_claims=users) as server:
        yield f"http://127.0.0.1:{server.server_port}"


def set_groups(op, sub, groups):
    """The OP's own admin API: change a user's claims, as an IdP admin would."""
    import urllib.request

    email = sub.replace("-sub", "@example.com")
    request = urllib.request.Request(
        f"{op}/users/{sub}",
        data=json.dumps({"email": email, "groups": groups}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def sso(mock_op, settings):
    """The mock OP stored, validated and marked as the console's sign-in provider."""
    from console import providers
    from console.forms import OIDCProviderForm

    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    settings.CONSOLE_ADMIN_GROUPS = ["sso-admins"]
    settings.CONSOLE_AUDITOR_GROUPS = ["sso-auditors"]
    form = OIDCProviderForm(
        data={
            "name": "Mock OP",
            "issuer": mock_op,
            "client_id": "console",
            "client_secret": "console-secret",
            "scopes": "openid email profile",
        }
    )
    assert form.is_valid(), form.errors
    provider, report = providers.run_validation(providers.save_provider(form))
    assert provider.discovery_snapshot, report.as_list()
    providers.mark_console_login(provider)
    set_groups(mock_op, "alice-sub", ["sso-admins"])
    set_groups(mock_op, "oscar-sub", ["sso-auditors"])
    return provider


@pytest.fixture
def webhook_instance(keycloak_provider, live_server, tmp_path):
    """A pushed instance on the Keycloak provider and its agent (serving once a test says so)
    on a free port of 127.0.0.1, acknowledging to the live server."""
    port = free_port()
    instance, token = make_instance(
        keycloak_provider, "pushed", push_target="webhook",
        webhook_url=f"http://127.0.0.1:{port}/",
    )  # fmt: skip
    agent = AgentProcess(tmp_path, instance, token, live_server.url)
    agent.port = port
    yield instance, agent
    agent.stop()
