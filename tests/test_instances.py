"""Registering Diffgram instances and the fleet page: push targets, webhook URLs, and what each
row says about the instance."""

import html
import re
from urllib.parse import parse_qsl

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from console import instances, versions
from console.instance_forms import InstanceForm
from console.models import AuditEvent, Instance
from console.views.instances import PAGE_SIZE
from tests.support import make_instance, require_component

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
    from console import instances
    from console.models import Instance

    instance = instances.with_state(Instance.objects.filter(name=name)).get()
    if instances.drift_reasons(instance):
        return "drift"
    return "in sync" if instance.in_sync else "waiting"


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


# --- the fleet page: paged, searched and filtered by the database ---------------------------------


def fleet_page(client, **query):
    """(the instance names on the page in their order, the page's HTML)."""
    page = client.get(reverse("instances"), query).content.decode()
    return re.findall(r'data-instance="([^"]+)"', page), page


def link(page, label):
    """The query of the pager link with this label, or None."""
    found = re.search(rf'<a href="\?([^"]*)">{label}</a>', page)
    return dict(parse_qsl(html.unescape(found.group(1)))) if found else None


def test_the_fleet_page_walks_the_whole_fleet_in_order_a_page_at_a_time(
    admin_client, keycloak_provider
):
    for number in range(70):
        make_instance(keycloak_provider, f"node-{number:03}", rollout_group="default")
    for number in range(40):
        make_instance(keycloak_provider, f"canary-{number:03}", rollout_group="canary")
    expected = [f"canary-{n:03}" for n in range(40)] + [f"node-{n:03}" for n in range(70)]
    seen, query, pages = [], {}, []
    while query is not None:
        names, page = fleet_page(admin_client, **query)
        assert len(names) <= PAGE_SIZE
        seen += names
        pages.append(names)
        query = link(page, "Next →")
    assert seen == expected  # every instance once, across the groups, in the fleet's order
    assert len(pages) == 3 and link(page, "Next →") is None
    back = link(page, "← Previous")
    assert fleet_page(admin_client, **back)[0] == pages[1]
    # A bound whose instance is gone is no error: the first page.
    assert fleet_page(admin_client, after="gone")[0] == pages[0]


def test_the_fleet_is_searched_by_name_url_group_and_provider(admin_client, keycloak_provider):
    make_instance(keycloak_provider, "berlin-1", url_base="https://labelling.corp.test/")
    make_instance(keycloak_provider, "paris-1", rollout_group="canary")
    make_instance(None, "tokyo-1")
    assert fleet_page(admin_client, q="BERLIN")[0] == ["berlin-1"]
    assert fleet_page(admin_client, q="labelling.corp")[0] == ["berlin-1"]
    assert fleet_page(admin_client, q="canary")[0] == ["paris-1"]
    # In the fleet's order: by group (canary before default), then name.
    assert fleet_page(admin_client, q=keycloak_provider.name)[0] == ["paris-1", "berlin-1"]
    names, page = fleet_page(admin_client, q="nowhere")
    assert names == [] and "No instances match." in page
    # The counts, loaded after the page, are those of the search.
    counts = admin_client.get(reverse("instance-counts"), {"q": "-1"}).content.decode()
    assert "3 instances matching “-1”" in counts
    assert 'hx-get="/instances/counts/?q=-1"' in fleet_page(admin_client, q="-1")[1]


def test_the_fleet_is_filtered_by_state_with_counts_from_the_database(
    admin_client, keycloak_provider
):
    make_instance(keycloak_provider, "broken")
    make_instance(keycloak_provider, "pulling")
    make_instance(None, "spare")
    versions.publish(keycloak_provider)
    Instance.objects.filter(name="broken").update(
        applied_version_number=1, applied_status="error", applied_detail="disk full"
    )
    Instance.objects.filter(name="pulling").update(
        applied_version_number=1, applied_status="ok", last_pull_at=timezone.now()
    )
    assert instances.fleet_counts() == {
        "all": 3, "not_signed_in": 2, "failing": 1, "drifting": 0,
        "blocked": 1,  # Keycloak used directly: Diffgram's own defects block sign-in
        "not_verified": 0, "in_sync": 0, "unassigned": 1,
    }  # fmt: skip
    counts = admin_client.get(reverse("instance-counts")).content.decode()
    assert "failing (1)" in counts and "blocked (1)" in counts and "not signed in (2)" in counts
    assert "hx-get" not in counts  # loaded once
    assert fleet_page(admin_client, state="failing")[0] == ["broken"]
    assert fleet_page(admin_client, state="blocked")[0] == ["pulling"]
    assert fleet_page(admin_client, state="unassigned")[0] == ["spare"]
    assert fleet_page(admin_client, show="not-verified")[0] == ["broken", "pulling"]
    refused = admin_client.get(reverse("instances"), {"state": "sideways"}).content.decode()
    assert "Select a valid choice" in refused


def test_a_search_on_postgresql_can_read_the_trigram_index(keycloak_provider):
    require_component(
        connection.vendor == "postgresql",
        "PostgreSQL (the search index is PostgreSQL's)",
        "run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/…",
    )
    make_instance(keycloak_provider, "lab-4242")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: show it *can* be used
        plan = instances.search(Instance.objects.order_by(), "LAB-42").explain()
    assert "fleet_search" in plan  # migration 0018 indexes exactly what search() looks in
    assert [i.name for i in instances.search(Instance.objects.all(), "b-42")] == ["lab-4242"]
