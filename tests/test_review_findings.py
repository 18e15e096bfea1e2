"""Regression tests for the second adversarial review (issue 15): each reproduces an attack that
worked before its fix. The numbers are the review's."""

import json
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from io import StringIO

import pytest
import yaml
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console import config_io, instances, outbound
from console.instance_forms import InstanceForm
from console.models import (
    ApiToken,
    AuditEvent,
    ExternalIdentity,
    Provider,
)
from tests import idp_server
from tests.support import (
    PASSWORD,
    set_groups,
    sso_login,
    token_for,
)

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
    with pytest.raises(config_io.ConfigImportError):
        config_io.parse(LAUGHS)  # the command line's path too


def test_a_file_over_one_mebibyte_is_refused(admin_client):
    response = upload(admin_client, "# " + "x" * (1024 * 1024))
    assert "larger than 1 MiB" in response.content.decode()
    with pytest.raises(config_io.ConfigImportError, match="larger than 1024 KiB"):
        config_io.parse("# " + "x" * (1024 * 1024))


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


# --- 5-8. the way pushes reach the agent -------------------------------------------------------


class TestWebhookURLs:
    def form(self, provider, url, allow_http=False):
        return InstanceForm(
            data={
                "name": "x", "url_base": "https://x.example.test/", "shape": "compose",
                "rollout_group": "default", "provider": provider.pk, "push_target": "webhook",
                "webhook_url": url, **({"webhook_allow_http": "on"} if allow_http else {}),
            }
        )  # fmt: skip

    def test_plain_http_off_this_host_needs_the_explicit_choice(self, keycloak_provider):
        refused = self.form(keycloak_provider, "http://agent.example.test:8765/")
        assert "Pushes carry secrets: use https://" in " ".join(refused.errors["webhook_url"])
        assert self.form(keycloak_provider, "http://agent.example.test:8765/", True).is_valid()
        assert self.form(keycloak_provider, "https://agent.example.test:8765/").is_valid()
        assert self.form(keycloak_provider, "http://127.0.0.1:8765/").is_valid()

    def test_the_metadata_address_is_refused_at_registration(self, keycloak_provider):
        for url in ("https://169.254.169.254/", "http://[fe80::1]/"):
            errors = self.form(keycloak_provider, url, allow_http=True).errors["webhook_url"]
            assert "never allowed" in " ".join(errors)

    def test_a_plain_http_agent_is_marked_on_the_fleet_view(self, admin_client, keycloak_provider):
        form = self.form(keycloak_provider, "http://agent.example.test:8765/", allow_http=True)
        assert form.is_valid()
        instances.create_instance(form)
        page = admin_client.get(reverse("instances")).content.decode()
        assert "plain HTTP to the agent" in page


