"""Verified rollouts, end to end with real processes: the real agent applies a version, asks a
stand-in Diffgram (tests/diffgram_standin.py) whether it offers single sign-on with it, and
asks the node test OP whether it accepts Diffgram's login request; the console records it,
shows it, and halts a staged rollout by itself when the first group says no."""

import re

import pytest
from django.urls import reverse

from agent import diffgram_sso_agent as agent
from console import versions
from console.models import AuditEvent, Instance
from tests.diffgram_standin import StandInDiffgram, is_oauth2_set
from tests.idp_server import signing_key
from tests.support import (
    AgentProcess,
    NodeOP,
    make_instance,
    require_node_op,
    validated_cognito_provider,
)

pytestmark = pytest.mark.django_db(transaction=True)

REGION, POOL = "eu-west-1", "eu-west-1_Verify1"
APP_CLIENT = "diffgram-app"
SIGNING_KEYS = {"keys": [signing_key("verify-key").as_dict(private=True)]}


@pytest.fixture(scope="module")
def _op(tmp_path_factory):
    require_node_op()
    op = NodeOP(tmp_path_factory.mktemp("verify-op"), shape="cognito")
    yield op
    op.stop()


@pytest.fixture
def cognito_op(_op, settings):
    """The node OP as a Cognito hosted-UI domain; its app client is registered per test."""
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    register_app_client(_op)  # no callback yet: each test registers its instances'
    return _op


def register_app_client(op, *url_bases):
    """The app client as the admin registered it at the IdP: the callback of each URL_BASE."""
    op.start(
        clients=[
            {
                "client_id": APP_CLIENT,
                "token_endpoint_auth_method": "none",
                "redirect_uris": [f"{base}user/oauth2-login/" for base in url_bases],
                "grant_types": ["authorization_code", "refresh_token"],
            }
        ],
        jwks=SIGNING_KEYS,
    )


@pytest.fixture
def cognito(cognito_op, idp, settings):
    """A validated Cognito provider whose hosted UI is the node OP."""
    return validated_cognito_provider(
        cognito_op, idp, settings, REGION, POOL, client_id=APP_CLIENT, scopes="openid email"
    )


class Host:
    """One Diffgram host: its stand-in Diffgram and the real agent next to it."""

    def __init__(self, tmp_path, provider, name, live_server, **fields):
        folder = tmp_path / name
        folder.mkdir()
        self.diffgram = StandInDiffgram(folder / ".env")
        self.diffgram.write_own_settings()
        self.instance, token = make_instance(
            provider, name, url_base=self.diffgram.url_base, **fields
        )
        self.agent = AgentProcess(
            folder, self.instance, token, live_server.url, diffgram_url=self.diffgram.url_base
        )

    def refresh(self):
        return Instance.objects.get(pk=self.instance.pk)

    def stop(self):
        self.agent.stop()
        self.diffgram.stop()


@pytest.fixture
def hosts(tmp_path, live_server):
    made = []

    def make(provider, name, **fields):
        made.append(Host(tmp_path, provider, name, live_server, **fields))
        return made[-1]

    yield make
    for host in made:
        host.stop()


# --- the stand-in answers as Diffgram does ------------------------------------------------------


def test_the_stand_in_answers_as_diffgram_does():
    assert is_oauth2_set({}) == {"use_oauth2": False}
    assert is_oauth2_set({"USE_OAUTH2": "False"}) == {"use_oauth2": False}
    cognito = is_oauth2_set(
        {"USE_OAUTH2": "True", "OAUTH2_PROVIDER_NAME": "cognito",
         "OAUTH2_PROVIDER_HOST": "https://d.auth.test/", "OAUTH2_PROVIDER_CLIENT_ID": "c",
         "COGNITO_LOGIN_URL": "https://d.auth.test/oauth2/authorize?client_id=c"}
    )  # fmt: skip
    assert cognito == {
        "use_oauth2": True,
        "login_url": "https://d.auth.test/oauth2/authorize?client_id=c",
    }
    keycloak = is_oauth2_set(
        {"USE_OAUTH2": "true", "OAUTH2_PROVIDER_NAME": "keycloak", "URL_BASE": "https://dg.test/",
         "OAUTH2_PROVIDER_HOST": "https://kc.test/", "OAUTH2_PROVIDER_CLIENT_ID": "dg-lab",
         "KEYCLOAK_REALM": "r"}
    )  # fmt: skip
    assert keycloak["login_url"] == (
        "https://kc.test/realms/r/protocol/openid-connect/auth?client_id=dg-lab"
        "&response_type=code&redirect_uri=https://dg.test/user/oidc-login&scope=email&state="
    )


# --- the agent's probe --------------------------------------------------------------------------


