"""Regression tests for the second adversarial review (issue 15): each reproduces an attack that
worked before its fix. The numbers are the review's."""

import json
import re
import time
import urllib.parse
from datetime import timedelta
from io import StringIO

import pytest
import yaml
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console import config_io
from console.models import ApiToken, AuditEvent, ExternalIdentity, Provider
from console.views import oidc as oidc_views
from tests import idp_server
from tests.conftest import set_groups
from tests.test_automation_api import token_for
from tests.test_console_login import sso_login

pytestmark = pytest.mark.django_db


# --- 1. the web import must not read the server's environment --------------------------------


def oidc_document(issuer, secret_reference):
    return yaml.safe_dump(
        {
            "providers": [
                {
                    "name": "Probe",
                    "kind": "oidc",
                    "issuer": issuer,
                    "client_id": "probe",
                    "client_secret": secret_reference,
                }
            ]
        }
    )


def upload(client, text):
    file = StringIO(text)
    file.name = "config.yaml"
    return client.post(reverse("config-import"), {"file": file})


class TestWebImportDoesNotReadTheEnvironment:
    def test_env_references_become_secrets_to_type_never_server_values(
        self, admin_client, idp, monkeypatch
    ):
        monkeypatch.setenv("CONSOLE_ONLY_SECRET", "server-side-value")
        issuer = idp_server.serve_okta(idp)
        plan = upload(admin_client, oidc_document(issuer, {"env": "CONSOLE_ONLY_SECRET"}))
        assert plan.status_code == 200
        assert plan.context["requested"][0]["secret"] == "client_secret"
        assert "server-side-value" not in plan.content.decode()

        refused = admin_client.post(reverse("config-import"), {"confirm": "1"})
        assert refused.status_code == 400
        assert "Probe: type its client_secret" in refused.content.decode()
        assert not Provider.objects.exists()

        done = admin_client.post(
            reverse("config-import"), {"confirm": "1", "secret_0": "typed-by-the-admin"}
        )
        assert done.status_code == 200
        assert Provider.objects.get().secret("client_secret") == "typed-by-the-admin"

    def test_the_answer_does_not_tell_which_variables_exist(self, admin_client, idp):
        issuer = idp_server.serve_okta(idp)
        answers = []
        for name in ("SECRET_KEY", "DATABASE_URL", "SURELY_NOT_SET_ANYWHERE_42"):
            page = upload(admin_client, oidc_document(issuer, {"env": name}))
            text = re.sub(r'name="csrfmiddlewaretoken" value="\w+"', "", page.content.decode())
            answers.append(text.replace(name, "NAME"))
        assert answers[0] == answers[1] == answers[2]
        assert "is not set" not in answers[2]

    def test_the_command_line_import_still_reads_its_environment(self, idp, tmp_path, monkeypatch):
        from django.core.management import call_command

        monkeypatch.setenv("PROBE_SECRET", "from-the-operators-shell")
        path = tmp_path / "config.yaml"
        path.write_text(oidc_document(idp_server.serve_okta(idp), {"env": "PROBE_SECRET"}))
        call_command("import_config", str(path), stdout=StringIO())
        assert Provider.objects.get().secret("client_secret") == "from-the-operators-shell"


# --- 11. YAML that expands without bound ----------------------------------------------------------

LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 9)}]\n" for n in range(6)
)


def test_nested_aliases_are_refused_before_anything_expands_them(admin_client):
    response = upload(admin_client, LAUGHS)
    assert response.status_code == 400
    assert response.context["problems"] == [
        "line 1: YAML anchors and aliases (&, *) are not accepted in a config file"
    ]
    with pytest.raises(config_io.ImportError_):
        config_io.parse(LAUGHS)  # the command line's path too


def test_a_file_over_one_mebibyte_is_refused(admin_client):
    response = upload(admin_client, "# " + "x" * (1024 * 1024))
    assert "larger than 1 MiB" in response.content.decode()
    with pytest.raises(config_io.ImportError_, match="larger than 1024 KiB"):
        config_io.parse("# " + "x" * (1024 * 1024))


# --- 2. nobody can write to the history through the callback -----------------------------------


def callback_error(client, state=None, description="d" * 500):
    query = {"error": "access_denied", "error_description": description}
    if state:
        query["state"] = state
    return client.get(reverse("oidc_authentication_callback"), query, follow=True)


def pending_state(client):
    start = client.get(reverse("oidc_authentication_init"))
    return urllib.parse.parse_qs(urllib.parse.urlsplit(start["Location"]).query)["state"][0]


def failures():
    return list(AuditEvent.objects.filter(action="login.failed").order_by("id"))


