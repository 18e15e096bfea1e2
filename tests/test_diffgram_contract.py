"""The Diffgram contract: what the console publishes, fed to a client that does what Diffgram
does (tests/diffgram_contract.py, from docs/DIFFGRAM.md), against the real node OP shaped as a
Cognito hosted-UI domain and as a Keycloak realm. A regression in what the console renders —
a host without its "/", a wrong login URL, a client id that is not the instance's — fails here.
It also shows that the defects the console warns about are real."""

import io

import pytest
from django.urls import reverse
from dotenv import dotenv_values

from console import versions
from tests.diffgram_contract import (
    CognitoClient,
    DiffgramSettings,
    KeycloakClient,
    code_from,
    login_page_answer,
    sign_in_at_op,
)
from tests.idp_server import signing_key
from tests.support import (
    NodeOP,
    make_instance,
    require_node_op,
    validated_cognito_provider,
    validated_keycloak_provider,
)

pytestmark = pytest.mark.django_db

REGION, POOL = "eu-west-1", "eu-west-1_Contract1"
URL_BASE = "https://lab.example.test/"
ACCOUNTS = {"alice": {"sub": "alice-sub", "email": "alice@example.test"}}
SIGNING_KEYS = {"keys": [signing_key("contract-key").as_dict(private=True)]}


@pytest.fixture(scope="module")
def _ops(tmp_path_factory):
    require_node_op()
    folder = tmp_path_factory.mktemp("contract-op")
    ops = {"cognito": NodeOP(folder, shape="cognito"), "keycloak": NodeOP(folder, shape="keycloak")}
    yield ops
    for op in ops.values():
        op.stop()


