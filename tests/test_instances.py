"""Registering Diffgram instances and the fleet page: push targets, webhook URLs, and what each
row says about the instance."""

import pytest
from django.urls import reverse

from console import instances
from console.instance_forms import InstanceForm
from console.models import AuditEvent, Instance
from tests.support import make_instance

pytestmark = pytest.mark.django_db


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


def test_a_pull_only_instance_shows_that_it_pulls(admin_client, keycloak_provider):
    make_instance(keycloak_provider, "puller")
    page = admin_client.get(reverse("instances")).content.decode()
    assert "— (pulls)" in page and "None (the instance pulls)" not in page