def test_a_correct_rollout_verifies(cognito, cognito_op, hosts, admin_client):
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    result = host.agent.pull()
    assert result.returncode == 0, result.stderr
    assert "verified v1: Diffgram signs in through the identity provider" in result.stdout
    instance = host.refresh()
    assert (instance.applied_version_number, instance.verified_version_number) == (1, 1)
    assert (instance.verify_ok, instance.verified_by) == (True, "agent")
    assert "login page" in instance.verify_detail
    event = AuditEvent.objects.get(action="instance.verified")
    assert event.context["version"] == 1 and event.context["by"] == "agent"
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1  # not twice

    row = admin_client.get(reverse("instances")).content.decode()
    assert re.search(r'data-instance="lab".*?class="verified".*?verified v1', row, re.S)


def test_a_callback_not_registered_at_the_idp_is_caught(cognito, cognito_op, hosts):
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, "https://somewhere-else.test/")
    versions.publish(cognito)
    result = host.agent.pull()
    assert result.returncode == 0, result.stderr  # applied: the file is right, sign-in is not
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_step) == (False, "idp")
    assert "redirect_uri" in instance.verify_detail, instance.verify_detail
    failed = AuditEvent.objects.get(action="instance.verify_failed")
    assert failed.context["step"] == "idp"


def test_a_diffgram_that_does_not_come_back_is_reported(cognito, cognito_op, hosts):
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    host.diffgram.stop()
    result = host.agent.pull("--verify-wait", "2")
    assert result.returncode == 0, result.stderr
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_step) == (False, "diffgram")
    assert "Diffgram did not answer" in instance.verify_detail


def test_a_diffgram_still_running_the_old_settings_is_waited_for_then_reported(
    cognito, cognito_op, hosts
):
    """The agent applied, but Diffgram answers use_oauth2: false (not restarted): the agent
    asks again until --verify-wait runs out."""
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    host.diffgram.env_file = host.diffgram.env_file.with_name("not-the-agents.env")
    result = host.agent.pull("--verify-wait", "3")
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_step) == (False, "use_oauth2")
    assert host.diffgram.requests >= 2  # asked again while waiting
    assert result.returncode == 0


# --- the probe's judgement, on what identity providers answer ------------------------------------


EXPECT = {
    "url_base": "https://dg.test/",
    "authorize_endpoint": "https://idp.test/oauth2/authorize",
    "client_id": "c",
    "redirect_uri": "https://dg.test/user/oauth2-login/",
}


@pytest.mark.parametrize(
    ("answer", "step"),
    [
        ({"use_oauth2": False}, "use_oauth2"),
        ({"use_oauth2": True}, "login_url"),
        ({"use_oauth2": True, "login_url": "https://other.test/oauth2/authorize?client_id=c"},
         "login_url"),
        ({"use_oauth2": True, "login_url": "https://idp.test/oauth2/authorize?client_id=x"
          "&response_type=code&redirect_uri=https://dg.test/user/oauth2-login/"}, "login_url"),
        ({"use_oauth2": True, "login_url": "https://idp.test/oauth2/authorize?client_id=c"
          "&response_type=token&redirect_uri=https://dg.test/user/oauth2-login/"}, "login_url"),
        ({"use_oauth2": True, "login_url": "https://idp.test/oauth2/authorize?client_id=c"
          "&response_type=code&redirect_uri=https://dg.test/user/oauth2-login"}, "login_url"),
        ({"use_oauth2": True, "login_url": "https://idp.test/oauth2/authorize?client_id=c"
          "&response_type=code&redirect_uri=https%3A%2F%2Fdg.test%2Fuser%2Foauth2-login%2F"},
         None),
    ],
)  # fmt: skip
def test_diffgrams_answer_is_checked_step_by_step(answer, step):
    import json

    failure = agent.check_oauth2_answer(200, json.dumps(answer).encode(), EXPECT)
    assert (failure[0] if failure else None) == step


@pytest.mark.parametrize(
    ("answers", "ok", "words"),
    [
        # Cognito: an unregistered redirect_uri goes to its own error page.
        ([(302, {"location": "/error?error=redirect_mismatch&client_id=c"}, b"")], False,
         "redirect_mismatch"),
        # Keycloak: 400 "Invalid parameter: redirect_uri".
        ([(400, {}, b"<p>Invalid parameter: redirect_uri</p>")], False, "redirect_uri"),
        # A login page, after a redirect on the provider's own host.
        ([(302, {"location": "/login?client_id=c"}, b""), (200, {}, b"<form>Sign in</form>")],
         True, "login page"),
        # Handed over to a federated provider (Cognito with identity_provider=Google).
        ([(302, {"location": "https://accounts.google.test/o/oauth2/auth"}, b"")], True,
         "hands over to accounts.google.test"),
    ],
)  # fmt: skip
def test_the_identity_providers_answer_is_judged(answers, ok, words):
    replies = iter((*answer, []) for answer in answers)
    found_ok, detail = agent.check_login_page(
        "https://idp.test/oauth2/authorize?client_id=c", lambda url, cookie: next(replies)
    )
    assert found_ok is ok and words in detail


def test_a_login_url_that_is_not_http_is_never_opened(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not read me")
    with pytest.raises(agent.Unreachable, match="not an http"):
        agent.http_get(secret.as_uri())
