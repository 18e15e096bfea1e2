"""Pushes through a real Celery worker to real agent processes and to SSM on a moto server."""

import json
import time
import urllib.error
import urllib.request

import boto3
import pytest

from console import delivery, instances, tasks, versions
from console.models import AuditEvent, ConfigVersion, Instance, PushRequest
from tests.support import AgentProcess, free_port, make_instance

pytestmark = pytest.mark.django_db(transaction=True)


def push_state(instance):
    return (
        PushRequest.objects.filter(instance=instance)
        .order_by("-id")
        .values_list("state", flat=True)
        .first()
    )


def test_a_publish_reaches_the_agent_which_writes_and_acknowledges(
    celery_worker, keycloak_provider, webhook_instance
):
    instance, agent = webhook_instance
    agent.serve(agent.port)
    versions.publish(keycloak_provider, note="via webhook")
    # The agent's answer to the push is its acknowledgement: the worker records both.
    celery_worker.wait_until(
        lambda: (
            Instance.objects.get(pk=instance.pk).applied_version_number == 1
            and push_state(instance) == "succeeded"
        ),
        "the agent's acknowledgement and the push's success",
    )
    applied = Instance.objects.get(pk=instance.pk)
    assert applied.applied_detail == "Applied by the agent (its answer to the push)."
    assert agent.env()["KEY_CLOAK_MASTER_PASSWORD"] == "kc-master-canary"
    assert agent.env()["OAUTH2_PROVIDER_CLIENT_ID"] == "diffgram-pushed"  # its own client
    push = PushRequest.objects.get(instance=instance)
    assert (push.state, push.attempts) == ("succeeded", 1)
    attempt = push.attempt_log.get()
    assert attempt.ok and attempt.http_status == 200
    succeeded = AuditEvent.objects.get(action="push.succeeded")
    assert succeeded.context["version"] == 1 and succeeded.target_label == "pushed"

    # Pushing the same version again is harmless: nothing rewritten, nothing acknowledged twice.
    before = agent.env_file.stat().st_mtime_ns
    instances.repush(instance)
    celery_worker.wait_until(lambda: push_state(instance) == "succeeded", "the second push")
    assert agent.env_file.stat().st_mtime_ns == before
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1


def swept_until(worker, condition, what):
    """Wait for `condition` with the beat's outbox sweep running meanwhile (no beat process in
    the tests: it is sent to the worker between looks), as retries are the sweeper's."""

    def looked():
        if condition():
            return True
        tasks.sweep_outbox.delay()
        return False

    worker.wait_until(looked, what, 90)


def test_a_receiver_that_is_down_fails_after_retries_then_a_repush_delivers(
    celery_worker, keycloak_provider, webhook_instance
):
    instance, agent = webhook_instance  # not serving yet: connection refused
    versions.publish(keycloak_provider)
    swept_until(celery_worker, lambda: push_state(instance) == "failed", "the push to fail")
    push = PushRequest.objects.get(instance=instance)
    assert push.attempts == 3  # PUSH_MAX_ATTEMPTS in the test worker
    assert "connection refused" in push.last_error
    assert push.attempt_log.count() == 3
    failed = AuditEvent.objects.get(action="push.failed")
    assert "connection refused" in failed.context["error"]

    agent.serve(agent.port)
    instances.repush(instance)
    celery_worker.wait_until(
        lambda: Instance.objects.get(pk=instance.pk).applied_version_number == 1, "the re-push"
    )
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1


def test_a_bad_signature_is_a_permanent_failure(celery_worker, keycloak_provider, webhook_instance):
    instance, agent = webhook_instance
    agent.secret_file.write_text("not-the-signing-secret")
    agent.serve(agent.port)
    versions.publish(keycloak_provider)
    celery_worker.wait_until(lambda: push_state(instance) == "failed", "the push to fail")
    push = PushRequest.objects.get(instance=instance)
    assert push.attempts == 1  # not retried: it cannot succeed later
    assert push.last_error == 'The agent answered HTTP 401: {"error": "bad signature"}'
    assert not agent.env_file.exists()


