"""Every page needs a signed-in user with a role; auditors never write."""

import pytest
from django.urls import NoReverseMatch, reverse

from tests.urls_helper import all_named_urls

pytestmark = pytest.mark.django_db

# Views anyone may reach without signing in. Everything else must redirect to the login page.
PUBLIC = {
    "login",
    "healthz",
    "oidc_authentication_init",
    "oidc_authentication_callback",
    "api-v1:openapi-json",
    "api-v1:api-root",  # django-ninja's root: a JSON 404 that names the document
    "agent-download",  # the agent's code, fetched by curl on a Diffgram host
    "favicon",
    "metrics",  # its own bearer token, METRICS_TOKEN (tests/test_operations.py)
}
# Machine endpoints authenticated by a token instead of a session (401 JSON without one).
INSTANCE_TOKEN = {"api-pull-config", "api-applied"} | {
    name
    for name, _, _ in all_named_urls()
    if name.startswith("api-v1:") and name not in ("api-v1:openapi-json", "api-v1:api-root")
}
PUBLIC_MACHINE = {"api-v1:openapi-json", "api-v1:api-root", "agent-download", "favicon", "metrics"}
# Views any role may POST to: they change only the user's own API tokens.
OWN_ACCOUNT = {"api-tokens", "api-token-revoke", "choose-password"}
# Views a signed-in user without a role may use.
NO_ROLE_ALLOWED = {"logout"}
# Sample arguments for patterns with parameters; a new parameterised URL must be added here.
SAMPLE_KWARGS = {
    "history-event": {"event_id": 1},
    "history-export": {"export_format": "csv"},
    "provider-create": {"kind": "oidc"},
    "provider-detail": {"provider_id": 1},
    "provider-edit": {"provider_id": 1},
    "provider-validate": {"provider_id": 1},
    "provider-toggle": {"provider_id": 1},
    "provider-delete": {"provider_id": 1},
    "provider-publish": {"provider_id": 1},
    "version-diff": {"provider_id": 1},
    "version-detail": {"provider_id": 1, "number": 1},
    "rollout-continue": {"provider_id": 1, "number": 1},
    "rollout-halt": {"provider_id": 1, "number": 1},
    "rollout-override": {"provider_id": 1, "number": 1},
    "version-rollback": {"provider_id": 1, "number": 1},
    "instance-detail": {"instance_id": 1},
    "instance-edit": {"instance_id": 1},
    "instance-delete": {"instance_id": 1},
    "instance-push": {"instance_id": 1},
    "instance-verify": {"instance_id": 1},
    "instance-rotate-token": {"instance_id": 1},
    "instance-credentials": {"instance_id": 1},
    "instance-rotate-signing-secret": {"instance_id": 1},
    "provider-test-login": {"provider_id": 1},
    "provider-test-login-result": {"provider_id": 1},
    "provider-signin-account": {"provider_id": 1},
    "provider-signin-account-rotate": {"provider_id": 1},
    "provider-signin-account-remove": {"provider_id": 1},
    "cognito-inspect": {"provider_id": 1},
    "cognito-fix": {"provider_id": 1},
    "federation-new": {"provider_id": 1, "idp_type": "google"},
    "federation-edit": {"provider_id": 1, "name": "Google"},
    "federation-toggle": {"provider_id": 1, "name": "Google"},
    "federation-remove": {"provider_id": 1, "name": "Google"},
    "api-v1:federation": {"provider_id": 1},
    "api-v1:federation-add": {"provider_id": 1},
    "api-v1:federation-change": {"provider_id": 1, "name": "Google"},
    "api-v1:federation-remove": {"provider_id": 1, "name": "Google"},
    "cognito-use-domain": {"provider_id": 1},
    "provider-console-login": {"provider_id": 1},
    "api-token-revoke": {"token_id": 1},
    "alert-destination-edit": {"destination_id": 1},
    "alert-destination-delete": {"destination_id": 1},
    "alert-destination-test": {"destination_id": 1},
    "user-reset-password": {"user_id": 1},
    "user-set-role": {"user_id": 1},
    "user-set-active": {"user_id": 1},
    "user-revoke-tokens": {"user_id": 1},
    "api-v1:provider": {"provider_id": 1},
    "api-v1:provider-change": {"provider_id": 1},
    "api-v1:provider-validate": {"provider_id": 1},
    "api-v1:provider-publish": {"provider_id": 1},
    "api-v1:versions": {"provider_id": 1},
    "api-v1:version": {"provider_id": 1, "number": 1},
    "api-v1:diff": {"provider_id": 1},
    "api-v1:instance": {"instance_id": 1},
    "api-v1:pull-config": {"instance_id": 1},
    "api-v1:applied": {"instance_id": 1},
    "api-pull-config": {"instance_id": 1},
    "api-applied": {"instance_id": 1},
}


