"""The Diffgram contract: what the console publishes, run by a stand-in that behaves as Diffgram
56f04d8's code does (tests/diffgram_standin.py: its start-up, endpoints and frontend routes),
against the real node OP shaped as a Cognito hosted-UI domain (backed by a moto user pool) and
as a Keycloak realm (with the part of Keycloak's admin API Diffgram uses). The console's own
synthetic sign-in (agent/diffgram_sso_agent.py: signin) goes through it as a person would.

Every test here passes alone, in one process and in any order (CI also runs this file with
--reverse)."""

import pytest
from django.urls import reverse

from agent import signin
from console import instances, signin_accounts, verification, versions
from console.models import Instance
from tests.diffgram_standin import CognitoClient, Settings, StandInDiffgram, is_oauth2_set
from tests.idp_server import signing_key
from tests.support import (
    NodeOP,
    aws,
    make_instance,
    make_pool_for_signins,
    require_node_op,
    validated_cognito_provider,
    validated_keycloak_provider,
)

pytestmark = pytest.mark.django_db

REGION = "eu-west-1"
SIGNING_KEYS = {"keys": [signing_key("contract-key").as_dict(private=True)]}
ALICE = {"alice": {"sub": "alice-sub", "email": "alice@example.test", "password": "alice-pw-1!"}}


@pytest.fixture(scope="module")
def _ops(tmp_path_factory):
    require_node_op()
    folder = tmp_path_factory.mktemp("contract-op")
    ops = {"cognito": NodeOP(folder, shape="cognito"), "keycloak": NodeOP(folder, shape="keycloak")}
    yield ops
    for op in ops.values():
        op.stop()


@pytest.fixture
def diffgrams(tmp_path):
    """Stand-in Diffgrams, each reading its own .env; stopped after the test."""
    made = []

    def make(name="lab"):
        folder = tmp_path / name
        folder.mkdir()
        made.append(StandInDiffgram(folder / ".env"))
        made[-1].write_own_settings()
        return made[-1]

    yield make
    for diffgram in made:
        diffgram.stop()


