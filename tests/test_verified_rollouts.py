"""Verified rollouts, end to end with real processes: the real agent applies a version, asks a
stand-in Diffgram (tests/diffgram_standin.py) whether it offers single sign-on with it, asks
the node test OP whether it shows a login page for Diffgram's login request and, with a test
account, signs in through Diffgram's callback; the console records it, shows it (only a
synthetic sign-in is a ✓), and halts a staged rollout by itself when the first group says no."""

import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agent import signin
from console import diffgram, providers, tasks, verification, versions
from console.kinds import CognitoProviderForm
from console.models import AuditEvent, ConfigVersion, Instance, PushRequest, Rollout
from tests.idp_server import signing_key
from tests.support import (
    NodeOP,
    require_node_op,
    token_for,
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


# --- the agent's probe --------------------------------------------------------------------------


def test_a_correct_rollout_offers_sign_in_but_is_no_check_mark_without_a_test_account(
    cognito, cognito_op, hosts, admin_client
):
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    result = host.agent.pull()
    assert result.returncode == 0, result.stderr
    assert "v1 offers sign-in (not signed in: no test account)" in result.stdout
    instance = host.refresh()
    assert (instance.applied_version_number, instance.verified_version_number) == (1, 1)
    assert (instance.verify_ok, instance.verified_by, instance.verify_kind) == (
        True, "agent", "probe",
    )  # fmt: skip
    assert "login page" in instance.verify_detail
    event = AuditEvent.objects.get(action="instance.verified")
    assert event.context["version"] == 1 and event.context["by"] == "agent"
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1  # not twice

    row = admin_client.get(reverse("instances")).content.decode()
    cell = re.search(r'data-instance="lab".*?class="verified">(.*?)</td>', row, re.S)[1]
    assert "offers sign-in (not signed in)" in cell and "✓" not in cell


def test_a_callback_not_registered_at_the_idp_is_caught(cognito, cognito_op, hosts):
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, "https://somewhere-else.test/")
    versions.publish(cognito)
    result = host.agent.pull()
    assert result.returncode == 0, result.stderr  # applied: the file is right, sign-in is not
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_step) == (False, "login_page")
    assert "redirect_uri" in instance.verify_detail, instance.verify_detail
    failed = AuditEvent.objects.get(action="instance.verify_failed")
    assert failed.context["step"] == "login_page"


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

    failure = signin.check_oauth2_answer(200, json.dumps(answer).encode(), EXPECT)
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
         True, "login page (https://idp.test/login)"),
        # Handed over to a federated provider (Cognito with identity_provider=Google): the probe
        # says so and goes no further.
        ([(302, {"location": "https://accounts.google.test/o/oauth2/auth"}, b"")], True,
         "hands over to accounts.google.test (not followed)"),
    ],
)  # fmt: skip
def test_the_identity_providers_answer_is_judged(answers, ok, words):
    replies = iter((*answer, []) for answer in answers)
    expect = {"url_base": "https://dg.test/"}
    login_url = "https://idp.test/oauth2/authorize?client_id=c"
    outcome = signin._walk(
        signin.Browser(lambda method, url, body, headers: next(replies)), "GET", login_url,
        expect["url_base"], stay_on="idp.test",
    )  # fmt: skip
    found_ok, detail, _ = signin.judge_login_page(outcome, login_url)
    assert found_ok is ok and words in detail