class TestForgedIdentityProviderErrors:
    def test_an_error_nobody_asked_for_writes_nothing_and_shows_nothing(self, client):
        for _ in range(30):
            page = callback_error(client, state="made-up", description="FORGED " * 70)
        assert failures() == []
        assert b"FORGED" not in page.content
        assert b"start it again" in page.content

    def test_real_failures_are_capped_and_counted_per_address(self, client, sso, monkeypatch):
        monkeypatch.setattr(oidc_views, "FAILED_EVENTS_PER_IP", "2/s")
        for _ in range(4):
            callback_error(client, pending_state(client))
        recorded = failures()
        assert len(recorded) == 2  # the next two were left out...
        assert len(recorded[0].context["reason"]) < 300  # the IdP's text, capped
        time.sleep(1.1)  # ...until the window has passed,
        callback_error(client, pending_state(client))
        assert failures()[-1].context["suppressed_before"] == 2  # ...and are then counted


# --- 3. an SSO user's API token must not outlive the account at the IdP --------------------------


def api_patch(token, provider, body):
    return Client().patch(
        f"/api/v1/providers/{provider.pk}", json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


class TestTokensOfSingleSignOnUsers:
    def signed_in_admin_with_a_token(self, client):
        sso_login(client, "alice-sub")
        identity = ExternalIdentity.objects.get(subject="alice-sub")
        return identity, token_for(identity.user)

    def test_a_token_stops_acting_when_the_idp_has_not_confirmed_the_account_lately(
        self, client, sso
    ):
        identity, token = self.signed_in_admin_with_a_token(client)
        assert api_patch(token, sso, {"scopes": "openid email"}).status_code == 200
        # Disabled at the IdP: no sign-in and no silent re-check confirms the account any more.
        ExternalIdentity.objects.filter(pk=identity.pk).update(
            last_login_at=timezone.now() - timedelta(hours=25)
        )
        refused = api_patch(token, sso, {"scopes": "openid email profile"})
        assert refused.status_code == 403
        assert "tokens of single sign-on users act only within 24 h" in refused.json()["error"]
        sso_login(client, "alice-sub")  # confirmed again
        assert api_patch(token, sso, {"scopes": "openid"}).status_code == 200

    def test_a_token_is_refused_after_a_sync_that_removed_the_role(self, client, sso, mock_op):
        _, token = self.signed_in_admin_with_a_token(client)
        set_groups(mock_op, "alice-sub", ["engineering"])
        sso_login(client, "alice-sub")  # the re-check finds no console group any more
        refused = api_patch(token, sso, {"scopes": "openid"})
        assert refused.status_code == 403 and "no role" in refused.json()["error"]

    def test_admins_list_and_revoke_anyones_tokens_and_auditors_cannot(
        self, admin_client, auditor_client, auditor_user, admin_user
    ):
        auditor_token = token_for(auditor_user)
        page = admin_client.get(reverse("api-tokens"))
        [listed] = page.context["others"]
        assert listed.user == auditor_user
        own = ApiToken.objects.create(
            user=admin_user, name="admin's", token_hash="x" * 64,
            expires_at=timezone.now() + timedelta(days=1),
        )  # fmt: skip
        assert auditor_client.post(reverse("api-token-revoke", args=[own.pk])).status_code == 404
        admin_client.post(reverse("api-token-revoke", args=[listed.pk]))
        assert ApiToken.find_active(auditor_token) is None
        event = AuditEvent.objects.get(action="api_token.revoked")
        assert (event.actor_label, event.target_label) == ("alice-admin", "oscar-auditor")


# --- 4. a stored secret must not follow an edited issuer -----------------------------------------


def edit_data(provider, **changes):
    from tests.test_providers import edit_data as current_values

    return current_values(provider, **changes)


class TestASecretDoesNotFollowTheProvider:
    def test_changing_the_issuer_requires_the_secret_again(self, admin_client, sso, idp):
        elsewhere = idp_server.serve_okta(idp)
        url = reverse("provider-edit", args=[sso.pk])
        refused = admin_client.post(url, edit_data(sso, issuer=elsewhere))
        assert refused.status_code == 200
        assert "You changed issuer: the stored secret is not sent to a new place." in " ".join(
            refused.context["form"].errors["client_secret"]
        )
        stored = Provider.objects.get(pk=sso.pk)
        assert stored.issuer != elsewhere and stored.secret("client_secret") == "console-secret"

        # With the secret typed again it is saved, and the console's own sign-in waits for a
        # new test login against the new issuer.
        done = admin_client.post(
            url, edit_data(sso, issuer=elsewhere, client_secret="new-secret"), follow=True
        )
        assert b"no longer signs admins in to the console" in done.content
        stored.refresh_from_db()
        assert (stored.issuer, stored.console_login) == (elsewhere, False)
        event = AuditEvent.objects.filter(action="provider.changed").latest("id")
        assert event.changes["console_login"] == [True, False]

    def test_keycloak_passwords_do_not_follow_a_new_server(self, admin_client, keycloak_provider):
        url = reverse("provider-edit", args=[keycloak_provider.pk])
        response = admin_client.post(
            url, edit_data(keycloak_provider, keycloak_server_url="https://other.example.test/")
        )
        errors = response.context["form"].errors
        assert set(errors) == {"keycloak_master_password", "keycloak_diffgram_password"}