def url_for(name):
    try:
        return reverse(name, kwargs=SAMPLE_KWARGS.get(name))
    except NoReverseMatch:
        pytest.fail(f"URL {name!r} takes arguments: add sample values to SAMPLE_KWARGS")


def protected_urls():
    return [name for name, _, _ in all_named_urls() if name not in PUBLIC | INSTANCE_TOKEN]


def test_the_public_and_machine_sets_name_real_urls_that_need_no_sign_in(client):
    """A URL is protected unless one of the sets above names it: a stale name there (a URL
    renamed) would hide nothing, so each must exist, and the machine ones must answer
    without sending anyone to the login page."""
    names = {name for name, _, _ in all_named_urls()}
    assert names >= PUBLIC | INSTANCE_TOKEN
    for name in sorted(PUBLIC_MACHINE):
        response = client.get(url_for(name))
        assert not response.get("Location", "").startswith(reverse("login")), name


@pytest.mark.parametrize("name", sorted(INSTANCE_TOKEN))
def test_machine_endpoints_answer_401_json_without_a_token(client, name):
    response = client.get(url_for(name))
    if response.status_code == 405:  # a path only written to: with the method it takes
        response = client.generic(response["Allow"].split(",")[0].strip(), url_for(name))
    assert response.status_code == 401
    assert "token" in response.json()["error"]


def test_a_user_can_revoke_only_their_own_tokens(auditor_client, admin_user):
    from datetime import timedelta

    from django.utils import timezone

    from console.models import ApiToken

    token = ApiToken(user=admin_user, name="theirs", expires_at=timezone.now() + timedelta(1))
    token.new_token()
    token.save()
    response = auditor_client.post(reverse("api-token-revoke", args=[token.pk]))
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.parametrize("name", protected_urls())
def test_it_sends_anonymous_users_to_the_login_page(client, name):
    url = url_for(name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("name", sorted(set(protected_urls()) - NO_ROLE_ALLOWED))
def test_it_shows_no_access_to_users_without_a_role(client, norole_user, name):
    client.force_login(norole_user)
    response = client.get(url_for(name), follow=True)
    assert response.status_code == 403
    assert b"No access" in response.content
    assert b"no role in the console" in response.content


@pytest.mark.parametrize("name", sorted(set(protected_urls()) - {"logout"} - OWN_ACCOUNT))
def test_it_refuses_every_write_by_an_auditor(auditor_client, name):
    response = auditor_client.post(url_for(name), {"anything": "x"})
    assert response.status_code == 403
    assert b"read-only" in response.content


@pytest.mark.parametrize("name", ["providers", "instances", "history"])
def test_it_shows_pages_to_admins_and_auditors(client, admin_user, auditor_user, name):
    for user, role in ((admin_user, "admin"), (auditor_user, "auditor")):
        client.force_login(user)
        response = client.get(reverse(name))
        assert response.status_code == 200
        assert f'class="badge badge-{role}"'.encode() in response.content


def test_it_logs_in_with_the_local_form_and_lands_on_providers(client, admin_user):
    response = client.post(
        reverse("login"),
        {"username": admin_user.username, "password": "correct horse battery staple 42"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("providers")
    assert b"Identity providers" in response.content


def test_it_rejects_a_wrong_password_with_a_message(client, admin_user):
    response = client.post(reverse("login"), {"username": admin_user.username, "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_it_lets_an_auditor_and_a_user_without_role_sign_out(client, auditor_user, norole_user):
    for user in (auditor_user, norole_user):
        client.force_login(user)
        response = client.post(reverse("logout"))
        assert response.status_code == 302
        assert "_auth_user_id" not in client.session


def test_it_refuses_a_post_without_csrf_token(admin_user):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)
    response = csrf_client.post(reverse("logout"))
    assert response.status_code == 403


def test_it_sends_security_headers(admin_client):
    response = admin_client.get(reverse("providers"))
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_it_loads_htmx_from_the_console_itself(admin_client):
    response = admin_client.get(reverse("providers"))
    assert b'src="/static/django_htmx/htmx-2.min.js"' in response.content
    assert b"<script>" not in response.content  # no inline scripts
