"""Synthetic sign-ins: a provider's test account signs in to each Diffgram the way a person
does — from the console (a Celery task, "Verify now", the beat's watch) or from the agent
(--signin) — and only that is shown as ✓ signed in. Real processes throughout: the node OP
shaped as a Cognito hosted UI (accounts in a moto user pool) or a Keycloak realm, stand-in
Diffgrams that behave as Diffgram's code does, real agents, the real Celery worker, real SMTP
and HTTP receivers for the alerts."""

import json
import re

import pytest
from django.urls import reverse

from console import instances, signin_accounts, tasks, versions
from console.models import Alert, AuditEvent, Rollout, SigninAccount
from tests.idp_server import signing_key
from tests.support import (
    NodeOP,
    aws,
    make_instance,
    make_pool_for_signins,
    require_node_op,
    token_for,
    validated_cognito_provider,
    validated_keycloak_provider,
)

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "eu-west-1"
SIGNING_KEYS = {"keys": [signing_key("signin-key").as_dict(private=True)]}


@pytest.fixture(scope="module")
def _cognito_op(tmp_path_factory):
    require_node_op()
    op = NodeOP(tmp_path_factory.mktemp("signin-op"), shape="cognito")
    yield op
    op.stop()


@pytest.fixture
def cognito_pool(moto, idp, settings, _cognito_op):
    """A moto user pool with a public app client, fronted by real Cognito's discovery
    document; its hosted UI is the node OP, whose users are the pool's. Returns a function that
    registers the callbacks of the given hosts and gives the validated provider."""
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    pool, app = make_pool_for_signins(moto)

    def register(*url_bases):
        _cognito_op.start(
            clients=[{
                "client_id": app, "token_endpoint_auth_method": "none",
                "redirect_uris": [f"{base}user/oauth2-login/" for base in url_bases],
                "grant_types": ["authorization_code", "refresh_token"],
            }],
            accounts={}, jwks=SIGNING_KEYS,
            cognito_pool={"endpoint": moto, "region": REGION, "pool": pool},
        )  # fmt: skip

    register()  # the hosted UI serves the JWKS that validation reads
    provider = validated_cognito_provider(
        _cognito_op, idp, settings, REGION, pool, client_id=app, scopes="openid email"
    )
    idp.forward_unknown_to(moto)  # boto3's calls go on to moto
    provider.pool, provider.register = pool, register
    return provider


def test_an_agent_signs_in_with_the_account_the_console_sent_and_writes_it_nowhere(
    cognito_pool, hosts, admin_client
):
    account = signin_accounts.create_at_provider(
        cognito_pool, username="sso-check", email="sso-check@lab.example.test"
    )
    host = hosts(cognito_pool, "lab", signin_runner="agent", agent_args=["--signin"])
    cognito_pool.register(host.diffgram.url_base)
    versions.publish(cognito_pool)

    result = host.agent.pull()
    assert result.returncode == 0, result.stderr
    assert "v1 signed in: Diffgram signed in sso-check@lab.example.test" in result.stdout
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_kind, instance.verified_by) == (
        True, "signin", "agent",
    )  # fmt: skip
    assert instances.verification_state(instance) == "signed_in"
    logout = next(s for s in instance.verify_steps if s["name"] == "logout")
    assert "revoked nothing" in logout["detail"]

    fleet = admin_client.get(reverse("instances")).content.decode()
    cell = re.search(r'data-instance="lab".*?class="verified">(.*?)</td>', fleet, re.S)[1]
    assert "✓ signed in v1" in cell and "by the agent" in cell

    password = account.secret("password")
    assert password not in host.agent.env_file.read_text()
    assert password not in result.stdout + result.stderr
    state = host.agent.env_file.with_name(".env.sso-state.json").read_text()
    assert password not in state
    assert "sso-check" not in host.agent.env_file.read_text()


def test_a_new_password_reaches_the_agent_with_its_next_poll(cognito_pool, hosts):
    signin_accounts.create_at_provider(cognito_pool, username="sso-check", email="c@lab.test")
    host = hosts(cognito_pool, "lab", signin_runner="agent", agent_args=["--signin"])
    cognito_pool.register(host.diffgram.url_base)
    versions.publish(cognito_pool)
    assert host.agent.pull().returncode == 0
    unchanged = host.agent.pull()
    assert "unchanged at v1" in unchanged.stdout  # a 304: nothing new to apply or sign in with

    signin_accounts.rotate(cognito_pool)
    after = host.agent.pull()
    assert "v1 signed in" in after.stdout, after.stdout  # the answer changed: the new password
    assert host.refresh().verify_ok is True


