"""Diffgram's environment variables and registration URLs, derived exactly (docs/DIFFGRAM.md)."""

from urllib.parse import parse_qs, urlsplit

from console import diffgram
from console.diffgram import ProviderConfig

HOSTED_UI = "https://diffgram.auth.eu-west-1.amazoncognito.com"
COGNITO_DISCOVERY = {
    "authorization_endpoint": f"{HOSTED_UI}/oauth2/authorize",
    "token_endpoint": f"{HOSTED_UI}/oauth2/token",
    "userinfo_endpoint": f"{HOSTED_UI}/oauth2/userInfo",
}


def test_cognito_settings_take_the_host_from_the_token_endpoint():
    config = ProviderConfig(
        kind="cognito",
        client_id="4dn1c",
        client_secret="s3cret",
        scopes="openid email profile",
        discovery=COGNITO_DISCOVERY,
    )
    variables = diffgram.settings_for(config, "https://diffgram.example.test/")
    login_url = variables.pop("COGNITO_LOGIN_URL")
    assert variables == {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": "cognito",
        "OAUTH2_PROVIDER_HOST": f"{HOSTED_UI}/",
        "OAUTH2_PROVIDER_CLIENT_ID": "4dn1c",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "s3cret",
    }
    parts = urlsplit(login_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{HOSTED_UI}/oauth2/authorize"
    assert parse_qs(parts.query) == {
        "client_id": ["4dn1c"],
        "response_type": ["code"],
        "scope": ["openid email profile"],
        "redirect_uri": ["https://diffgram.example.test/user/oauth2-login/"],
    }


def test_cognito_without_discovery_uses_the_entered_domain_and_omits_a_missing_secret():
    config = ProviderConfig(
        kind="cognito", client_id="4dn1c", cognito_domain="https://auth.example.test"
    )
    variables = diffgram.settings_for(config, "https://diffgram.example.test")
    assert variables["OAUTH2_PROVIDER_HOST"] == "https://auth.example.test/"
    assert variables["COGNITO_LOGIN_URL"].startswith("https://auth.example.test/oauth2/authorize?")
    assert (
        "redirect_uri=https%3A%2F%2Fdiffgram.example.test%2Fuser%2Foauth2-login%2F"
        in (variables["COGNITO_LOGIN_URL"])
    )
    assert "OAUTH2_PROVIDER_CLIENT_SECRET" not in variables


def test_cognito_login_url_needs_a_url_base():
    config = ProviderConfig(kind="cognito", client_id="c", discovery=COGNITO_DISCOVERY)
    assert "COGNITO_LOGIN_URL" not in diffgram.settings_for(config)


def test_keycloak_settings_add_the_trailing_slash_and_admin_credentials():
    config = ProviderConfig(
        kind="keycloak",
        client_id="diffgram",
        keycloak_server_url="https://sso.example.test/auth",
        keycloak_realm="diffgram-realm",
        keycloak_master_user="admin",
        keycloak_master_password="m4ster",
        keycloak_diffgram_user="diffgram-admin",
        client_secret="stored-before-it-was-dropped",  # never published for Keycloak
    )
    assert diffgram.settings_for(config) == {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": "keycloak",
        "OAUTH2_PROVIDER_HOST": "https://sso.example.test/auth/",
        "OAUTH2_PROVIDER_CLIENT_ID": "diffgram",
        "KEYCLOAK_REALM": "diffgram-realm",
        "KEY_CLOAK_MASTER_USER": "admin",
        "KEY_CLOAK_MASTER_PASSWORD": "m4ster",
        "KEY_CLOAK_DIFFGRAM_USER": "diffgram-admin",
    }


def test_each_instance_receives_its_own_keycloak_client_id():
    version_settings = {"OAUTH2_PROVIDER_CLIENT_ID": "diffgram-{instance}", "USE_OAUTH2": "True"}
    assert diffgram.instance_settings(version_settings, "", "https://lab.example.test/", "lab") == {
        "OAUTH2_PROVIDER_CLIENT_ID": "diffgram-lab",
        "USE_OAUTH2": "True",
    }
    assert version_settings["OAUTH2_PROVIDER_CLIENT_ID"] == "diffgram-{instance}"  # untouched


def test_a_generic_oidc_provider_has_no_diffgram_settings():
    assert diffgram.settings_for(ProviderConfig(kind="oidc", client_id="x"), "https://d/") == {}
    assert diffgram.registrations_for("oidc", "https://d/") == []


def test_registration_urls_follow_diffgrams_own_concatenation():
    assert diffgram.registrations_for("cognito", "https://d.example.test") == [
        {
            "label": "Allowed callback (redirect) URL",
            "value": "https://d.example.test/user/oauth2-login/",
        },
        {"label": "Allowed sign-out URL", "value": "https://d.example.test/user/login/"},
    ]
    # Keycloak: Diffgram inserts no slash, so a URL_BASE without one gives a broken URI.
    assert diffgram.callback_url("keycloak", "https://d.example.test/") == (
        "https://d.example.test/user/oidc-login"
    )
    assert diffgram.callback_url("keycloak", "https://d.example.test") == (
        "https://d.example.testuser/oidc-login"
    )


def test_masked_hides_every_secret_variable():
    variables = {
        "OAUTH2_PROVIDER_CLIENT_ID": "id",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "a",
        "KEY_CLOAK_MASTER_PASSWORD": "b",
        "KEY_CLOAK_DIFFGRAM_PASSWORD": "c",
    }
    assert diffgram.masked(variables) == {
        "OAUTH2_PROVIDER_CLIENT_ID": "id",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "[secret: set]",
        "KEY_CLOAK_MASTER_PASSWORD": "[secret: set]",
        "KEY_CLOAK_DIFFGRAM_PASSWORD": "[secret: set]",
    }