def test_a_login_url_that_is_not_http_is_never_opened(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do not read me")
    with pytest.raises(signin.Unreachable, match="not an http"):
        signin.http_send("GET", secret.as_uri())


# --- staged rollouts that halt by themselves, through the real worker and pushed agents ---------


def rollout_of(version):
    return Rollout.objects.get(version=version)


def test_a_failing_first_group_halts_the_rollout_and_the_rest_of_the_fleet_gets_nothing(
    celery_worker, cognito, cognito_op, hosts, admin_client
):
    canary = hosts(cognito, "canary", push=True, rollout_group="canary")
    rest = hosts(cognito, "rest", push=True)
    register_app_client(cognito_op, rest.diffgram.url_base)  # the canary's callback is missing
    version = versions.publish(cognito, group="canary", auto_halt=True)
    celery_worker.wait_until(
        lambda: rollout_of(version).state == Rollout.State.HALTED, "the rollout to halt by itself"
    )
    rollout = rollout_of(version)
    assert rollout.halted_automatically
    assert rollout.halt_reason.startswith("canary failed at login_page: the identity provider")
    halted = AuditEvent.objects.get(action="rollout.halted")
    assert (halted.actor_type, halted.context["automatic"]) == ("system", True)
    assert halted.context["reason"] == rollout.halt_reason
    assert (canary.refresh().applied_version_number, canary.refresh().verify_step) == (
        1, "login_page",
    )  # fmt: skip
    assert not PushRequest.objects.filter(instance=rest.instance).exists()
    assert "USE_OAUTH2" not in rest.agent.env()  # only the operator's own URL_BASE

    page = admin_client.get(reverse("version-detail", args=[cognito.pk, version.number]))
    assert "Halted by itself" in page.content.decode()
    assert rollout.halt_reason in page.content.decode()

    # Continue is refused: the admin must say why the halt does not matter.
    answer = admin_client.post(
        reverse("rollout-continue", args=[cognito.pk, version.number]), follow=True
    )
    assert "give the reason for overriding it" in answer.content.decode()
    answer = admin_client.post(
        reverse("rollout-override", args=[cognito.pk, version.number]), {"reason": "  "},
        follow=True,
    )  # fmt: skip
    assert "give the reason for overriding it" in answer.content.decode()
    assert not PushRequest.objects.filter(instance=rest.instance).exists()

    reason = "The canary's callback is registered in a change ticket; the rest is fine."
    admin_client.post(
        reverse("rollout-override", args=[cognito.pk, version.number]), {"reason": reason}
    )
    assert rollout_of(version).state == Rollout.State.COMPLETE
    continued = AuditEvent.objects.get(action="rollout.continued")
    assert continued.context["override"] == reason
    assert continued.context["halted_because"] == rollout.halt_reason
    assert continued.actor_label == "alice-admin"
    celery_worker.wait_until(lambda: rest.verified(version.number), "the rest to verify")
    assert rest.refresh().verify_ok is True


def test_auto_rollback_puts_the_first_group_back_on_the_previous_version(
    celery_worker, cognito, cognito_op, hosts
):
    canary = hosts(cognito, "canary", push=True, rollout_group="canary")
    rest = hosts(cognito, "rest", push=True)
    register_app_client(cognito_op, canary.diffgram.url_base, rest.diffgram.url_base)
    first = versions.publish(cognito)
    celery_worker.wait_until(
        lambda: canary.verified(1) and rest.verified(1), "v1 to verify everywhere"
    )
    assert canary.refresh().verify_ok and rest.refresh().verify_ok

    # A typo in the client ID: valid OIDC for the console, refused by the identity provider.
    edit = CognitoProviderForm(
        data={"name": cognito.name, "aws_region": REGION, "user_pool_id": POOL,
              "client_id": "diffgram-ap", "scopes": "openid email"},
        instance=cognito,
    )  # fmt: skip
    assert edit.is_valid(), edit.errors
    provider, report = providers.run_validation(providers.save_provider(edit))
    assert report.ok
    typo = versions.publish(provider, group="canary", auto_halt=True, auto_rollback=True)
    celery_worker.wait_until(
        lambda: rollout_of(typo).state == Rollout.State.HALTED, "the rollout to halt by itself"
    )
    assert "invalid_client" in rollout_of(typo).halt_reason

    back = ConfigVersion.objects.get(provider=provider, number=typo.number + 1)
    assert back.rollback_of_id == first.pk and back.created_by == "system"
    rolled_back = AuditEvent.objects.get(action="version.rolled_back")
    assert rolled_back.context["group"] == "canary" and rolled_back.context["instances"] == [
        "canary"
    ]
    celery_worker.wait_until(lambda: canary.verified(back.number), "the canary to verify again")
    canary_now = canary.refresh()
    assert (canary_now.applied_version_number, canary_now.verify_ok) == (back.number, True)
    assert canary.agent.env()["OAUTH2_PROVIDER_CLIENT_ID"] == APP_CLIENT
    rest_now = rest.refresh()
    assert (rest_now.assigned_version_id, rest_now.applied_version_number) == (first.pk, 1)


def test_a_first_group_that_stays_silent_halts_the_rollout_when_the_beat_finds_it_overdue(
    celery_worker, cognito, cognito_op, hosts
):
    """A pull-only canary whose agent never runs: the beat's sweep (a task on the real worker)
    halts the rollout once its deadline passed, naming who is missing."""
    canary = hosts(cognito, "canary", rollout_group="canary")
    hosts(cognito, "rest")
    version = versions.publish(cognito, group="canary", auto_halt=True)
    deadline = rollout_of(version).verify_deadline
    expected = version.created_at + timedelta(minutes=15)  # ROLLOUT_VERIFY_TIMEOUT_MINUTES
    assert abs((deadline - expected).total_seconds()) < 5

    tasks.halt_overdue_rollouts()  # the sweep, run here: not yet due, nothing happens
    assert rollout_of(version).state == Rollout.State.STAGED

    Rollout.objects.filter(pk=rollout_of(version).pk).update(
        verify_deadline=timezone.now() - timedelta(seconds=1)
    )
    tasks.halt_overdue_rollouts.delay()
    celery_worker.wait_until(
        lambda: rollout_of(version).state == Rollout.State.HALTED, "the sweep to halt it"
    )
    assert rollout_of(version).halt_reason.startswith(
        f"{canary.instance.name} has not reported a passing verification within"
    )


def test_the_sweep_names_the_timeout_and_leaves_verified_groups_alone(cognito, hosts):
    canary = hosts(cognito, "canary", rollout_group="canary")
    hosts(cognito, "rest")
    version = versions.publish(cognito, group="canary", auto_halt=True)
    deadline = rollout_of(version).verify_deadline
    assert verification.halt_overdue_rollouts(now=deadline - timedelta(seconds=1)) == []
    Instance.objects.filter(pk=canary.instance.pk).update(
        applied_version_number=1, applied_status="ok", verified_version_number=1, verify_ok=True
    )
    assert verification.halt_overdue_rollouts(now=deadline + timedelta(seconds=1)) == []
    Instance.objects.filter(pk=canary.instance.pk).update(verify_ok=False)
    [halted] = verification.halt_overdue_rollouts(now=deadline + timedelta(seconds=1))
    assert halted.halt_reason == (
        "canary has not reported a passing verification within 15 minutes"
    )


# --- the console's own probe ------------------------------------------------------------------


def test_the_console_verifies_instances_marked_for_it_after_they_apply(
    celery_worker, cognito, cognito_op, hosts, client, auditor_user
):
    """A pull agent that does not probe (--no-verify) and an instance marked `console_verifies`:
    the worker asks its Diffgram and the identity provider once it reports applied."""
    host = hosts(cognito, "lab", agent_verifies=False, console_verifies=True)
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    result = host.agent.pull()
    assert result.returncode == 0, result.stderr
    assert "verified" not in result.stdout
    celery_worker.wait_until(lambda: host.verified(1), "the console's probe")
    instance = host.refresh()
    assert (instance.verify_ok, instance.verified_by) == (True, "console")
    event = AuditEvent.objects.get(action="instance.verified")
    assert (event.actor_type, event.context["by"]) == ("system", "console")

    # The API carries it.
    token = token_for(auditor_user)
    listing = client.get(reverse("api-v1:instances"), HTTP_AUTHORIZATION=f"Bearer {token}").json()
    [row] = [i for i in listing["instances"] if i["name"] == "lab"]
    assert row["verified"]["version"] == 1 and row["verified"]["ok"] is True
    assert row["verified"]["by"] == "console"


def test_verify_now_asks_from_the_console_and_shows_what_failed(
    cognito, cognito_op, hosts, admin_client
):
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    assert host.agent.pull().returncode == 0
    host.diffgram.stop()  # Diffgram is down now

    page = admin_client.post(
        reverse("instance-verify", args=[host.instance.pk]), follow=True
    ).content.decode()
    assert "lab failed verification at diffgram: Diffgram did not answer" in page
    instance = host.refresh()
    assert (instance.verify_ok, instance.verify_step, instance.verified_by) == (
        False, "diffgram", "console",
    )  # fmt: skip
    fleet = admin_client.get(reverse("instances"), {"show": "not-verified"}).content.decode()
    assert 'data-instance="lab"' in fleet


def test_an_apply_error_in_the_first_group_halts_the_rollout(cognito, hosts):
    canary = hosts(cognito, "canary", rollout_group="canary")
    hosts(cognito, "rest")
    version = versions.publish(cognito, group="canary", auto_halt=True)
    verification.record_report(
        canary.instance, version_number=1, ok=False, detail="cannot write .env: disk full"
    )
    rollout = rollout_of(version)
    assert rollout.state == Rollout.State.HALTED
    assert rollout.halt_reason == "canary could not apply v1: cannot write .env: disk full"


def test_a_republish_of_the_same_content_keeps_its_verification(cognito, cognito_op, hosts):
    """The agent's poll answers 304 (it runs that content already) and probes nothing: the
    verification of the same content carries over to the new version number."""
    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    versions.publish(cognito)
    assert host.agent.pull().returncode == 0
    versions.publish(cognito)
    requests = host.diffgram.requests
    result = host.agent.pull()
    assert "unchanged at v1" in result.stdout
    instance = host.refresh()
    assert (instance.applied_version_number, instance.verified_version_number) == (2, 2)
    assert instance.verify_ok is True and host.diffgram.requests == requests


@pytest.fixture
def console_stand_in(hook_receiver):
    """Takes the agent's reports: answers each with the next of `statuses` (then 200)."""
    hook_receiver.url = hook_receiver.url.removesuffix("/hook")  # the agent adds the API path
    return hook_receiver


@pytest.fixture
def agent_pauses(monkeypatch):
    from agent import diffgram_sso_agent as agent

    waited = []
    monkeypatch.setattr(agent, "pause", waited.append)  # moves the agent's clock, no sleep
    return waited


PROBED = {"ok": True, "kind": "probe", "step": None, "detail": "offers sign-in", "steps": []}


def test_an_agent_tries_its_verification_report_again_while_the_console_is_busy(
    agent_pauses, console_stand_in
):
    from agent import diffgram_sso_agent as agent

    console_stand_in.statuses[:] = [503, 429, 502]
    agent.report(console_stand_in.url, 7, "dgi_token", 3, PROBED)
    reports = console_stand_in.payloads()
    assert len(reports) == 4  # three refusals, then recorded
    assert set(console_stand_in.paths) == {"/api/v1/instances/7/applied"}
    assert reports[-1] == {"version": 3, "status": "ok", "detail": "", "probe": PROBED}
    assert len(agent_pauses) == 3 and agent_pauses[0] < agent_pauses[-1]


def polling_version_3(console_stand_in, tmp_path, *extra):
    """The agent's arguments for one poll of instance 7, which the stand-in console answers
    with version 3 (no Diffgram to verify against)."""
    from agent import diffgram_sso_agent as agent

    console_stand_in.serve_get(
        "/api/v1/instances/7/config?format=env",
        "OAUTH2_PROVIDER_NAME=cognito\n",
        {"X-Config-Version": "3", "ETag": '"v3"'},
    )
    (tmp_path / "token").write_text("dgi_token")
    return agent.parse_args(
        ["pull", "--once", "--no-verify", "--console", console_stand_in.url, "--instance", "7",
         "--token-file", str(tmp_path / "token"), "--env-file", str(tmp_path / ".env"), *extra]
    )  # fmt: skip


def test_a_polling_agent_acknowledges_an_apply_again_while_the_console_is_busy(
    agent_pauses, console_stand_in, tmp_path
):
    """An acknowledgement is the only one the agent sends for a version it pulled: the next
    poll is a 304, so one lost to a busy console would leave the version never verified."""
    from agent import diffgram_sso_agent as agent

    args = polling_version_3(console_stand_in, tmp_path)
    console_stand_in.statuses[:] = [503, 502]
    assert agent.pull_once(args) == 3
    assert "OAUTH2_PROVIDER_NAME=cognito" in (tmp_path / ".env").read_text()
    assert console_stand_in.payloads() == [{"version": 3, "status": "ok", "detail": ""}] * 3
    assert len(agent_pauses) == 2  # two refusals waited out, then recorded


def test_a_polling_agent_that_cannot_apply_says_why_even_when_the_console_does_not_hear_it(
    agent_pauses, console_stand_in, tmp_path, capsys
):
    from agent import diffgram_sso_agent as agent

    args = polling_version_3(console_stand_in, tmp_path, "--on-change", "exit 3")
    console_stand_in.statuses[:] = [503]
    with pytest.raises(agent.AgentError, match="could not apply version 3: --on-change command"):
        agent.pull_once(args)
    assert console_stand_in.payloads() == [
        {"version": 3, "status": "error", "detail": "--on-change command exited with 3"}
    ]
    assert "warning: could not acknowledge version 3" in capsys.readouterr().out


def test_a_polling_agent_whose_acknowledgement_is_lost_still_verifies_what_it_applied(
    agent_pauses, console_stand_in, cognito, cognito_op, hosts
):
    """Its next poll is a 304: were the lost acknowledgement to end this one, the version
    would never be verified. The verification's report says it was applied, too."""
    from agent import diffgram_sso_agent as agent

    host = hosts(cognito, "lab")
    register_app_client(cognito_op, host.diffgram.url_base)
    version = versions.publish(cognito)
    instance = host.refresh()
    # The console's answer to the poll, as the console gives it, from the stand-in console.
    console_stand_in.serve_get(
        f"/api/v1/instances/{instance.pk}/config?format=env",
        diffgram.render_env(version.settings_for(instance)),
        {"X-Config-Version": str(version.number), "ETag": '"v1"',
         signin.VERIFY_HEADER: json.dumps(verification.expectations_for(instance, version))},
    )  # fmt: skip
    host.agent.console_url = console_stand_in.url
    console_stand_in.statuses[:] = [503] * agent.REPORT_ATTEMPTS  # every acknowledgement
    args = agent.parse_args(["pull", "--once", *host.agent.common_args()])
    assert agent.pull_once(args) == version.number
    *acknowledgements, verification_report = console_stand_in.payloads()
    assert acknowledgements == [{"version": 1, "status": "ok", "detail": ""}] * 9
    assert verification_report["version"] == 1 and verification_report["status"] == "ok"
    assert verification_report["probe"]["ok"] is True, verification_report["probe"]


def test_an_agent_does_not_retry_a_report_the_console_refuses(agent_pauses, console_stand_in):
    from agent import diffgram_sso_agent as agent

    console_stand_in.statuses[:] = [401]
    with pytest.raises(agent.AgentError, match="could not acknowledge version 3"):
        agent.report(console_stand_in.url, 7, "dgi_wrong", 3, PROBED)
    assert len(console_stand_in.received) == 1 and agent_pauses == []


def test_an_agent_gives_up_a_report_after_its_attempts(agent_pauses, console_stand_in):
    from agent import diffgram_sso_agent as agent

    console_stand_in.statuses[:] = [503] * agent.REPORT_ATTEMPTS
    with pytest.raises(agent.AgentError):
        agent.report(console_stand_in.url, 7, "dgi_token", 3, PROBED)
    assert len(console_stand_in.received) == agent.REPORT_ATTEMPTS
    # long enough for a console taking a whole fleet's reports at once, then the next sign-in's turn
    assert 60 < sum(agent_pauses) < 250  # about four minutes at most
