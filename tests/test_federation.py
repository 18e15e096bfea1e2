"""Federation through Cognito against a moto server: OIDC upstreams from stored providers,
social providers, SAML; enable, disable, change and remove; the page, the command and the API."""

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console import federation, providers
from console.kinds import OIDCProviderForm
from console.models import AuditEvent, FederatedIdentityProvider, Provider
from tests import idp_server
from tests.support import aws, make_pool, make_provider, token_for

pytestmark = pytest.mark.django_db

OKTA_SECRET = "okta-secret-canary-41"
GOOGLE_SECRET = "google-secret-canary-42"
IDP_RESPONSE = "https://diffgram-lab.auth.eu-west-1.amazoncognito.com/oauth2/idpresponse"


@pytest.fixture
def pool(moto):
    """A moto pool with a correct Diffgram app client, and its Cognito provider here."""
    pool_id, app = make_pool(moto)
    return make_provider(pool_id, app)


@pytest.fixture
def okta(idp):
    """A stored, valid generic OIDC provider (Okta-shaped, served on 127.0.0.1)."""
    form = OIDCProviderForm(
        data={
            "name": "Corp Okta", "issuer": idp_server.serve_okta(idp), "client_id": "0oa-cognito",
            "client_secret": OKTA_SECRET, "scopes": "openid email profile",
        }
    )  # fmt: skip
    assert form.is_valid(), form.errors
    return providers.save_provider(form)


def cognito_idp():
    """boto3 on the moto server the console uses (the moto fixture points it there)."""
    return aws(settings.AWS_ENDPOINT_URL)


def described(provider, name):
    return cognito_idp().describe_identity_provider(
        UserPoolId=provider.user_pool_id, ProviderName=name
    )["IdentityProvider"]


def enabled_on_client(provider):
    client = cognito_idp().describe_user_pool_client(
        UserPoolId=provider.user_pool_id, ClientId=provider.client_id
    )["UserPoolClient"]
    return client.get("SupportedIdentityProviders", [])


def listed(provider):
    found = cognito_idp().list_identity_providers(UserPoolId=provider.user_pool_id, MaxResults=60)[
        "Providers"
    ]
    return {p["ProviderName"]: p["ProviderType"] for p in found}


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


class TestOIDCFromAStoredProvider:
    def test_it_is_validated_federated_and_enabled_on_the_app_client(
        self, admin_client, pool, okta
    ):
        response = admin_client.post(
            reverse("federation-new", args=[pool.pk, "oidc"]),
            {"upstream": okta.pk, "authorize_scopes": "", "enabled": "on"},
            follow=True,
        )
        assert b"Federated Corp-Okta into the pool (enabled on the app client)." in (
            response.content
        )
        assert listed(pool) == {"Corp-Okta": "OIDC"}
        idp = described(pool, "Corp-Okta")
        assert idp["ProviderDetails"] == {
            "client_id": "0oa-cognito",
            "client_secret": OKTA_SECRET,
            "authorize_scopes": "openid email profile",
            "oidc_issuer": okta.issuer,
            "attributes_request_method": "GET",
        }
        assert idp["AttributeMapping"] == {"email": "email", "username": "sub"}
        assert enabled_on_client(pool) == ["COGNITO", "Corp-Okta"]
        assert Provider.objects.get(pk=okta.pk).validation_passed  # validated first

        added = events("cognito.identity_provider_added")[0]
        assert added.target_label == pool.name
        assert added.context["identity_provider"] == "Corp-Okta"
        assert added.changes["upstream"] == [None, "Corp Okta"]
        assert added.changes["SupportedIdentityProviders"] == [
            ["COGNITO"], ["COGNITO", "Corp-Okta"],
        ]  # fmt: skip
        assert OKTA_SECRET not in json.dumps(list(AuditEvent.objects.values()), default=str)

        page = admin_client.get(reverse("cognito-inspect", args=[pool.pk])).content.decode()
        assert IDP_RESPONSE in page  # what to allow at Okta
        assert "from <a" in page and "Corp Okta" in page

    def test_an_upstream_that_fails_validation_is_not_federated(self, admin_client, pool, idp):
        issuer = idp_server.serve_okta(
            idp, change=lambda d: d.update(id_token_signing_alg_values_supported=["HS256"])
        )
        form = OIDCProviderForm(
            data={"name": "Broken", "issuer": issuer, "client_id": "c",
                  "client_secret": "s", "scopes": "openid"}
        )  # fmt: skip
        assert form.is_valid()
        broken = providers.save_provider(form)
        response = admin_client.post(
            reverse("federation-new", args=[pool.pk, "oidc"]),
            {"upstream": broken.pk, "name": "Broken", "enabled": "on"},
        )
        assert response.status_code == 200
        assert "Broken failed validation (id_token_alg.rs256)" in response.content.decode()
        assert listed(pool) == {}
        assert not FederatedIdentityProvider.objects.exists()

    def test_a_keycloak_realm_is_federated_with_the_client_given_for_cognito(
        self, pool, keycloak_provider
    ):
        # Diffgram's Keycloak client has no secret here (Diffgram reads it from Keycloak), so
        # Cognito needs a client of its own in the realm.
        with pytest.raises(CommandError, match="holds no secret"):
            call_command(
                "federate", pool.name, "--type", "oidc", "--from", keycloak_provider.name,
                stdout=StringIO(),
            )  # fmt: skip
        out = StringIO()
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KC_COGNITO_SECRET", "kc-cognito-secret")
            call_command(
                "federate", pool.name, "--type", "oidc", "--from", keycloak_provider.name,
                "--client-id", "cognito", "--client-secret-env", "KC_COGNITO_SECRET", stdout=out,
            )  # fmt: skip
        assert "Federated Lab-Keycloak (OIDC)" in out.getvalue()
        details = described(pool, "Lab-Keycloak")["ProviderDetails"]
        assert details["oidc_issuer"] == keycloak_provider.issuer
        assert (details["client_id"], details["client_secret"]) == ("cognito", "kc-cognito-secret")

    def test_a_federated_provider_cannot_be_deleted(self, admin_client, pool, okta):
        admin_client.post(reverse("federation-new", args=[pool.pk, "oidc"]), {"upstream": okta.pk})
        response = admin_client.post(reverse("provider-delete", args=[okta.pk]), follow=True)
        assert b"is federated into Corp Cognito: remove it there first." in response.content
        assert Provider.objects.filter(pk=okta.pk).exists()


