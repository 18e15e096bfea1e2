"""Fixtures: shared actors and real components for the test suite. The helpers they use, and
that tests import, are in tests/support.py."""

import os
import shutil
import uuid
from pathlib import Path

import pytest

from console.roles import ADMIN, AUDITOR
from tests.mail_and_hooks import HookReceiver, SmtpServer
from tests.support import (
    AUDIT_TRIGGER_MIGRATION,
    CHROMIUM,
    SSO_USERS,
    AgentProcess,
    Host,
    NodeOP,
    broker_reachable,
    free_port,
    make_instance,
    make_user,
    require_component,
    require_node_op,
    set_groups,
    start_worker,
    stop_worker,
    subprocess_database_url,
    validated_keycloak_provider,
)

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Cached JWKS, validations, pull counts, notes and pull state must not leak between tests."""
    from django.core.cache import cache

    from console import instances, ratelimits
    from console.pull_state import pull_states

    cache.clear()
    ratelimits._pull_windows.clear()
    instances.pull_notes.forget()
    pull_states.drop()


# --- actors -----------------------------------------------------------------------------------


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


TASKS_NOT_CONSUMED = "tests-not-consumed"


@pytest.fixture(autouse=True)
def _tasks_wait_without_a_worker(request):
    """A test that does not ask for `celery_worker` queues its tasks where nobody takes them.
    Otherwise the session's worker, if an earlier test started it, would run them while this
    test's database is emptied, and its locks deadlocked that TRUNCATE in CI."""
    if "celery_worker" in request.fixturenames:
        yield
        return
    from sso_admin.celery import app

    previous = app.conf.task_default_queue
    app.conf.task_default_queue = TASKS_NOT_CONSUMED
    yield
    app.conf.task_default_queue = previous


@pytest.fixture(scope="session", autouse=True)
def _forget_unconsumed_tasks():
    yield
    from sso_admin.celery import app

    try:
        with app.connection_for_write() as connection:
            connection.default_channel.queue_purge(TASKS_NOT_CONSUMED)
    except Exception:  # noqa: BLE001 - no broker, nothing queued
        pass


@pytest.fixture(scope="session")
def smtp_server():
    """A real SMTP server on 127.0.0.1 (aiosmtpd); the Celery worker sends alert mail to it."""
    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_server):
    """The SMTP server, with nothing received yet."""
    smtp_server.messages.clear()
    return smtp_server


@pytest.fixture
def hook_receiver():
    receiver = HookReceiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory, _moto_server, smtp_server):
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
        {"AWS_ENDPOINT_URL": _moto_server, "EMAIL_URL": smtp_server.url,
         "ALERT_RETRY_SECONDS": "1", "ALERT_MAX_ATTEMPTS": "3"},
    )  # fmt: skip
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
    from tests import idp_server

    return validated_keycloak_provider(idp_server.serve_keycloak(idp))


# --- the agent as a real process ----------------------------------------------------------------

# --- the console's own sign-in against an in-process OP ------------------------------------------


@pytest.fixture(scope="module")
def mock_op():
    """oidc-provider-mock in a thread: the user is chosen by POSTing `sub` to authorize."""
    from oidc_provider_mock import run_server_in_thread
    from oidc_provider_mock._storage import User as OPUser

    users = [OPUser(sub=sub, claims=claims) for sub, claims in SSO_USERS]
    with run_server_in_thread(port=0, user_claims=users) as server:
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def sso(mock_op, settings):
    """The mock OP stored, validated and marked as the console's sign-in provider."""
    from console import providers
    from console.kinds import OIDCProviderForm

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


@pytest.fixture
def hosts(tmp_path, live_server):
    """Diffgram hosts (tests/support.py: Host), each a stand-in Diffgram with a real agent."""
    made = []

    def make(provider, name, **fields):
        made.append(Host(tmp_path, provider, name, live_server, **fields))
        return made[-1]

    yield make
    for host in made:
        host.stop()