@pytest.mark.parametrize(
    "address",
    [
        "2002:a00:1::1",  # 6to4 carrying 10.0.0.1
        "2002:7f00:1::1",  # 6to4 carrying 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 carrying 10.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 carrying 169.254.169.254
    ],
)
def test_ipv6_addresses_carrying_private_ipv4_are_not_public(address, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = False
    assert outbound.address_refusal(address) is not None


# --- 9, 15. names: no SSO account takes a local one, and none look alike in the history ----------


class TestNames:
    def test_an_sso_user_named_breakglass_cannot_take_over_the_break_glass_account(
        self, client, sso, mock_op
    ):
        set_claims(mock_op, "alice-sub", preferred_username="breakglass")
        sso_login(client, "alice-sub")
        sso_user = ExternalIdentity.objects.get(subject="alice-sub").user
        assert sso_user.username == "breakglass~127.0.0.1"
        out = StringIO()
        call_command("breakglass", stdout=out)  # creates its own, separate account
        local = get_user_model().objects.get(username="breakglass")
        assert local != sso_user and not local.external_identities.exists()
        with pytest.raises(CommandError, match="Enter a valid username"):  # "~" is SSO's
            call_command("breakglass", "--username", sso_user.username, stdout=StringIO())
        # An SSO account with a plain name (made before SSO names had their "~") is not adopted.
        legacy = get_user_model().objects.create_user("legacy")
        legacy.external_identities.create(issuer=mock_op, subject="legacy-sub")
        with pytest.raises(CommandError, match="is a single-sign-on account"):
            call_command("breakglass", "--username", "legacy", stdout=StringIO())

    @pytest.mark.parametrize(
        ("preferred", "expected"),
        [
            ("redadmin ", "redadmin@example.test~127.0.0.1"),  # trailing space: not fit
            ("red\u200badmin", "redadmin@example.test~127.0.0.1"),  # zero-width space
            ("ｒｅｄadmin", "redadmin~127.0.0.1"),  # full-width letters: NFKC
        ],
    )
    def test_look_alike_names_are_normalised_or_not_used(
        self, client, sso, mock_op, preferred, expected
    ):
        set_claims(
            mock_op, "alice-sub", preferred_username=preferred, email="redadmin@example.test"
        )
        sso_login(client, "alice-sub")
        assert ExternalIdentity.objects.get(subject="alice-sub").user.username == expected

    def test_the_history_shows_which_idp_vouches_for_an_sso_actor(self, client, sso, mock_op):
        sso_login(client, "alice-sub")
        page = client.get(reverse("history")).content.decode()
        assert f"alice-sub at {mock_op}" in page

    def test_a_break_glass_name_must_be_plain(self):
        with pytest.raises(CommandError, match="--username"):
            call_command("breakglass", "--username", "rеdadmin", stdout=StringIO())  # Cyrillic е


# --- 12, 13. broken JWKS entries and undecryptable secrets fail cleanly --------------------------


def test_a_jwks_entry_that_is_not_an_object_fails_validation_and_sign_in_refuses_cleanly():
    from console import auth, discovery
    from tests.test_id_tokens import config, token

    status, message = discovery.jwks_verdict({"keys": [public_jwks_key(), "not-a-key"]})
    assert status == "fail" and "key 2 is not a JSON object" in message
    broken = config(jwks={"keys": ["not-a-key", public_jwks_key()]})
    assert auth.verify_id_token(broken, token(), "n-1")["sub"] == "alice"  # the good key works
    with pytest.raises(auth.LoginError, match="did not verify"):
        auth.verify_id_token(config(jwks={"keys": "nonsense"}), token(), "n-1")


def test_no_secret_in_the_repr_of_what_holds_one():
    from console import diffgram
    from tests.test_id_tokens import config

    assert "s3cret-canary" not in repr(config(client_secret="s3cret-canary"))
    provider_config = diffgram.ProviderConfig(
        client_id="c", client_secret="s3cret-canary",
        keycloak_master_password="s3cret-canary", keycloak_diffgram_password="s3cret-canary",
    )  # fmt: skip
    assert "s3cret-canary" not in repr(provider_config)


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


# --- 16. production never starts checks clean with the development keys --------------------------


def test_check_deploy_refuses_the_development_keys(settings):
    from console import checks

    settings.FIELD_ENCRYPTION_KEYS = [settings.DEVELOPMENT_FIELD_ENCRYPTION_KEY]
    settings.SECRET_KEY = settings.DEVELOPMENT_SECRET_KEY
    assert {e.id for e in checks.check_development_keys(None)} == {"console.E002", "console.E003"}
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.SECRET_KEY = "x" * 10
    assert {e.id for e in checks.check_development_keys(None)} == {"console.E003"}
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    assert checks.check_development_keys(None) == []


# --- 17. an ID token meant for others -------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"aud": ["console", "another-app"]}, "also meant for other clients (another-app)"),
        ({"azp": "another-app"}, "issued to another client (azp)"),
    ],
)
def test_an_id_token_for_other_clients_is_refused(claims, problem):
    from console import auth
    from tests.test_id_tokens import config, token

    with pytest.raises(auth.LoginError, match=re.escape(problem)):
        auth.verify_id_token(config(), token(**claims), "n-1")
    assert auth.verify_id_token(config(), token(azp="console"), "n-1")["sub"] == "alice"


def public_jwks_key():
    from tests.idp_server import public_jwks

    return public_jwks("k1")["keys"][0]


def set_claims(op, sub, **claims):
    """The mock OP's admin API: the claims the user has at the IdP."""
    request = urllib.request.Request(
        f"{op}/users/{sub}", data=json.dumps({"groups": ["sso-admins"], **claims}).encode(),
        method="PUT", headers={"Content-Type": "application/json"},
    )  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()
