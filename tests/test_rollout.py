"""Instances, immutable versions, staged rollout, rollback, the outbox and the fleet view."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from console import delivery, instances, tasks, versions
from console.models import (
    AuditEvent,
    ConfigVersion,
    Instance,
    PushRequest,
    hash_token,
)
from tests.support import make_instance, stored_cognito_provider

pytestmark = pytest.mark.django_db


def actions():
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


class TestInstances:
    def test_registering_shows_the_token_once_and_stores_only_its_hash(
        self, admin_client, keycloak_provider
    ):
        response = admin_client.post(
            reverse("instance-create"),
            {
                "name": "lab",
                "url_base": "https://lab.example.test/",
                "shape": "compose",
                "rollout_group": "canary",
                "provider": keycloak_provider.pk,
                "push_target": "none",
            },
        )
        instance = Instance.objects.get(name="lab")
        # Redirected after the POST: a reload neither registers again nor shows it twice.
        shown_at = reverse("instance-credentials", args=[instance.pk])
        assert (response.status_code, response["Location"]) == (302, shown_at)
        response = admin_client.get(shown_at)
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"
        token = response.context["token"]
        assert token.startswith("dgi_") and token in response.content.decode()
        reload = admin_client.get(shown_at, follow=True).content.decode()
        assert token not in reload and "shown only once, right after it is made" in reload
        assert token not in str(dict(admin_client.session))
        assert instance.token_hash == hash_token(token)
        assert token not in str(Instance.objects.filter(pk=instance.pk).values().get())
        assert instance.token_matches(token) and not instance.token_matches(token + "x")
        page = admin_client.get(reverse("instance-detail", args=[instance.pk])).content.decode()
        assert token not in page
        event = AuditEvent.objects.get(action="instance.created")
        assert event.changes["rollout_group"] == [None, "canary"]
        assert token not in str(event.changes)

    def test_url_base_must_end_with_a_slash_and_targets_need_their_fields(
        self, admin_client, keycloak_provider
    ):
        response = admin_client.post(
            reverse("instance-create"),
            {
                "name": "lab",
                "url_base": "https://lab.example.test",
                "shape": "compose",
                "rollout_group": "default",
                "provider": keycloak_provider.pk,
                "push_target": "webhook",
                "webhook_url": "",
            },
        )
        errors = response.context["form"].errors
        assert "End URL_BASE with /" in errors["url_base"][0]
        assert errors["webhook_url"] == ["Enter the agent's webhook URL."]
        assert not Instance.objects.exists()

    def test_rotating_the_token_invalidates_the_old_one(self, admin_client, keycloak_provider):
        instance, old = make_instance(keycloak_provider, "lab")
        response = admin_client.post(
            reverse("instance-rotate-token", args=[instance.pk]), follow=True
        )
        new = response.context["token"]
        instance.refresh_from_db()
        assert instance.token_matches(new) and not instance.token_matches(old)
        assert actions()[-1] == "instance.token_rotated"

    def test_rotating_the_signing_secret(self, admin_client, keycloak_provider):
        instance, _ = make_instance(keycloak_provider, "lab")
        old = instance.signing_secret()
        response = admin_client.post(
            reverse("instance-rotate-signing-secret", args=[instance.pk]), follow=True
        )
        instance.refresh_from_db()
        assert response.context["signing_secret"] == instance.signing_secret() != old
        assert actions()[-1] == "instance.signing_secret_rotated"

    def test_edit_and_delete_are_audited(self, admin_client, keycloak_provider):
        instance, _ = make_instance(keycloak_provider, "lab")
        data = {
            "name": "lab",
            "url_base": "https://lab2.example.test/",
            "shape": "helm",
            "rollout_group": "default",
            "provider": keycloak_provider.pk,
            "push_target": "none",
        }
        admin_client.post(reverse("instance-edit", args=[instance.pk]), data)
        changed = AuditEvent.objects.get(action="instance.changed")
        assert changed.changes == {
            "shape": ["compose", "helm"],
            "url_base": ["https://lab.example.test/", "https://lab2.example.test/"],
        }
        admin_client.post(reverse("instance-delete", args=[instance.pk]))
        assert not Instance.objects.exists()
        assert actions()[-1] == "instance.deleted"

    def test_create_instance_command_prints_id_and_token(self, keycloak_provider):
        out = StringIO()
        call_command(
            "create_instance", "lab", "--url-base", "https://lab.example.test/",
            "--provider", "Lab Keycloak", "--group", "canary",
            "--push", "ssm:eu-west-1:/dg/lab/", stdout=out,
        )  # fmt: skip
        instance = Instance.objects.get(name="lab")
        lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines() if ": " in line)
        assert lines["instance id"] == str(instance.pk)
        assert instance.token_matches(lines["token"])
        assert (instance.push_target, instance.ssm_region, instance.ssm_prefix) == (
            "ssm", "eu-west-1", "/dg/lab/",
        )  # fmt: skip
        with pytest.raises(CommandError, match="--push 'ftp:x'"):
            call_command("create_instance", "b", "--url-base", "https://b/", "--provider",
                         "Lab Keycloak", "--push", "ftp:x")  # fmt: skip


class TestPublishing:
    def test_publishing_creates_an_immutable_version_for_every_instance(self, keycloak_provider):
        lab, _ = make_instance(keycloak_provider, "lab")
        prod, _ = make_instance(keycloak_provider, "prod", push_target="webhook",
                                webhook_url="http://127.0.0.1:9/")  # fmt: skip
        version = versions.publish(keycloak_provider, note="first rollout")
        assert version.number == 1
        assert version.settings["OAUTH2_PROVIDER_NAME"] == "keycloak"
        assert "KEY_CLOAK_MASTER_PASSWORD" not in version.settings  # kept encrypted apart
        assert version.all_settings()["KEY_CLOAK_MASTER_PASSWORD"] == "kc-master-canary"
        assert "kc-master-canary" not in str(
            ConfigVersion.objects.filter(pk=version.pk).values().get()
        )
        for instance in (lab, prod):
            instance.refresh_from_db()
            assert instance.assigned_version == version
        # The outbox: one push request for the pushed instance, none for the pull-only one.
        assert list(PushRequest.objects.values_list("instance__name", "state")) == [
            ("prod", "pending")
        ]
        version.note = "rewritten"
        with pytest.raises(ValueError, match="immutable"):
            version.save()
        event = AuditEvent.objects.get(action="version.published")
        assert event.context["instances"] == ["lab", "prod"]
        assert event.context["note"] == "first rollout"

    def test_a_failing_validation_refuses_to_publish(self, admin_client, keycloak_provider, idp):
        make_instance(keycloak_provider, "lab")
        idp.json("/auth/realms/diffgram-realm/protocol/openid-connect/certs", {"keys": []})
        admin_client.post(reverse("provider-validate", args=[keycloak_provider.pk]))
        response = admin_client.post(
            reverse("provider-publish", args=[keycloak_provider.pk]), follow=True
        )
        assert b"Not published: The latest validation failed (jwks.keys)" in response.content
        assert not ConfigVersion.objects.exists()

    def test_publish_command_prints_the_number_or_the_failing_checks(self, keycloak_provider):
        make_instance(keycloak_provider, "lab")
        out = StringIO()
        call_command("publish", "Lab Keycloak", "--note", "cli", stdout=out)
        assert out.getvalue().strip() == "1"
        keycloak_provider.validation_passed = False
        keycloak_provider.validation_checks = [
            {"id": "jwks.keys", "status": "fail", "message": "The JWKS has no keys."}
        ]
        keycloak_provider.save()
        err = StringIO()
        with pytest.raises(CommandError) as caught:
            call_command("publish", "Lab Keycloak", stderr=err)
        assert caught.value.returncode == 1
        assert "FAIL  jwks.keys" in err.getvalue()

    def test_a_rolled_back_publish_leaves_nothing_behind(self, keycloak_provider):
        make_instance(keycloak_provider, "lab", push_target="webhook",
                      webhook_url="http://127.0.0.1:9/")  # fmt: skip
        with pytest.raises(RuntimeError), transaction.atomic():
            versions.publish(keycloak_provider)
            raise RuntimeError("something after the publish failed")
        assert not ConfigVersion.objects.exists()
        assert not PushRequest.objects.exists()
        assert not AuditEvent.objects.filter(action="version.published").exists()

    def test_staged_rollout_continue_and_halt(self, admin_client, keycloak_provider):
        canary, _ = make_instance(keycloak_provider, "canary-1", rollout_group="canary")
        prod, _ = make_instance(keycloak_provider, "prod-1")
        first = versions.publish(keycloak_provider, group="canary")
        canary.refresh_from_db(), prod.refresh_from_db()
        assert canary.assigned_version == first and prod.assigned_version is None
        admin_client.post(reverse("rollout-continue", args=[keycloak_provider.pk, 1]))
        prod.refresh_from_db()
        assert prod.assigned_version == first

        second = versions.publish(keycloak_provider, group="canary")
        admin_client.post(reverse("rollout-halt", args=[keycloak_provider.pk, 2]))
        canary.refresh_from_db(), prod.refresh_from_db()
        assert canary.assigned_version == second and prod.assigned_version == first
        second.rollout.refresh_from_db()
        assert second.rollout.state == "halted"
        response = admin_client.post(
            reverse("rollout-continue", args=[keycloak_provider.pk, 2]), follow=True
        )
        assert b"is halted" in response.content
        assert "rollout.continued" in actions()
        assert actions()[-1] == "rollout.halted"  # the refused continue recorded nothing

    def test_rollback_publishes_the_old_content_as_a_new_version(
        self, admin_client, keycloak_provider
    ):
        lab, _ = make_instance(keycloak_provider, "lab")
        v1 = versions.publish(keycloak_provider)
        keycloak_provider.client_id = "diffgram-v2"
        keycloak_provider.save()
        versions.publish(keycloak_provider)
        response = admin_client.post(
            reverse("version-rollback", args=[keycloak_provider.pk, 1]), follow=True
        )
        v3 = ConfigVersion.objects.get(number=3)
        assert v3.rollback_of == v1
        assert v3.all_settings() == v1.all_settings()
        lab.refresh_from_db()
        assert lab.assigned_version == v3
        assert b"Published v3 with the content of v1" in response.content
        event = AuditEvent.objects.get(action="version.rolled_back")
        assert event.context["to"] == 1

    def test_the_diff_shows_secrets_only_as_changed(self, admin_client, keycloak_provider):
        make_instance(keycloak_provider, "lab")
        versions.publish(keycloak_provider)
        keycloak_provider.client_id = "diffgram-v2"
        keycloak_provider.set_secret("keycloak_diffgram_password", "second-secret-canary")
        keycloak_provider.save()
        versions.publish(keycloak_provider)
        response = admin_client.get(
            reverse("version-diff", args=[keycloak_provider.pk]), {"from": 1, "to": 2}
        )
        rows = {row["name"]: row for row in response.context["diff"]}
        assert rows["OAUTH2_PROVIDER_CLIENT_ID"] == {
            "name": "OAUTH2_PROVIDER_CLIENT_ID", "state": "changed",
            "before": "diffgram-{instance}", "after": "diffgram-v2",
        }  # fmt: skip
        assert rows["KEY_CLOAK_DIFFGRAM_PASSWORD"]["state"] == "changed"
        assert rows["KEY_CLOAK_MASTER_PASSWORD"]["state"] == "unchanged"
        page = response.content.decode()
        assert "second-secret-canary" not in page and "kc-diffgram-canary" not in page

    def test_a_new_instance_gets_the_current_version(self, keycloak_provider):
        make_instance(keycloak_provider, "lab")
        version = versions.publish(keycloak_provider)
        late, _ = make_instance(keycloak_provider, "late")
        assert late.assigned_version == version


class TestPublishConfirmation:
    """Publishing from the page shows the diff and the instances reached before it publishes."""

    def publish(self, client, provider, **data):
        return client.post(reverse("provider-publish", args=[provider.pk]), data)

    def test_the_first_step_shows_the_diff_and_the_reach_and_publishes_nothing(
        self, admin_client, keycloak_provider
    ):
        make_instance(keycloak_provider, "lab", rollout_group="canary")
        make_instance(keycloak_provider, "prod", rollout_group="main")
        response = self.publish(admin_client, keycloak_provider, group="canary", note="try it")
        assert response.status_code == 200
        assert not ConfigVersion.objects.exists()
        page = response.content.decode()
        assert "Publish v1 of Lab Keycloak?" in page
        now, later = page.split('class="instances-now"')[1].split('class="instances-later"')
        assert "lab" in now and "prod" not in now and "prod" in later
        assert "First to group <strong>canary</strong>" in page
        preview = response.context["preview"]
        rows = {row["name"]: row for row in preview.diff}
        assert rows["KEYCLOAK_REALM"]["state"] == "added"
        assert rows["KEY_CLOAK_MASTER_PASSWORD"]["after"] == "[secret]"
        assert "kc-master-canary" not in page  # secrets only as changed or not
        assert '<blockquote class="why-note">try it</blockquote>' in page
        unexplained = self.publish(admin_client, keycloak_provider, group="canary").content
        assert "No reason given: the history will say only that you published it" in (
            unexplained.decode()
        )

        confirmed = self.publish(
            admin_client, keycloak_provider, group="canary", note="try it", confirm="yes",
            revision=str(keycloak_provider.revision),
        )  # fmt: skip
        assert confirmed.status_code == 302
        version = ConfigVersion.objects.get()
        assert (version.number, version.note, version.rollout.first_group) == (
            1,
            "try it",
            "canary",
        )

    def test_the_second_version_shows_what_changed_since_the_first(
        self, admin_client, keycloak_provider
    ):
        make_instance(keycloak_provider, "lab")
        versions.publish(keycloak_provider)
        keycloak_provider.scopes = "openid email profile"
        keycloak_provider.save()
        preview = self.publish(admin_client, keycloak_provider).context["preview"]
        assert preview.number == 2 and preview.previous.number == 1
        assert {row["state"] for row in preview.diff} == {"unchanged"}  # scopes are not sent
        assert (
            "To every instance using Lab Keycloak at once."
            in self.publish(admin_client, keycloak_provider).content.decode()
        )

    def test_a_group_holding_every_instance_says_there_is_no_stage(
        self, admin_client, keycloak_provider
    ):
        make_instance(keycloak_provider, "lab", rollout_group="canary")
        make_instance(keycloak_provider, "prod", rollout_group="canary")
        page = self.publish(admin_client, keycloak_provider, group="canary").content.decode()
        assert "Every instance using Lab Keycloak is in group canary:" in page
        assert "no later stage to stop at" in page

    def test_a_provider_changed_during_review_is_shown_again_not_published(
        self, admin_client, keycloak_provider
    ):
        make_instance(keycloak_provider, "lab")
        reviewed = keycloak_provider.revision
        keycloak_provider.revision += 1  # as an edit by someone else does
        keycloak_provider.save()
        response = self.publish(
            admin_client, keycloak_provider, confirm="yes", revision=str(reviewed)
        )
        assert response.status_code == 200
        assert "changed while you were reviewing" in response.content.decode()
        assert not ConfigVersion.objects.exists()


class TestOutbox:
    def test_the_sweeper_re_dispatches_requests_that_never_started(
        self, keycloak_provider, settings, django_capture_on_commit_callbacks
    ):
        make_instance(keycloak_provider, "prod", push_target="webhook",
                      webhook_url="http://127.0.0.1:9/")  # fmt: skip
        with django_capture_on_commit_callbacks() as publish_callbacks:
            versions.publish(keycloak_provider)
        sends = [callback for callback in publish_callbacks if callback.__name__ == "send"]
        assert len(sends) == 1  # the push is sent only after the commit
        with django_capture_on_commit_callbacks():
            assert tasks.sweep_outbox() == 0  # not overdue yet: the task may be on its way
        PushRequest.objects.update(due_at=timezone.now() - timedelta(seconds=1))  # a minute on
        with django_capture_on_commit_callbacks() as sweep_callbacks:
            assert tasks.sweep_outbox() == 1
        assert [callback.__name__ for callback in sweep_callbacks] == ["send"]

    def test_a_started_push_that_went_silent_is_swept_but_not_one_in_progress(
        self, keycloak_provider, django_capture_on_commit_callbacks
    ):
        """A batch cut off by its time limit (or lost with its worker) leaves its requests
        pending with attempts counted; the sweeper sends them again once their lease ran out."""
        make_instance(keycloak_provider, "silent", push_target="webhook",
                      webhook_url="http://127.0.0.1:9/")  # fmt: skip
        make_instance(keycloak_provider, "busy", push_target="webhook",
                      webhook_url="http://127.0.0.1:9/")  # fmt: skip
        versions.publish(keycloak_provider)
        delivery._start_attempts(PushRequest.objects.values_list("pk", flat=True))
        started = {
            p.instance.name: p.due_at for p in PushRequest.objects.select_related("instance")
        }
        # Leased for delivery.LEASE_SECONDS, which the batch renews while it holds them.
        assert max(started.values()) - timezone.now() <= timedelta(seconds=delivery.LEASE_SECONDS)
        now = timezone.now()
        silent = PushRequest.objects.get(instance__name="silent")
        PushRequest.objects.filter(pk=silent.pk).update(due_at=now - timedelta(seconds=1))
        cache.delete(delivery.lease_key(silent.pk))  # its lease ran out: nobody renewed it
        with django_capture_on_commit_callbacks():
            assert tasks.sweep_outbox() == 1  # "busy" is still within its deadline
        assert PushRequest.objects.get(instance__name="silent").due_at > now

    def test_the_attempt_budget_is_counted_per_request(self, keycloak_provider, settings):
        """A request swept again after two tries gets one more, not a fresh budget."""
        settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
        settings.PUSH_MAX_ATTEMPTS = 3
        make_instance(keycloak_provider, "refusing", push_target="webhook",
                      webhook_url="http://127.0.0.1:9/")  # fmt: skip
        versions.publish(keycloak_provider)  # the test's transaction never commits: no task
        push = PushRequest.objects.get(state="pending")
        PushRequest.objects.filter(pk=push.pk).update(attempts=1)
        retries = delivery.deliver([push.pk])  # 2nd try: connection refused, retry
        assert [pk for pk, _ in retries] == [push.pk]
        assert delivery.deliver([push.pk]) == []  # 3rd and last
        push.refresh_from_db()
        assert (push.state, push.attempts) == ("failed", 3)
        assert "connection refused" in push.last_error


class TestFleetView:
    def test_it_flags_drift_and_polls_while_a_push_is_in_flight(
        self, admin_client, keycloak_provider
    ):
        lab, _ = make_instance(keycloak_provider, "lab")
        prod, _ = make_instance(keycloak_provider, "prod", push_target="webhook",
                                webhook_url="http://127.0.0.1:9/")  # fmt: skip
        versions.publish(keycloak_provider)
        page = admin_client.get(reverse("instances")).content.decode()
        assert 'hx-trigger="every 2s"' in page
        assert "drift: applied ≠ assigned, not pulled recently" in page  # lab
        instances.record_applied(prod, version_number=1, ok=True, detail="")
        PushRequest.objects.update(state="succeeded")
        fragment = admin_client.get(reverse("instances"), HTTP_HX_REQUEST="true")
        html = fragment.content.decode()
        assert "<html" not in html
        # Nothing in flight, and Keycloak's v1 is blocked by a Diffgram defect: no sign-in to
        # wait for either. Stop polling.
        assert 'hx-trigger="every 2s"' not in html
        assert "in sync" in html

    def test_it_polls_while_a_new_version_awaits_its_sign_in(self, admin_client):
        cognito = stored_cognito_provider()
        lab, _ = make_instance(cognito, "lab")
        versions.publish(cognito)

        def polls():
            page = admin_client.get(reverse("instances"), HTTP_HX_REQUEST="true")
            return 'hx-trigger="every 2s"' in page.content.decode()

        instances.record_applied(lab, version_number=1, ok=True, detail="")
        assert polls()  # applied; the agent's or the console's sign-in is seconds away
        Instance.objects.update(
            verified_version_number=1, verify_ok=True, verify_kind="signin", verified_by="console"
        )
        assert not polls()
        Instance.objects.update(verify_kind="probe")  # offered sign-in, not signed in yet
        assert polls()
        # Past ROLLOUT_VERIFY_TIMEOUT_MINUTES nothing more is expected by itself.
        ConfigVersion.objects.update(created_at=timezone.now() - timedelta(minutes=16))
        assert not polls()

    def test_it_runs_a_constant_number_of_queries(
        self, admin_client, keycloak_provider, django_assert_max_num_queries
    ):
        for number in range(3):
            make_instance(keycloak_provider, f"i{number}")
        versions.publish(keycloak_provider)
        with django_assert_max_num_queries(8) as few:
            admin_client.get(reverse("instances"))
        for number in range(3, 15):
            make_instance(keycloak_provider, f"i{number}")
        with django_assert_max_num_queries(len(few.captured_queries)):
            admin_client.get(reverse("instances"))


def test_comparing_versions_starts_with_the_previous_against_the_latest(
    admin_client, keycloak_provider
):
    make_instance(keycloak_provider, "lab")
    for _ in range(3):
        versions.publish(keycloak_provider)
    response = admin_client.get(reverse("version-diff", args=[keycloak_provider.pk]))
    assert (response.context["old"].number, response.context["new"].number) == (2, 3)
    assert response.context["diff"]
