"""Correctness (issue 16): states the fleet view and the API must get right, each reproduced
first. The fault drills are in tests/test_fault_drills.py."""

import pytest
from django.urls import reverse

from console import outbound
from console.models import AuditEvent, Instance
from tests.support import make_instance

pytestmark = pytest.mark.django_db


# --- 10. an answer read in full is an answer ------------------------------------------------------


def test_a_complete_answer_read_after_the_deadline_is_not_lost(idp, monkeypatch):
    """A worker paused while the agent answered (or an agent slower than the deadline to
    start answering) must not turn a delivered push into a failure that is sent again."""
    monkeypatch.setattr(outbound, "TOTAL_DEADLINE", 0.5)
    idp.json("/late", {"applied": 1}, delay=1.0)  # whole, but after the deadline
    response = outbound.get(idp.url("/late"))
    assert (response.status, response.json()) == (200, {"applied": 1})


def test_an_answer_still_arriving_after_the_deadline_is_abandoned(idp, monkeypatch):
    monkeypatch.setattr(outbound, "TOTAL_DEADLINE", 0.5)
    idp.slow_body("/dripping", b"x" * 200_000, pause=0.3)
    with pytest.raises(outbound.OutboundError, match="took longer than 0.5 s") as caught:
        outbound.get(idp.url("/dripping"))
    assert not caught.value.permanent


# --- 11. the pull API while the cache is down -----------------------------------------------------


def test_a_bad_token_gets_401_not_500_while_the_cache_is_down(client, keycloak_provider, settings):
    from console import versions

    instance, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    url = reverse("api-pull-config", args=[instance.pk])
    assert client.get(url, HTTP_AUTHORIZATION="Bearer dgi_wrong").status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


# --- 1, 2. "in sync" exactly when the instance runs the assigned content ----------------------


def fleet_state(name):
    from console.views.instances import fleet_rows

    row = next(r for r in fleet_rows() if r["instance"].name == name)
    return "drift" if row["drift"] else ("in sync" if row["instance"].in_sync else "waiting")


@pytest.mark.django_db(transaction=True)
def test_the_fleet_is_in_sync_exactly_when_each_instance_runs_the_assigned_content(
    keycloak_provider, webhook_instance, moto, tmp_path, live_server, monkeypatch
):
    from console import delivery, tasks, versions
    from console.models import PushRequest
    from tests.support import AgentProcess

    monkeypatch.setattr(tasks, "dispatch_after_commit", lambda ids: None)  # delivered here
    pushed, agent = webhook_instance
    agent.serve(agent.port)
    (tmp_path / "pull").mkdir()
    pulled, token = make_instance(keycloak_provider, "pulled", rollout_group="canary")
    puller = AgentProcess(tmp_path / "pull", pulled, token, live_server.url)
    ssm, _ = make_instance(keycloak_provider, "ssm", push_target="ssm", ssm_region="eu-west-1")

    def everyone_acts():
        pending = PushRequest.objects.filter(state="pending").values_list("pk", flat=True)
        delivery.deliver(list(pending))
        assert puller.pull().returncode == 0

    def states():
        return {name: fleet_state(name) for name in ("pushed", "pulled", "ssm")}

    versions.publish(keycloak_provider)
    assert states() == dict.fromkeys(("pushed", "pulled", "ssm"), "drift")  # not applied yet
    everyone_acts()
    assert states() == dict.fromkeys(("pushed", "pulled", "ssm"), "in sync")

    versions.publish(keycloak_provider)  # v2: the same content again
    assert states() == dict.fromkeys(("pushed", "pulled", "ssm"), "drift")
    everyone_acts()  # the pull agent gets 304: it already runs that content
    assert states() == dict.fromkeys(("pushed", "pulled", "ssm"), "in sync")

    keycloak_provider.keycloak_realm = "other-realm"
    keycloak_provider.save()
    versions.publish(keycloak_provider, group="canary")  # v3 to the canary (pulled) only
    everyone_acts()
    assert states() == dict.fromkeys(("pushed", "pulled", "ssm"), "in sync")
    assert puller.env()["KEYCLOAK_REALM"] == "other-realm"

    versions.rollback(keycloak_provider.versions.get(number=2))  # v4 with v2's content
    everyone_acts()
    assert states() == dict.fromkeys(("pushed", "pulled", "ssm"), "in sync")
    instances = {i.name: i for i in Instance.objects.all()}
    assert {i.applied_version_number for i in instances.values()} == {4}
    assert puller.env()["KEYCLOAK_REALM"] == "diffgram-realm"
    via = AuditEvent.objects.filter(action="instance.applied", context__version=4)
    assert {e.target_label for e in via} == {"pushed", "pulled", "ssm"}


# --- 4. the implicit grant ---------------------------------------------------------------------


def test_inspect_warns_about_the_implicit_grant_and_fix_removes_it(moto, admin_client):
    from console import cognito
    from tests.support import GOOD_CLIENT, aws, make_pool, make_provider

    pool, app = make_pool(moto, {**GOOD_CLIENT, "AllowedOAuthFlows": ["code", "implicit"]})
    provider = make_provider(pool, app)
    checks = {c.id: c for c in cognito.inspect(provider).checks}
    assert checks["oauth.implicit"].status == "warn"
    page = admin_client.get(reverse("cognito-fix", args=[provider.pk])).content.decode()
    assert "The implicit grant is removed" in page
    kept = admin_client.get(reverse("cognito-fix", args=[provider.pk]), {"keep_implicit": "1"})
    assert "The implicit grant stays enabled" in kept.content.decode()
    admin_client.post(reverse("cognito-fix", args=[provider.pk]), {"keep_implicit": "0"})
    client = aws(moto).describe_user_pool_client(UserPoolId=pool, ClientId=app["ClientId"])
    assert client["UserPoolClient"]["AllowedOAuthFlows"] == ["code"]
    event = AuditEvent.objects.get(action="cognito.client_fixed")
    assert event.changes["AllowedOAuthFlows"] == [["code", "implicit"], ["code"]]


# --- 5. the SAML federation's app-client change is in the diff ------------------------------------


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


# --- 6. the Instances page says what a pull-only instance's push column means -----------------


def test_a_pull_only_instance_shows_that_it_pulls(admin_client, keycloak_provider):
    make_instance(keycloak_provider, "puller")
    page = admin_client.get(reverse("instances")).content.decode()
    assert "— (pulls)" in page and "None (the instance pulls)" not in page