def test_a_pushed_agent_signs_in_and_verify_now_signs_in_from_the_console(
    celery_worker, cognito_pool, hosts, admin_client
):
    signin_accounts.create_at_provider(cognito_pool, username="sso-check", email="c@lab.test")
    host = hosts(cognito_pool, "lab", push=True, signin_runner="agent", agent_args=["--signin"])
    cognito_pool.register(host.diffgram.url_base)
    versions.publish(cognito_pool)
    celery_worker.wait_until(lambda: host.verified(1), "the pushed agent's sign-in")
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_kind, instance.verified_by) == (
        True, "signin", "agent",
    )  # fmt: skip

    page = admin_client.post(
        reverse("instance-verify", args=[host.instance.pk]), follow=True
    ).content.decode()
    assert "lab: signed in and out. Diffgram ended its own session" in page
    instance = host.refresh()
    assert (instance.verify_kind, instance.verified_by) == ("signin", "console")
    assert '<li class="status-pass"><strong>session</strong> ✓ Diffgram signed in c@lab.test' in (
        admin_client.get(reverse("instance-detail", args=[host.instance.pk])).content.decode()
    )


# --- Keycloak used directly: the first group fails and the rollout halts ------------------------


@pytest.fixture
def keycloak_op(tmp_path_factory, settings):
    require_node_op()
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    op = NodeOP(tmp_path_factory.mktemp("keycloak-op"), shape="keycloak")
    op.start(clients=[], accounts={}, jwks=SIGNING_KEYS, keycloak_admin=("kc-admin", "master-pw"))
    yield op
    op.stop()


def test_keycloak_used_directly_fails_its_sign_in_and_halts_the_rollout(
    celery_worker, keycloak_op, hosts, admin_client
):
    provider = validated_keycloak_provider(
        f"{keycloak_op.base}/", keycloak_op.realm, keycloak_master_user="kc-admin",
        keycloak_master_password="master-pw",
    )  # fmt: skip
    signin_accounts.create_at_provider(provider, username="sso-check", email="c@lab.test")
    canary = hosts(provider, "canary", rollout_group="canary", agent_verifies=False)
    hosts(provider, "rest", agent_verifies=False)

    version = versions.publish(provider, group="canary", auto_halt=True)
    assert canary.agent.pull().returncode == 0  # applied: the console signs in from the worker
    celery_worker.wait_until(
        lambda: Rollout.objects.get(version=version).state == Rollout.State.HALTED,
        "the rollout to halt by itself",
    )
    rollout = Rollout.objects.get(version=version)
    assert rollout.halt_reason.startswith(
        "canary failed at callback: the identity provider sent the browser to "
    )
    assert "a page Diffgram's frontend does not have" in rollout.halt_reason
    instance = canary.refresh()
    assert (instance.verified_by, instance.verify_kind) == ("console", "signin")
    assert instances.verification_state(instance) == "blocked"
    fleet = admin_client.get(reverse("instances")).content.decode()
    cell = re.search(r'data-instance="canary".*?class="verified">(.*?)</td>', fleet, re.S)[1]
    assert "blocked by a Diffgram defect" in cell and "keycloak.scope_email" in cell
    assert "✓" not in fleet


def test_the_publish_confirmation_repeats_the_defects_that_block_sign_in(keycloak_op, admin_client):
    provider = validated_keycloak_provider(f"{keycloak_op.base}/", keycloak_op.realm)
    make_instance(provider, "lab")
    page = admin_client.post(reverse("provider-publish", args=[provider.pk]), {"group": ""})
    assert page.status_code == 200, page.headers
    text = page.content.decode()
    assert "Nobody can sign in to Diffgram 56f04d8 with this setup" in text
    assert "keycloak.scope_email" in text and "keycloak.redirect_route" in text


# --- the beat's watch: a sign-in failing after one passed alerts once ----------------------------


def read_metrics(client, settings):
    settings.METRICS_TOKEN = "m" * 32
    answer = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {'m' * 32}")
    assert answer.status_code == 200
    return answer.content.decode()


def test_a_sign_in_that_breaks_after_working_alerts_once_and_shows_in_metrics(
    celery_worker, cognito_pool, hosts, smtp, hook_receiver, client, settings, moto
):
    from tests.test_alerts import destinations

    destinations(smtp, hook_receiver, "signin_failed", "signin_recovered")
    account = signin_accounts.create_at_provider(
        cognito_pool, username="sso-check", email="c@lab.test"
    )
    host = hosts(cognito_pool, "lab", agent_verifies=False)
    cognito_pool.register(host.diffgram.url_base)
    versions.publish(cognito_pool)
    assert host.agent.pull().returncode == 0

    def watched(count):
        """The beat's watch, run now on the worker; waits for `count` sign-ins in all."""
        tasks.run_signin_checks.delay(spread_seconds=0)
        celery_worker.wait_until(lambda: signins() >= count, f"{count} synthetic sign-ins")

    seen = []

    def signins():
        instance = host.refresh()
        if instance.last_signin_at and instance.last_signin_at not in seen:
            seen.append(instance.last_signin_at)
        return len(seen)

    celery_worker.wait_until(lambda: signins() >= 1, "the sign-in after the apply")
    assert host.refresh().last_signin_ok is True
    assert 'diffgram_sso_signin_up{instance="lab"} 1.0' in read_metrics(client, settings)

    # Someone changes the test account's password at the identity provider.
    aws(moto).admin_set_user_password(
        UserPoolId=cognito_pool.pool, Username=account.username, Password="Changed-9!xx",
        Permanent=True,
    )  # fmt: skip
    watched(2)
    watched(3)  # still failing: no news
    assert host.refresh().last_signin_ok is False
    assert AuditEvent.objects.filter(action="instance.signin_failed").count() == 1
    celery_worker.wait_until(
        lambda: len(smtp.messages) >= 1 and len(hook_receiver.received) >= 1, "the alerts"
    )
    [mail] = smtp.messages
    assert mail["Subject"] == "[Diffgram SSO] lab: signing in to Diffgram fails"
    assert "failed at credentials" in mail.get_content()
    [payload] = hook_receiver.payloads()
    assert payload["event"] == "signin_failed"
    assert Alert.objects.filter(event="signin_failed").count() == 2  # one per destination
    metrics = read_metrics(client, settings)
    assert 'diffgram_sso_signin_up{instance="lab"} 0.0' in metrics
    assert 'diffgram_sso_signin_duration_seconds_bucket{le="+Inf"} 1.0' in metrics

    signin_accounts.rotate(cognito_pool)  # a new password, set in the pool by the console
    watched(4)
    celery_worker.wait_until(lambda: len(smtp.messages) >= 2, "the recovery alert")
    assert smtp.messages[1]["Subject"] == "[Diffgram SSO] lab: signing in to Diffgram works again"
    assert AuditEvent.objects.filter(action="instance.signin_recovered").count() == 1