def test_the_agent_refuses_stale_and_older_pushes(keycloak_provider, webhook_instance):
    instance, agent = webhook_instance
    agent.serve(agent.port)
    versions.publish(keycloak_provider)
    keycloak_provider.client_id = "second"
    keycloak_provider.save()
    second = versions.publish(keycloak_provider)
    first = second.provider.versions.get(number=1)
    instance.refresh_from_db()

    def send(version, age=0, sequence=None):
        if sequence is not None:  # as the console signed it back then
            instance.assignment_sequence = sequence
        body, headers = delivery.signed_webhook(instance, version)
        if age:
            old = str(int(time.time()) - age)
            headers["X-Diffgram-SSO-Timestamp"] = old
        request = urllib.request.Request(instance.webhook_url, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert send(second, age=301) == (401, {"error": "timestamp older than 5 minutes"})
    assert send(second, sequence=2) == (200, {"applied": 2, "changed": True})
    assert send(first, sequence=1) == (409, {"error": "assignment 1 is older than 2"})
    assert agent.env()["OAUTH2_PROVIDER_CLIENT_ID"] == "second"


def test_ssm_gets_one_parameter_per_variable(celery_worker, keycloak_provider, moto):
    instance, _ = make_instance(
        keycloak_provider, "aws-lab", push_target="ssm", ssm_region="eu-west-1"
    )
    versions.publish(keycloak_provider)
    celery_worker.wait_until(lambda: push_state(instance) == "succeeded", "the SSM push")
    ssm = boto3.client("ssm", region_name="eu-west-1", endpoint_url=moto)
    parameters = {
        p["Name"]: p
        for p in ssm.get_parameters_by_path(Path="/diffgram/aws-lab/", WithDecryption=True)[
            "Parameters"
        ]
    }
    assert parameters["/diffgram/aws-lab/KEYCLOAK_REALM"]["Value"] == "diffgram-realm"
    assert parameters["/diffgram/aws-lab/KEYCLOAK_REALM"]["Type"] == "String"
    assert parameters["/diffgram/aws-lab/OAUTH2_PROVIDER_CLIENT_ID"]["Value"] == "diffgram-aws-lab"
    secret = parameters["/diffgram/aws-lab/KEY_CLOAK_DIFFGRAM_PASSWORD"]
    assert (secret["Type"], secret["Value"]) == ("SecureString", "kc-diffgram-canary")

    # A variable that disappears from the configuration is removed from the prefix too.
    keycloak_provider.set_secret("keycloak_diffgram_password", "")
    keycloak_provider.save()
    versions.publish(keycloak_provider)
    celery_worker.wait_until(
        lambda: PushRequest.objects.filter(instance=instance, state="succeeded").count() == 2,
        "the second SSM push",
    )
    names = {p["Name"] for p in ssm.get_parameters_by_path(Path="/diffgram/aws-lab/")["Parameters"]}
    assert "/diffgram/aws-lab/KEY_CLOAK_DIFFGRAM_PASSWORD" not in names


def test_one_batch_with_mixed_outcomes_retries_only_the_transient_failure(
    celery_worker, keycloak_provider, live_server, tmp_path
):
    """A publish pushes its instances in batches (one task here): each instance keeps its own
    state, attempts and audit event, and only the transient failure is tried again."""
    agents = {}
    for name in ("healthy", "wrong-secret", "down"):
        (tmp_path / name).mkdir()
        port = free_port()
        instance, token = make_instance(
            keycloak_provider, name, push_target="webhook",
            webhook_url=f"http://127.0.0.1:{port}/",
        )  # fmt: skip
        agents[name] = (instance, AgentProcess(tmp_path / name, instance, token, live_server.url))
        agents[name][1].port = port
    try:
        agents["wrong-secret"][1].secret_file.write_text("not-the-signing-secret")
        for name in ("healthy", "wrong-secret"):
            agents[name][1].serve(agents[name][1].port)
        versions.publish(keycloak_provider)
        swept_until(
            celery_worker, lambda: not PushRequest.objects.filter(state="pending").exists(),
            "every push to end",
        )  # fmt: skip
        outcome = {
            name: PushRequest.objects.values_list("state", "attempts").get(instance=instance)
            for name, (instance, _) in agents.items()
        }
        assert outcome == {
            "healthy": ("succeeded", 1),
            "wrong-secret": ("failed", 1),  # permanent: not retried with the other
            "down": ("failed", 3),  # PUSH_MAX_ATTEMPTS in the test worker
        }
        assert PushRequest.objects.get(instance=agents["down"][0]).attempt_log.count() == 3
        events = AuditEvent.objects.filter(action__startswith="push.")
        assert sorted(events.values_list("action", "target_label")) == [
            ("push.failed", "down"),
            ("push.failed", "wrong-secret"),
            ("push.succeeded", "healthy"),
        ]
        assert agents["healthy"][1].env()["KEY_CLOAK_MASTER_PASSWORD"]
        assert AuditEvent.objects.filter(action="instance.applied").count() == 1
    finally:
        for _, agent in agents.values():
            agent.stop()


@pytest.mark.parametrize(
    ("answer", "applied"),
    [
        (b'{"applied": 3, "changed": true}', True),
        (b'{"applied": 3, "changed": false}', True),  # a push sent again: it runs v3
        (b'{"applied": 2}', False),
        (b"{}", False),  # a 200 from something that is not our agent proves nothing
        (b"ok", False),
    ],
)
def test_only_an_answer_naming_the_version_counts_as_applied(answer, applied):
    version = ConfigVersion(number=3)
    assert bool(delivery._applied_by_agent(answer, version)) is applied