@pytest.fixture
def cognito_op(_ops, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    return _ops["cognito"]


@pytest.fixture
def keycloak_op(_ops, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    return _ops["keycloak"]


def published_env(client, provider):
    """Publish the provider to instance `lab` and pull its .env as the agent would."""
    instance, token = make_instance(provider, "lab", url_base=URL_BASE)
    versions.publish(provider)
    response = client.get(
        reverse("api-pull-config", args=[instance.pk]), HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    return dotenv_values(stream=io.StringIO(response.content.decode()), interpolate=False)


# --- Cognito -------------------------------------------------------------------------------------


def cognito_provider(op, idp, settings, client_secret=""):
    return validated_cognito_provider(
        op, idp, settings, REGION, POOL, client_id="diffgram-app", client_secret=client_secret,
        scopes="openid email profile", diffgram_url_base=URL_BASE,
    )  # fmt: skip


def app_client(secret=None):
    """The app client as Cognito holds it, with the URLs the console says to register."""
    return {
        "client_id": "diffgram-app",
        **(
            {"client_secret": secret, "token_endpoint_auth_method": "client_secret_post"}
            if secret
            else {"token_endpoint_auth_method": "none"}
        ),
        "redirect_uris": [f"{URL_BASE}user/oauth2-login/"],
        "post_logout_redirect_uris": [f"{URL_BASE}user/login/"],
        "grant_types": ["authorization_code", "refresh_token"],
    }


def test_cognito_with_a_public_app_client_signs_in_refreshes_and_signs_out(
    client, idp, settings, cognito_op
):
    cognito_op.start(clients=[app_client()], accounts=ACCOUNTS, jwks=SIGNING_KEYS)
    env = published_env(client, cognito_provider(cognito_op, idp, settings))
    config = DiffgramSettings(env, URL_BASE)
    assert (config.use_oauth2, config.provider_name) == (True, "cognito")
    diffgram = CognitoClient(config)

    callback = sign_in_at_op(diffgram.login_url(), "alice", config.redirect_url)
    tokens = diffgram.exchange_code(code_from(callback))
    assert tokens.status == 200, tokens.body
    assert tokens.body["id_token"] and tokens.body["refresh_token"]
    user = diffgram.userinfo(tokens.body["access_token"])
    assert (user.status, user.body["sub"], user.body["email"]) == (
        200, "alice-sub", "alice@example.test",
    )  # fmt: skip

    refreshed = diffgram.refresh(tokens.body["refresh_token"])
    assert refreshed.status == 200, refreshed.body
    assert diffgram.userinfo(refreshed.body["access_token"]).status == 200
    assert diffgram.revoke(refreshed.body["refresh_token"]).status == 200
    status, _, page = login_page_answer(diffgram.logout_url())
    assert status == 200 and "logout" in page.lower()  # the OP's sign-out page, not an error


def test_cognito_with_a_client_secret_signs_in_but_cannot_refresh_or_revoke(
    client, idp, settings, cognito_op
):
    cognito_op.start(clients=[app_client(secret="app-secret")], accounts=ACCOUNTS)
    provider = cognito_provider(cognito_op, idp, settings, client_secret="app-secret")
    diffgram = CognitoClient(DiffgramSettings(published_env(client, provider), URL_BASE))

    callback = sign_in_at_op(diffgram.login_url(), "alice", f"{URL_BASE}user/oauth2-login/")
    tokens = diffgram.exchange_code(code_from(callback))
    assert tokens.status == 200, tokens.body  # the secret goes in the body here
    for answer in (
        diffgram.refresh(tokens.body["refresh_token"]),
        diffgram.revoke(tokens.body["refresh_token"]),
    ):
        assert (answer.status, answer.body["error"]) == (401, "invalid_client")
    # ...which is the defect the console warns about for this provider.
    warning = next(c for c in provider.validation_checks if c["id"] == "diffgram.known_issues")
    assert warning["status"] == "warn" and "invalid_client" in warning["message"]


# --- Keycloak ------------------------------------------------------------------------------------


def keycloak_provider(op):
    return validated_keycloak_provider(
        f"{op.base}/", op.realm, keycloak_master_password="master-pw",
        keycloak_diffgram_password="dg-pw", diffgram_url_base=URL_BASE,
    )  # fmt: skip


def test_keycloak_settings_reach_the_instances_client_and_diffgrams_scope_email_defect(
    client, keycloak_op
):
    # The client as Diffgram's start-up creates it for instance lab: its id, its redirect URI,
    # and a secret Diffgram reads back from Keycloak's admin API.
    keycloak_op.start(
        clients=[
            {
                "client_id": "diffgram-lab",
                "client_secret": "read-from-the-admin-api",
                "token_endpoint_auth_method": "client_secret_post",
                "redirect_uris": [f"{URL_BASE}user/oidc-login"],
                "grant_types": ["authorization_code", "refresh_token"],
            }
        ],
        accounts=ACCOUNTS,
        jwks=SIGNING_KEYS,
    )
    provider = keycloak_provider(keycloak_op)
    config = DiffgramSettings(published_env(client, provider), URL_BASE)
    assert (config.provider_name, config.client_id) == ("keycloak", "diffgram-lab")

    # Diffgram 56f04d8 asks for scope=email only: the code exchange works, but there is no ID
    # token and the provider refuses userinfo, so the callback fails.
    diffgram = KeycloakClient(config, "read-from-the-admin-api")
    tokens = diffgram.exchange_code(
        code_from(sign_in_at_op(diffgram.login_url(), "alice", config.keycloak_redirect))
    )
    assert tokens.status == 200, tokens.body
    assert "id_token" not in tokens.body
    refused = diffgram.userinfo(tokens.body["access_token"])
    assert (refused.status, refused.body["error"]) == (403, "insufficient_scope")
    warning = next(c for c in provider.validation_checks if c["id"] == "diffgram.known_issues")
    assert "insufficient_scope" in warning["message"]

    # The same published settings with the scope a fixed Diffgram would ask for sign in.
    fixed = KeycloakClient(config, "read-from-the-admin-api", scope="openid email")
    tokens = fixed.exchange_code(
        code_from(sign_in_at_op(fixed.login_url(), "alice", config.keycloak_redirect))
    )
    assert tokens.status == 200 and tokens.body["id_token"]
    user = fixed.userinfo(tokens.body["access_token"])
    assert (user.status, user.body["email"]) == (200, "alice@example.test")