def deploy(client, instance, token, diffgram):
    """What the agent does on the Diffgram host: pull the instance's .env and keep the
    operator's own URL_BASE (the next request to Diffgram is its restart)."""
    answer = client.get(
        reverse("api-pull-config", args=[instance.pk]), HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert answer.status_code == 200, answer.content
    diffgram.env_file.write_text(f"URL_BASE={diffgram.url_base}\n{answer.content.decode()}")


def signed_in_to(instance):
    instance = Instance.objects.select_related("assigned_version").get(pk=instance.pk)
    return instance, {step["name"]: step for step in instance.verify_steps}


# --- Cognito -----------------------------------------------------------------------------------


@pytest.fixture
def cognito_op(_ops, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    return _ops["cognito"]


def hosted_ui_client(client_id, url_base, secret=None):
    """The app client as the hosted UI knows it, with the URLs the console says to register."""
    return {
        "client_id": client_id,
        **(
            {"client_secret": secret, "token_endpoint_auth_method": "client_secret_post"}
            if secret
            else {"token_endpoint_auth_method": "none"}
        ),
        "redirect_uris": [f"{url_base}user/oauth2-login/"],
        "post_logout_redirect_uris": [f"{url_base}user/login/"],
        "grant_types": ["authorization_code", "refresh_token"],
    }


def test_a_public_app_client_signs_a_console_made_account_in_and_out(
    client, idp, moto, settings, cognito_op, diffgrams
):
    pool, app = make_pool_for_signins(moto)
    lab = diffgrams()
    cognito_op.start(
        clients=[hosted_ui_client(app, lab.url_base)], accounts={}, jwks=SIGNING_KEYS,
        cognito_pool={"endpoint": moto, "region": REGION, "pool": pool},
    )  # fmt: skip
    provider = validated_cognito_provider(
        cognito_op, idp, settings, REGION, pool, client_id=app, scopes="openid email profile",
    )  # fmt: skip
    idp.forward_unknown_to(moto)  # boto3's calls reach moto through the discovery front

    account = signin_accounts.create_at_provider(
        provider, username="sso-check", email="sso-check@lab.example.test"
    )
    user = aws(moto).admin_get_user(UserPoolId=pool, Username="sso-check")
    assert user["UserStatus"] == "CONFIRMED"  # a permanent password, no invitation pending
    assert {"Name": "email_verified", "Value": "true"} in user["UserAttributes"]

    instance, token = make_instance(provider, "lab", url_base=lab.url_base)
    versions.publish(provider)
    deploy(client, instance, token, lab)
    result = verification.verify_from_console(Instance.objects.get(pk=instance.pk))

    assert result["ok"], result
    assert [step["name"] for step in result["steps"]] == [
        "diffgram", "login_page", "credentials", "callback", "session", "logout",
    ]  # fmt: skip
    instance, steps = signed_in_to(instance)
    assert instances.verification_state(instance) == "signed_in"
    assert steps["session"]["detail"] == (
        "Diffgram signed in sso-check@lab.example.test (and created that user)"
    )
    logout = steps["logout"]["detail"]
    assert "Diffgram ended its own session; redirected nowhere" in logout
    assert "revoked nothing (the identity provider still accepts the access token)" in logout
    assert "the identity provider's session stays" in logout
    [diffgram_user] = lab.instance().users
    assert diffgram_user["email"] == account.email and diffgram_user["super_admin"]

    # Refresh (what Diffgram does when the ID token in its session expires) works.
    refreshed = CognitoClient(lab.instance().settings).refresh(
        lab.instance().signed_in[-1]["refresh_token"]
    )
    assert refreshed.status == 200, refreshed.body


def test_an_app_client_with_a_secret_signs_in_but_cannot_refresh(
    client, idp, settings, cognito_op, diffgrams
):
    lab = diffgrams()
    cognito_op.start(
        clients=[hosted_ui_client("diffgram-app", lab.url_base, secret="app-secret")],
        accounts=ALICE, jwks=SIGNING_KEYS, cognito_pool={},
    )  # fmt: skip
    provider = validated_cognito_provider(
        cognito_op, idp, settings, REGION, "eu-west-1_Contract2", client_id="diffgram-app",
        client_secret="app-secret", scopes="openid email",
    )  # fmt: skip
    signin_accounts.enter(
        provider, username="alice", email="alice@example.test", password="alice-pw-1!"
    )
    instance, token = make_instance(provider, "lab", url_base=lab.url_base)
    versions.publish(provider)
    deploy(client, instance, token, lab)

    result = verification.verify_from_console(Instance.objects.get(pk=instance.pk))
    assert result["ok"], result  # the secret goes in the body of the code exchange
    refreshed = CognitoClient(lab.instance().settings).refresh(
        lab.instance().signed_in[-1]["refresh_token"]
    )
    assert (refreshed.status, refreshed.body["error"]) == (401, "invalid_client")
    # ...which is the defect the console warns about for this provider.
    warning = next(c for c in provider.validation_checks if c["id"] == "diffgram.known_issues")
    assert warning["status"] == "warn" and "invalid_client" in warning["message"]


def test_a_wrong_password_fails_at_credentials_and_says_what_the_provider_said(
    client, idp, settings, cognito_op, diffgrams
):
    lab = diffgrams()
    cognito_op.start(
        clients=[hosted_ui_client("diffgram-app", lab.url_base)], accounts=ALICE,
        jwks=SIGNING_KEYS, cognito_pool={},
    )  # fmt: skip
    provider = validated_cognito_provider(
        cognito_op, idp, settings, REGION, "eu-west-1_Contract3", client_id="diffgram-app",
        scopes="openid email",
    )  # fmt: skip
    signin_accounts.enter(
        provider, username="alice", email="alice@example.test", password="not-her-password"
    )
    instance, token = make_instance(provider, "lab", url_base=lab.url_base)
    versions.publish(provider)
    deploy(client, instance, token, lab)

    result = verification.verify_from_console(Instance.objects.get(pk=instance.pk))
    assert (result["ok"], result["step"]) == (False, "credentials")
    assert result["detail"] == (
        "the identity provider did not accept the test account alice: "
        "Incorrect username or password."
    )
    assert "not-her-password" not in str(result)
    assert lab.instance().users == []


# --- Keycloak ----------------------------------------------------------------------------------


@pytest.fixture
def keycloak_op(_ops, settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    op = _ops["keycloak"]
    op.start(clients=[], accounts={}, jwks=SIGNING_KEYS, keycloak_admin=("kc-admin", "master-pw"))
    return op


def keycloak_provider(op, **fields):
    return validated_keycloak_provider(
        f"{op.base}/", op.realm, keycloak_master_user="kc-admin",
        keycloak_master_password="master-pw", keycloak_diffgram_user="diffgram-admin",
        keycloak_diffgram_password="dg-pw", **fields,
    )  # fmt: skip


def keycloak_admin_get(op, path):
    """Read Keycloak's admin API as its admin would."""
    import json
    import urllib.parse
    import urllib.request

    form = urllib.parse.urlencode({
        "grant_type": "password", "client_id": "admin-cli", "username": op.keycloak_admin[0],
        "password": op.keycloak_admin[1],
    }).encode()  # fmt: skip
    url = f"{op.base}/realms/master/protocol/openid-connect/token"
    with urllib.request.urlopen(url, data=form, timeout=10) as answer:
        token = json.loads(answer.read())["access_token"]
    request = urllib.request.Request(
        f"{op.base}/admin/realms/{op.realm}/{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_keycloak_used_directly_starts_up_as_diffgram_does_and_signs_nobody_in(
    client, keycloak_op, diffgrams
):
    provider = keycloak_provider(keycloak_op)
    lab = diffgrams()
    instance, token = make_instance(provider, "lab", url_base=lab.url_base)
    versions.publish(provider)
    deploy(client, instance, token, lab)

    # Diffgram's start-up made its own client (internal id = the client id) with its redirect
    # URI, and the realm user with the password it was given.
    assert lab.instance().client is not None, lab.instance().startup_error
    made = keycloak_admin_get(keycloak_op, "clients/diffgram-lab")
    assert made["redirectUris"] == [f"{lab.url_base}user/oidc-login"]
    [realm_user] = keycloak_admin_get(keycloak_op, "users?username=diffgram-admin")
    assert realm_user["username"] == "diffgram-admin"

    # The console makes the test account through the same admin API, then signs in.
    signin_accounts.create_at_provider(
        provider, username="sso-check", email="sso-check@lab.example.test"
    )
    result = verification.verify_from_console(Instance.objects.get(pk=instance.pk))
    instance, steps = signed_in_to(instance)
    assert not result["ok"]
    assert [name for name, step in steps.items() if step["ok"]] == [
        "diffgram", "login_page", "credentials",
    ]  # fmt: skip
    assert (
        "user/oidc-login, a page Diffgram's frontend does not have" in steps["callback"]["detail"]
    )
    # Past that page, Diffgram's callback fails too: scope=email, so Keycloak refuses userinfo
    # and python-keycloak raises.
    assert steps["session"] == {
        "name": "session", "ok": False,
        "detail": "Diffgram's sign-in callback answered HTTP 500 (Diffgram's log says why)",
    }  # fmt: skip
    assert "scope=email" in lab.instance().client.login_url()
    assert instances.verification_state(instance) == "blocked"

    # Without a test account, the probe passes, and the instance is still never a ✓.
    signin_accounts.remove(provider)
    assert keycloak_admin_get(keycloak_op, "users?username=sso-check") == []
    assert verification.verify_from_console(Instance.objects.get(pk=instance.pk))["ok"]
    instance, _ = signed_in_to(instance)
    assert (instance.verify_kind, instances.verification_state(instance)) == ("probe", "blocked")


def test_a_keycloak_client_made_by_hand_makes_diffgrams_start_up_fail(
    client, keycloak_op, diffgrams
):
    lab = diffgrams()
    keycloak_op.start(clients=[{
        "client_id": "diffgram-lab", "client_secret": "made-in-the-admin-console",
        "redirect_uris": [f"{lab.url_base}user/oidc-login"],
    }])  # fmt: skip
    provider = keycloak_provider(keycloak_op)
    instance, token = make_instance(provider, "lab", url_base=lab.url_base)
    versions.publish(provider)
    deploy(client, instance, token, lab)

    result = verification.verify_from_console(Instance.objects.get(pk=instance.pk))
    assert (result["step"], result["detail"]) == ("diffgram", "is-oauth2-set answered HTTP 500")
    assert "HTTP 404" in lab.instance().startup_error  # looked up by its internal id


def test_two_diffgrams_sharing_one_keycloak_client_break_each_others_login(keycloak_op, diffgrams):
    """The console refuses to share a Keycloak client (hence {instance}); set by hand, the
    second Diffgram's start-up overwrites the first one's redirect URI."""
    first, second = diffgrams("first"), diffgrams("second")
    shared = (
        f"USE_OAUTH2=true\nOAUTH2_PROVIDER_NAME=keycloak\nOAUTH2_PROVIDER_HOST={keycloak_op.base}/\n"
        "OAUTH2_PROVIDER_CLIENT_ID=diffgram\nKEYCLOAK_REALM=diffgram-realm\n"
        "KEY_CLOAK_MASTER_USER=kc-admin\nKEY_CLOAK_MASTER_PASSWORD=master-pw\n"
    )
    for diffgram in (first, second):
        diffgram.env_file.write_text(f"URL_BASE={diffgram.url_base}\n{shared}")
        assert diffgram.instance().client is not None, diffgram.instance().startup_error
    made = keycloak_admin_get(keycloak_op, "clients/diffgram")
    assert made["redirectUris"] == [f"{second.url_base}user/oidc-login"]

    expect = {
        "url_base": first.url_base, "client_id": "diffgram",
        "authorize_endpoint": f"{keycloak_op.issuer}/protocol/openid-connect/auth",
        "redirect_uri": f"{first.url_base}user/oidc-login",
    }  # fmt: skip
    result = signin.probe(expect)
    assert (result["step"], result["detail"]) == (
        "login_page", "the identity provider answered HTTP 400: invalid_redirect_uri",
    )  # fmt: skip


def test_without_credentials_diffgram_uses_admin_admin_and_resets_diffgram_diffgram(
    keycloak_op, diffgrams
):
    keycloak_op.start(keycloak_admin=("admin", "admin"))
    lab = diffgrams()
    lab.env_file.write_text(
        f"URL_BASE={lab.url_base}\nUSE_OAUTH2=true\nOAUTH2_PROVIDER_NAME=keycloak\n"
        f"OAUTH2_PROVIDER_HOST={keycloak_op.base}/\nOAUTH2_PROVIDER_CLIENT_ID=diffgram-lab\n"
    )
    assert lab.instance().client is not None, lab.instance().startup_error
    expect = {
        "url_base": lab.url_base, "client_id": "diffgram-lab",
        "authorize_endpoint": f"{keycloak_op.issuer}/protocol/openid-connect/auth",
        "redirect_uri": f"{lab.url_base}user/oidc-login",
    }  # fmt: skip
    account = {"username": "diffgram", "password": "diffgram", "email": ""}
    steps = {step["name"]: step for step in signin.signin(expect, account)["steps"]}
    assert steps["credentials"]["ok"] is True  # the realm user Diffgram reset, diffgram/diffgram
    assert steps["credentials"]["detail"] == "the identity provider accepted [hidden]"


def test_the_stand_in_answers_is_oauth2_set_as_diffgram_does():
    assert is_oauth2_set({}) == {"use_oauth2": False}
    assert is_oauth2_set({"USE_OAUTH2": "False"}) == {"use_oauth2": False}
    cognito = {
        "USE_OAUTH2": "True", "OAUTH2_PROVIDER_NAME": "cognito",
        "OAUTH2_PROVIDER_HOST": "https://d.auth.test/", "OAUTH2_PROVIDER_CLIENT_ID": "c",
        "COGNITO_LOGIN_URL": "https://d.auth.test/oauth2/authorize?client_id=c",
    }  # fmt: skip
    assert is_oauth2_set(cognito) == {
        "use_oauth2": True, "login_url": "https://d.auth.test/oauth2/authorize?client_id=c",
    }  # fmt: skip
    # Keycloak's client starts up against Keycloak first; none answers there.
    assert is_oauth2_set({
        "USE_OAUTH2": "true", "OAUTH2_PROVIDER_NAME": "keycloak",
        "OAUTH2_PROVIDER_HOST": "http://127.0.0.1:9/", "OAUTH2_PROVIDER_CLIENT_ID": "dg-lab",
    }) is None  # fmt: skip
    assert Settings({"URL_BASE": "https://dg.test"}).redirect_url == (
        "https://dg.test/user/oauth2-login/"
    )
