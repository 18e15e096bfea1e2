"""The console's own sign-in, end to end through the backend, against an in-process OP
(oidc-provider-mock) over real HTTP on 127.0.0.1."""

import re
import subprocess
import sys
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from console import audit, providers, ratelimits
from console.kinds import OIDCProviderForm
from console.models import AuditEvent, ExternalIdentity, Provider
from console.roles import role_of
from tests.support import (
    PASSWORD,
    ROOT,
    authorize_at_op,
    make_user,
    port_open,
    require_component,
    set_groups,
    sso_login,
    subprocess_database_url,
    subprocess_environment,
)  # fmt: skip

pytestmark = pytest.mark.django_db


def test_an_admin_signs_in_and_is_matched_on_issuer_and_sub(client, sso, mock_op):
    response, authorize_url = sso_login(client, "alice-sub")
    assert response.status_code == 302 and response["Location"] == reverse("providers")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0]

    identity = ExternalIdentity.objects.get(subject="alice-sub")
    assert identity.issuer == mock_op
    user = identity.user
    # SSO usernames carry the issuer's host after "~", which no local username can hold.
    assert (user.username, user.email) == ("alice@example.test~127.0.0.1", "alice@example.test")
    assert not user.has_usable_password()
    assert role_of(user) == "admin"
    assert client.get(reverse("providers")).context["role"] == "admin"
    assert [
        e.action for e in AuditEvent.objects.filter(actor_label=user.username).order_by("id")
    ] == [
        "user.created",
        "user.role_changed",
        "login.succeeded",
    ]
    page = client.get(reverse("providers")).content.decode()
    assert "break-glass" not in page


def test_a_local_user_with_the_same_email_is_not_taken_over(client, sso, django_user_model):
    local = django_user_model.objects.create_user(
        "alice@example.test", "alice@example.test", PASSWORD
    )
    sso_login(client, "alice-sub")
    identity = ExternalIdentity.objects.get(subject="alice-sub")
    assert identity.user != local
    assert identity.user.username == "alice@example.test~127.0.0.1"


def test_email_and_role_are_updated_at_every_login(client, sso, mock_op):
    sso_login(client, "alice-sub")
    client.post(reverse("logout"))
    set_groups(mock_op, "alice-sub", ["sso-auditors"])
    sso_login(client, "alice-sub")
    user = ExternalIdentity.objects.get(subject="alice-sub").user
    assert role_of(user) == "auditor"
    change = AuditEvent.objects.filter(action="user.role_changed").first()  # newest
    assert change.changes == {"role": ["admin", "auditor"]}
    assert change.context == {"groups_claim": ["sso-auditors"]}


def test_an_auditor_is_read_only(client, sso):
    sso_login(client, "oscar-sub")
    assert client.get(reverse("providers")).status_code == 200
    assert client.post(reverse("provider-create", args=["oidc"]), {}).status_code == 403


def test_someone_in_no_group_gets_no_access_and_no_session(client, sso):
    response, _ = sso_login(client, "nora-sub")
    assert response.status_code == 403
    assert b"no console group" in response.content
    assert "_auth_user_id" not in client.session
    assert not ExternalIdentity.objects.filter(subject="nora-sub").exists()
    assert client.get(reverse("providers")).status_code == 302  # still signed out
    failed = AuditEvent.objects.get(action="login.failed")
    assert "no console group" in failed.context["reason"]


def test_a_user_who_loses_every_group_loses_the_role_too(client, sso, mock_op):
    sso_login(client, "alice-sub")
    client.post(reverse("logout"))
    set_groups(mock_op, "alice-sub", [])
    response, _ = sso_login(client, "alice-sub")
    assert response.status_code == 403
    assert role_of(ExternalIdentity.objects.get(subject="alice-sub").user) is None


def test_the_idp_error_is_shown_on_the_login_page(client, sso):
    start = client.get(reverse("oidc_authentication_init"))
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(start["Location"]).query)["state"][0]
    response = client.get(
        reverse("oidc_authentication_callback"),
        {"error": "access_denied", "error_description": "The user said no", "state": state},
        follow=True,
    )
    assert b"The identity provider answered: access_denied (The user said no)" in response.content