# --- the test account: made at the identity provider, never shown ------------------------------


def test_the_test_account_page_creates_rotates_and_removes_it_in_the_pool(
    cognito_pool, admin_client, moto
):
    page = reverse("provider-signin-account", args=[cognito_pool.pk])
    refused = admin_client.post(page, {"how": "enter", "username": "x", "email": "x@lab.test"})
    assert "Enter the account&#x27;s password." in refused.content.decode()
    assert not SigninAccount.objects.exists()

    done = admin_client.post(
        page, {"how": "create", "username": "sso-check", "email": "c@lab.test"}, follow=True
    )
    assert "has the test account sso-check" in done.content.decode()
    account = SigninAccount.objects.get()
    first = account.secret("password")
    pool = aws(moto)

    def signs_in(password):
        try:
            pool.initiate_auth(
                ClientId=cognito_pool.client_id, AuthFlow="USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": "sso-check", "PASSWORD": password},
            )  # fmt: skip
        except pool.exceptions.NotAuthorizedException:
            return False
        return True

    assert signs_in(first)
    admin_client.post(reverse("provider-signin-account-rotate", args=[cognito_pool.pk]))
    second = SigninAccount.objects.get().secret("password")
    assert second != first and signs_in(second) and not signs_in(first)

    admin_client.post(reverse("provider-signin-account-remove", args=[cognito_pool.pk]))
    assert not SigninAccount.objects.exists()
    with pytest.raises(pool.exceptions.UserNotFoundException):
        pool.admin_get_user(UserPoolId=cognito_pool.pool, Username="sso-check")
    events = AuditEvent.objects.filter(action__startswith="provider.signin_account")
    assert [event.action for event in events.order_by("id")] == [
        "provider.signin_account_set", "provider.signin_account_rotated",
        "provider.signin_account_removed",
    ]  # fmt: skip


def test_the_test_accounts_password_appears_nowhere(
    cognito_pool, hosts, admin_user, admin_client, auditor_client, client, caplog
):
    """A canary: the generated password is searched for in every page, answer, record and
    file the console and the agent produce while it is made, used and exported."""
    caplog.set_level("DEBUG")
    account = signin_accounts.create_at_provider(
        cognito_pool, username="sso-check", email="c@lab.test"
    )
    password = account.secret("password")
    host = hosts(cognito_pool, "lab", signin_runner="agent", agent_args=["--signin"])
    cognito_pool.register(host.diffgram.url_base)
    versions.publish(cognito_pool)
    ran = host.agent.pull()
    assert "signed in" in ran.stdout

    seen = {"agent output": ran.stdout + ran.stderr, "the agent's .env": host.agent.env()}
    for url in (
        reverse("providers"), reverse("provider-detail", args=[cognito_pool.pk]),
        reverse("provider-signin-account", args=[cognito_pool.pk]), reverse("instances"),
        reverse("instance-detail", args=[host.instance.pk]), reverse("history"),
        reverse("history-export", args=["csv"]), reverse("history-export", args=["jsonl"]),
        reverse("config-export"),
    ):  # fmt: skip
        for who, reader in (("admin", admin_client), ("auditor", auditor_client)):
            answer = reader.get(url)
            body = b"".join(answer.streaming_content) if answer.streaming else answer.content
            seen[f"{url} as {who} ({answer.status_code})"] = body.decode()
    token = token_for(admin_user)
    for url in (reverse("api-v1:providers"), reverse("api-v1:instances")):
        seen[url] = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").content.decode()
    seen["audit events"] = json.dumps(list(AuditEvent.objects.values()), default=str)
    seen["logs"] = caplog.text
    assert [where for where, text in seen.items() if password in str(text)] == []
    assert any("sso-check" in str(text) for text in seen.values())  # the search was real