class TestSocialProvidersFromTheCommandLine:
    def test_google_is_added_changed_disabled_enabled_and_removed(self, pool, monkeypatch):
        monkeypatch.setenv("GOOGLE_SECRET", GOOGLE_SECRET)
        out = StringIO()
        call_command(
            "federate", pool.name, "--type", "google", "--client-id", "g-1.apps",
            "--client-secret-env", "GOOGLE_SECRET", stdout=out,
        )  # fmt: skip
        assert GOOGLE_SECRET not in out.getvalue()
        assert f"Allow this redirect URI at the provider: {IDP_RESPONSE}" in out.getvalue()
        idp = described(pool, "Google")
        assert idp["ProviderType"] == "Google"
        assert idp["ProviderDetails"] == {
            "client_id": "g-1.apps", "client_secret": GOOGLE_SECRET,
            "authorize_scopes": "openid email profile",
        }  # fmt: skip
        assert enabled_on_client(pool) == ["COGNITO", "Google"]

        # Again, with other scopes only: an update that keeps the stored secret.
        call_command(
            "federate", pool.name, "--type", "google", "--scopes", "openid email",
            stdout=StringIO(),
        )  # fmt: skip
        details = described(pool, "Google")["ProviderDetails"]
        assert (details["authorize_scopes"], details["client_secret"]) == (
            "openid email", GOOGLE_SECRET,
        )  # fmt: skip
        changed = events("cognito.identity_provider_changed")[0]
        assert changed.changes == {"authorize_scopes": ["openid email profile", "openid email"]}

        call_command("federate", pool.name, "--disable", "Google", stdout=StringIO())
        assert enabled_on_client(pool) == ["COGNITO"]
        call_command("federate", pool.name, "--enable", "Google", stdout=StringIO())
        assert enabled_on_client(pool) == ["COGNITO", "Google"]
        call_command("federate", pool.name, "--remove", "Google", stdout=StringIO())
        assert listed(pool) == {}
        assert enabled_on_client(pool) == ["COGNITO"]
        assert not FederatedIdentityProvider.objects.exists()
        cognito_events = AuditEvent.objects.filter(action__startswith="cognito.").order_by("id")
        assert [e.action.split(".")[-1] for e in cognito_events] == [
            "identity_provider_added", "identity_provider_changed",
            "identity_provider_disabled", "identity_provider_enabled",
            "identity_provider_removed",
        ]  # fmt: skip
        removed = events("cognito.identity_provider_removed")[0]
        assert removed.changes["client_secret"] == ["[set]", None]
        assert GOOGLE_SECRET not in json.dumps(list(AuditEvent.objects.values()), default=str)

    @pytest.mark.parametrize(
        ("short", "cognito_type", "extra", "details"),
        [
            ("facebook", "Facebook", ["--api-version", "v17.0"],
             {"authorize_scopes": "public_profile,email", "api_version": "v17.0"}),
            ("amazon", "LoginWithAmazon", [], {"authorize_scopes": "profile"}),
        ],
    )  # fmt: skip
    def test_each_social_type_sends_what_cognito_requires(
        self, pool, monkeypatch, short, cognito_type, extra, details
    ):
        monkeypatch.setenv("SOCIAL_SECRET", "social-secret")
        call_command(
            "federate", pool.name, "--type", short, "--client-id", "app-1",
            "--client-secret-env", "SOCIAL_SECRET", *extra, stdout=StringIO(),
        )  # fmt: skip
        idp = described(pool, cognito_type)
        assert idp["ProviderDetails"] == {
            "client_id": "app-1", "client_secret": "social-secret", **details,
        }  # fmt: skip

    def test_sign_in_with_apple_takes_the_private_key_from_its_file(self, pool, tmp_path):
        key = tmp_path / "AuthKey.p8"
        key.write_text("-----BEGIN PRIVATE KEY-----\nMIGTAgEAapple\n-----END PRIVATE KEY-----\n")
        call_command(
            "federate", pool.name, "--type", "apple", "--client-id", "com.example.diffgram",
            "--team-id", "TEAM123456", "--key-id", "KEY1234567",
            "--private-key-file", str(key), stdout=StringIO(),
        )  # fmt: skip
        details = described(pool, "SignInWithApple")["ProviderDetails"]
        assert details["private_key"] == key.read_text()
        assert (details["team_id"], details["key_id"]) == ("TEAM123456", "KEY1234567")
        record = FederatedIdentityProvider.objects.get()
        assert "MIGTAgEAapple" not in record.private_key_encrypted  # encrypted at rest

    def test_missing_or_wrong_input_changes_nothing(self, pool):
        with pytest.raises(CommandError) as caught:
            call_command("federate", pool.name, "--type", "google", stdout=StringIO())
        assert caught.value.returncode == 2
        assert "client_id: Google needs the client id" in str(caught.value)
        assert "client_secret: Google needs it." in str(caught.value)
        with pytest.raises(CommandError, match="no identity provider Nope"):
            call_command("federate", pool.name, "--remove", "Nope", stdout=StringIO())
        assert listed(pool) == {}