def test_the_session_is_refreshed_silently_when_the_id_token_expires(client, sso):
    sso_login(client, "alice-sub")
    session = client.session
    session["oidc_id_token_expiration"] = time.time() - 1
    session.save()
    response = client.get(reverse("providers"))
    assert response.status_code == 302
    assert "prompt=none" in response["Location"]
    assert response["Location"].startswith(sso.discovery_snapshot["authorization_endpoint"])


def test_a_bootstrap_issuer_from_the_environment_signs_in(client, mock_op, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    settings.CONSOLE_ADMIN_GROUPS = ["sso-admins"]
    settings.CONSOLE_OIDC_ISSUER = mock_op
    settings.CONSOLE_OIDC_CLIENT_ID = "console"
    settings.CONSOLE_OIDC_CLIENT_SECRET = "console-secret"
    login_page = client.get(reverse("login")).content.decode()
    assert "Sign in with single sign-on" in login_page
    response, _ = sso_login(client, "alice-sub")
    assert response["Location"] == reverse("providers")


def test_a_failing_bootstrap_issuer_is_a_clear_error_not_a_500(client, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    settings.CONSOLE_OIDC_ISSUER = "http://127.0.0.1:1/nothing-here"
    settings.CONSOLE_OIDC_CLIENT_ID = "console"
    response = client.get(reverse("login"))
    assert response.status_code == 200
    page = response.content.decode()
    assert (
        "Single sign-on is misconfigured (CONSOLE_OIDC_ISSUER=http://127.0.0.1:1/nothing-here)"
        in page
    )
    assert "connection refused" in page
    assert 'name="password"' in page  # the break-glass form is still there


class TestBreakGlass:
    def test_the_local_form_can_be_turned_off(self, client, admin_user, settings):
        settings.CONSOLE_LOCAL_LOGIN = False
        assert 'name="password"' not in client.get(reverse("login")).content.decode()
        response = client.post(
            reverse("login"), {"username": admin_user.username, "password": PASSWORD}
        )
        assert response.status_code == 403
        assert "_auth_user_id" not in client.session

    def test_a_local_admin_while_sso_is_configured_is_break_glass(self, client, admin_user, sso):
        client.post(reverse("login"), {"username": admin_user.username, "password": PASSWORD})
        page = client.get(reverse("providers")).content.decode()
        assert "Signed in with a local break-glass account" in page
        assert AuditEvent.objects.get(actor_label=admin_user.username).action == (
            "login.break_glass"
        )

    def test_a_local_auditor_is_a_local_user_not_break_glass(self, client, auditor_user, sso):
        """The Users page recommends local accounts for external auditors: their sign-ins
        are ordinary ones (no banner, no break-glass event, so no break-glass alert)."""
        client.post(reverse("login"), {"username": auditor_user.username, "password": PASSWORD})
        page = client.get(reverse("providers")).content.decode()
        assert "break-glass" not in page and ">Password</a>" in page  # a local password
        event = AuditEvent.objects.get(actor_label=auditor_user.username)
        assert (event.action, event.context) == ("login.succeeded", {"method": "local"})

    def test_before_single_sign_on_the_local_admin_is_the_way_in_not_break_glass(
        self, client, admin_user
    ):
        client.post(reverse("login"), {"username": admin_user.username, "password": PASSWORD})
        assert "break-glass" not in client.get(reverse("providers")).content.decode()
        assert AuditEvent.objects.get().action == "login.succeeded"

    def test_the_login_page_says_where_the_first_password_is_until_someone_signed_in(self, client):
        call_command("bootstrap_admin", stdout=StringIO())
        hint = 'id="first-sign-in"'
        page = client.get(reverse("login")).content.decode()
        assert hint in page and "<code>admin</code>" in page and "make run" in page
        get_user_model().objects.filter(username="admin").update(last_login=timezone.now())
        assert hint not in client.get(reverse("login")).content.decode()

    def test_the_breakglass_command_creates_then_resets(self):
        out = StringIO()
        call_command("breakglass", stdout=out)
        first = re.search(r"password: (\S+)", out.getvalue()).group(1)
        user = get_user_model().objects.get(username="breakglass")
        assert user.check_password(first) and role_of(user) == "admin"
        assert first not in user.password
        out = StringIO()
        call_command("breakglass", stdout=out)
        second = re.search(r"password: (\S+)", out.getvalue()).group(1)
        user.refresh_from_db()
        assert second != first and user.check_password(second) and not user.check_password(first)
        assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
            "user.created",
            "user.password_reset",
        ]


class TestTestLogin:
    def test_it_shows_the_claims_without_touching_the_session(self, admin_client, admin_user, sso):
        start = admin_client.get(reverse("provider-test-login", args=[sso.pk]))
        callback = authorize_at_op(start["Location"], "oscar-sub")
        parts = urllib.parse.urlsplit(callback)
        result = admin_client.get(f"{parts.path}?{parts.query}")
        # Redirected after the code was used: a reload shows the result again.
        assert result.status_code == 302
        shown_at = reverse("provider-test-login-result", args=[sso.pk])
        assert result["Location"] == shown_at
        for _ in range(2):
            result = admin_client.get(shown_at)
            assert result.status_code == 200
        page = result.content.decode()
        assert "The test login worked." in page
        assert "would sign in as <strong>auditor</strong>" in page
        assert "oscar@example.test" in page and "sso-auditors" in page
        assert admin_client.session["_auth_user_id"] == str(admin_user.pk)  # still alice-admin
        event = AuditEvent.objects.get(action="provider.test_login")
        assert event.context == {"passed": True, "role": "auditor", "sub": "oscar-sub"}

    def test_marking_console_login_needs_a_test_login_by_the_same_admin(
        self, admin_client, mock_op, settings
    ):
        settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
        settings.CONSOLE_ADMIN_GROUPS = ["sso-admins"]
        set_groups(mock_op, "alice-sub", ["sso-admins"])
        form = OIDCProviderForm(
            data={
                "name": "Other",
                "issuer": mock_op,
                "client_id": "c",
                "client_secret": "s",
                "scopes": "openid",
            }
        )
        assert form.is_valid()
        provider, _ = providers.run_validation(providers.save_provider(form))
        refused = admin_client.post(
            reverse("provider-console-login", args=[provider.pk]), follow=True
        )
        assert (
            b"Run a test login with this provider that maps to the admin role first"
            in refused.content
        )
        assert not Provider.objects.get(pk=provider.pk).console_login

        start = admin_client.get(reverse("provider-test-login", args=[provider.pk]))
        callback = authorize_at_op(start["Location"], "alice-sub")
        parts = urllib.parse.urlsplit(callback)
        tested = admin_client.get(f"{parts.path}?{parts.query}", follow=True)
        assert b"The test login worked." in tested.content, tested.content.decode()[-3000:]

        bob = Client()  # another admin, who ran no test login himself
        bob.force_login(make_user(get_user_model(), "bob", "admin"))
        bob.post(reverse("provider-console-login", args=[provider.pk]))
        assert not Provider.objects.get(pk=provider.pk).console_login

        admin_client.post(reverse("provider-console-login", args=[provider.pk]))
        assert Provider.objects.get(pk=provider.pk).console_login
        marked = AuditEvent.objects.get(action="provider.console_login_marked")
        assert marked.changes == {"console_login": [False, True]}
        assert marked.actor_label == "alice-admin"


def test_a_test_login_shows_the_exact_token_error(admin_client, mock_op, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    form = OIDCProviderForm(
        data={"name": "No secret", "issuer": mock_op, "client_id": "c", "scopes": "openid"}
    )
    assert form.is_valid()
    provider, _ = providers.run_validation(providers.save_provider(form))
    start = admin_client.get(reverse("provider-test-login", args=[provider.pk]))
    parts = urllib.parse.urlsplit(authorize_at_op(start["Location"], "alice-sub"))
    result = admin_client.get(f"{parts.path}?{parts.query}", follow=True)
    assert result.status_code == 400
    assert "The provider refused the token request: invalid_client" in result.content.decode()
    event = AuditEvent.objects.get(action="provider.test_login")
    assert event.context["passed"] is False and "invalid_client" in event.context["error"]


@pytest.mark.django_db(transaction=True)
def test_two_sign_ins_at_once_each_get_their_own_session(sso, mock_op):
    """Requests run in threads under a threaded server: nothing of one sign-in may live on an
    object another request shares."""
    import threading

    from django.db import connection

    results, errors = {}, []

    def sign_in(sub):
        try:
            client = Client()
            response, _ = sso_login(client, sub)
            # The request's own role: the test client's captured context mixes both threads.
            page = client.get(reverse("providers"))
            results[sub] = (response.status_code, page.wsgi_request.role)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_in, args=(sub,)) for sub in ("alice-sub", "oscar-sub")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert results == {"alice-sub": (302, "admin"), "oscar-sub": (302, "auditor")}


def test_the_silent_recheck_keeps_no_request_state(client, sso):
    """One middleware instance serves every thread: a silent re-check must not write the
    provider it used onto it."""
    from console.session_recheck import SessionRecheck

    middleware = SessionRecheck(lambda request: None)
    sso_login(client, "alice-sub")
    session = client.session
    session["oidc_id_token_expiration"] = time.time() - 1
    session.save()
    request = client.get(reverse("providers")).wsgi_request  # a signed-in request
    request.session["oidc_id_token_expiration"] = time.time() - 1
    before = dict(vars(middleware))
    response = middleware.recheck(request)
    assert response.status_code == 302 and "prompt=none" in response["Location"]
    assert vars(middleware).keys() - before.keys() <= {"exempt_paths"}


# --- failed sign-ins in the history ------------------------------------------------------------


def callback_error(client, state=None, description="d" * 500, error="access_denied"):
    query = {"error": error, "error_description": description}
    if state:
        query["state"] = state
    return client.get(reverse("oidc_authentication_callback"), query, follow=True)


def pending_state(client):
    """What anyone gets from /oidc/authenticate/: a sign-in of their own, pending."""
    start = client.get(reverse("oidc_authentication_init"))
    return urllib.parse.parse_qs(urllib.parse.urlsplit(start["Location"]).query)["state"][0]


def failures():
    return list(AuditEvent.objects.filter(action="login.failed").order_by("id"))


def test_an_error_nobody_asked_for_writes_nothing_and_shows_nothing(client):
    for _ in range(30):
        page = callback_error(client, state="made-up", description="FORGED " * 70)
    assert failures() == []
    assert b"FORGED" not in page.content
    assert b"start it again" in page.content


def test_failed_sign_ins_from_one_address_are_one_event_an_hour_with_only_an_error_code(
    client, sso, monkeypatch
):
    """Anyone can start a sign-in and come back with any error text: each address wrote 20
    events an hour, each with 200 characters of its choosing. Now: one event per address and
    hour, counting the rest, and of the provider's words only an error code."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(ratelimits, "time", types.SimpleNamespace(time=lambda: now[0]))
    for text in ("FORGED " * 30, "more", "and more"):
        callback_error(client, pending_state(client), description=text)
    callback_error(client, pending_state(client), error="<b>not_a_code</b> FORGED")
    [event] = failures()
    assert event.context["reason"] == "The identity provider answered access_denied"
    now[0] += 3600  # the next hour: one more event, counting the three left out
    callback_error(client, pending_state(client), error="<script>FORGED</script>")
    newest = failures()[-1]
    assert newest.context["reason"] == "The identity provider answered unrecognised_error"
    assert newest.context["not_recorded_in_the_hour_before"] == 3
    assert "FORGED" not in str([e.context for e in failures()])


@pytest.mark.django_db(transaction=True)
def test_the_cap_holds_across_web_processes(settings, django_db_blocker):
    """Two processes on one shared cache (Redis): one event, whichever process saw the
    failures first."""

    require_component(port_open("127.0.0.1", 6379), "Redis on 127.0.0.1:6379", "start Redis")
    redis_cache = "redis://127.0.0.1:6379/7"
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_cache,
    }}  # fmt: skip
    cache.clear()
    program = (
        "import django; django.setup()\n"
        "from django.test import RequestFactory\n"
        "from console.audit import record_failed_sign_in\n"
        "for _ in range(5):\n"
        "    record_failed_sign_in(RequestFactory().get('/', REMOTE_ADDR='203.0.113.9'), 'x')\n"
    )

    environment = {
        **subprocess_environment(), "CACHE_URL": redis_cache,
        "DATABASE_URL": subprocess_database_url(django_db_blocker),
    }  # fmt: skip
    other = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=environment,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert other.returncode == 0, other.stderr
    for _ in range(5):
        audit.record_failed_sign_in(RequestFactory().get("/", REMOTE_ADDR="203.0.113.9"), "x")
    assert len(failures()) == 1


def test_the_login_page_survives_a_secret_that_cannot_be_decrypted(client, sso, admin_user):
    Provider.objects.filter(pk=sso.pk).update(client_secret_encrypted="gAAAAAnot-a-fernet-token")
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b"cannot be decrypted with the configured" in page.content
    csrf_client = Client(enforce_csrf_checks=True)
    form = csrf_client.get(reverse("login"))
    token_value = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', form.content)[1]
    signed_in = csrf_client.post(
        reverse("login"),
        {"username": "alice-admin", "password": PASSWORD,
         "csrfmiddlewaretoken": token_value.decode()},
    )  # fmt: skip
    assert signed_in.status_code == 302


def run_test_login(
    admin_client, mock_op, settings, sub, scopes, admin_groups=("sso-admins",), nora_groups=()
):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    settings.CONSOLE_ADMIN_GROUPS = list(admin_groups)
    set_groups(mock_op, "alice-sub", ["sso-admins"])
    set_groups(mock_op, "nora-sub", list(nora_groups))
    form = OIDCProviderForm(
        data={"name": "Okta", "issuer": mock_op, "client_id": "c", "client_secret": "s",
              "scopes": scopes}
    )  # fmt: skip
    assert form.is_valid(), form.errors
    provider, _ = providers.run_validation(providers.save_provider(form))
    start = admin_client.get(reverse("provider-test-login", args=[provider.pk]))
    parts = urllib.parse.urlsplit(authorize_at_op(start["Location"], sub))
    return provider, admin_client.get(f"{parts.path}?{parts.query}", follow=True).content.decode()


def test_a_test_login_in_no_console_group_is_not_green_and_says_what_to_add(
    admin_client, mock_op, settings
):
    provider, page = run_test_login(admin_client, mock_op, settings, "nora-sub", "openid email")
    assert "result-ok" not in page and "result-warn" in page
    assert "the console would refuse it" in page
    assert "The <code>groups</code> claim was empty or absent" in page
    assert "Add <code>groups</code> to this provider" in page
    assert "for the console's own sign-in" not in page
    refused = admin_client.post(reverse("provider-console-login", args=[provider.pk]))
    assert refused.status_code == 302
    assert not Provider.objects.get(pk=provider.pk).console_login


def test_a_test_login_whose_groups_map_to_no_role_names_the_empty_setting_not_the_scopes(
    admin_client, mock_op, settings
):
    """A new admin's groups claim held sso-console-admins while CONSOLE_ADMIN_GROUPS was empty,
    and the page blamed the scopes (issue 29)."""
    settings.CONSOLE_AUDITOR_GROUPS = []
    _, page = run_test_login(
        admin_client, mock_op, settings, "nora-sub", "openid email",
        admin_groups=(), nora_groups=("sso-console-admins",),
    )  # fmt: skip
    assert "result-warn" in page
    assert (
        "<code>CONSOLE_ADMIN_GROUPS</code> and <code>CONSOLE_AUDITOR_GROUPS</code> are both empty "
        "and no mapping was set on the" in page
    )
    assert "add <code>sso-console-admins</code> to the admin groups on the" in page
    assert "scopes-hint" not in page  # the groups came: the scopes are not the problem


def test_only_a_test_login_that_maps_to_admin_offers_the_console_sign_in(
    admin_client, mock_op, settings
):
    provider, page = run_test_login(
        admin_client, mock_op, settings, "alice-sub", "openid email groups"
    )
    assert "result-ok" in page and "would sign in as <strong>admin</strong>" in page
    assert "Add <code>groups</code>" not in page
    assert "for the console's own sign-in" in page
    admin_client.post(reverse("provider-console-login", args=[provider.pk]))
    assert Provider.objects.get(pk=provider.pk).console_login