class TestSAMLOnThePage:
    def test_saml_is_added_changed_and_removed(self, admin_client, pool):
        response = admin_client.post(
            reverse("federation-new", args=[pool.pk, "saml"]),
            {
                "name": "EntraID",
                "metadata_url": "https://login.microsoftonline.test/tenant/federationmetadata.xml",
                "email_attribute": "email",
                "enabled": "on",
            },
            follow=True,
        )
        assert b"Federated EntraID into the pool (enabled on the app client)." in response.content
        idp = described(pool, "EntraID")
        assert idp["ProviderType"] == "SAML"
        assert idp["AttributeMapping"] == {"email": "email"}
        assert enabled_on_client(pool) == ["COGNITO", "EntraID"]

        edit = reverse("federation-edit", args=[pool.pk, "EntraID"])
        page = admin_client.get(edit)
        assert page.context["form"].fields["enabled"].initial is True  # read from AWS
        admin_client.post(
            edit,
            {
                "metadata_url": "https://login.microsoftonline.test/tenant/federationmetadata.xml",
                "email_attribute": "mail",
            },
        )
        assert described(pool, "EntraID")["AttributeMapping"] == {"email": "mail"}
        assert enabled_on_client(pool) == ["COGNITO"]  # "enabled" left unticked: disabled

        assert admin_client.get(reverse("federation-remove", args=[pool.pk, "EntraID"]))
        admin_client.post(reverse("federation-remove", args=[pool.pk, "EntraID"]))
        assert listed(pool) == {}

    def test_an_identity_provider_created_outside_the_console_is_listed_and_can_be_removed(
        self, admin_client, pool, moto
    ):
        aws(moto).create_identity_provider(
            UserPoolId=pool.user_pool_id, ProviderName="Legacy", ProviderType="SAML",
            ProviderDetails={"MetadataURL": "https://legacy.example.test/md.xml"},
        )  # fmt: skip
        page = admin_client.get(reverse("cognito-inspect", args=[pool.pk])).content.decode()
        assert "created outside the console" in page
        admin_client.post(reverse("federation-toggle", args=[pool.pk, "Legacy"]), {"enabled": "1"})
        assert enabled_on_client(pool) == ["COGNITO", "Legacy"]
        admin_client.post(reverse("federation-remove", args=[pool.pk, "Legacy"]))
        assert listed(pool) == {} and enabled_on_client(pool) == ["COGNITO"]


class TestTheAPI:
    def test_federation_through_the_json_api(self, client, admin_user, pool, okta):
        token = token_for(admin_user)

        def api(method, path, body=None):
            return client.generic(
                method, f"/api/v1/providers/{pool.pk}/federation{path}",
                json.dumps(body) if body is not None else "",
                content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}",
            )  # fmt: skip

        created = api(
            "POST", "", {"type": "google", "client_id": "g", "client_secret": GOOGLE_SECRET}
        )
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["redirect_uri"] == IDP_RESPONSE
        google = body["identity_providers"][0]
        assert (google["name"], google["type"], google["enabled"]) == ("Google", "google", True)
        assert google["client_secret"] == "********"
        assert GOOGLE_SECRET not in created.content.decode()
        client.force_login(admin_user)
        edit = client.get(reverse("federation-edit", args=[pool.pk, "Google"])).content.decode()
        assert "Currently set. Leave blank to keep it." in edit
        inspect = client.get(reverse("cognito-inspect", args=[pool.pk])).content.decode()
        assert GOOGLE_SECRET not in edit + inspect

        assert api("POST", "", {"type": "oidc", "upstream": okta.pk}).status_code == 201
        assert set(listed(pool)) == {"Google", "Corp-Okta"}
        off = api("PATCH", "/Google", {"enabled": False})
        assert off.status_code == 200 and enabled_on_client(pool) == ["COGNITO", "Corp-Okta"]
        changed = api("PATCH", "/Corp-Okta", {"authorize_scopes": "openid email"})
        assert changed.status_code == 200, changed.content
        assert described(pool, "Corp-Okta")["ProviderDetails"]["authorize_scopes"] == (
            "openid email"
        )
        assert api("PATCH", "/Corp-Okta", {"nope": 1}).json()["fields"] == {
            "nope": ["Unknown field."]
        }
        assert api("POST", "", {"type": "ldap"}).status_code == 400
        assert api("DELETE", "/Google").status_code == 200
        assert set(listed(pool)) == {"Corp-Okta"}

    def test_aws_errors_are_502_with_the_reason(self, client, admin_user, moto):
        missing = make_provider("eu-west-1_Missing9", {"ClientId": "nope"})
        response = client.get(
            f"/api/v1/providers/{missing.pk}/federation",
            HTTP_AUTHORIZATION=f"Bearer {token_for(admin_user)}",
        )
        assert response.status_code == 502
        assert "AWS has no" in response.json()["error"]


def test_the_redirect_uri_follows_the_type():
    domain = "https://d.auth.eu-west-1.amazoncognito.com"
    assert federation.redirect_uri(domain) == f"{domain}/oauth2/idpresponse"
    assert federation.redirect_uri(domain, "SAML") == f"{domain}/saml2/idpresponse"


def test_a_keycloak_upstream_needs_a_client_for_cognito(pool, keycloak_provider):
    from console.federation_forms import FederationForm

    form = FederationForm(data={"upstream": keycloak_provider.pk}, idp_type="OIDC", cognito=pool)
    assert not form.is_valid()
    error = " ".join(form.errors["client_id"])
    assert "holds no secret" in error
    # Which Keycloak client: the one made for Cognito, not the one Diffgram makes itself.
    assert "a client you create for Cognito" in error
    assert "redirect URI https://<pool domain>/oauth2/idpresponse" in error
    assert "not Diffgram's client diffgram-{instance}" in error


def test_the_keycloak_form_says_which_client_is_diffgrams_and_which_cognitos(admin_client):
    from django.urls import reverse

    page = admin_client.get(reverse("provider-create", args=["keycloak"])).content.decode()
    assert "Do not create Diffgram's client yourself" in page
    assert "Cognito's client (Keycloak federated into Cognito)" in page


def test_adding_saml_records_the_app_client_change_as_a_diff(moto, admin_client):
    from tests.support import make_pool, make_provider

    provider = make_provider(*make_pool(moto))
    admin_client.post(
        reverse("federation-new", args=[provider.pk, "saml"]),
        {"name": "EntraID", "metadata_url": "https://login.example.invalid/md.xml",
         "email_attribute": "email", "enabled": "on"},
    )  # fmt: skip
    event = AuditEvent.objects.get(action="cognito.identity_provider_added")
    assert event.changes["SupportedIdentityProviders"] == [["COGNITO"], ["COGNITO", "EntraID"]]
