"""Alerts by email and webhook, end to end: the condition happens, the console queues the alert,
the real Celery worker sends it to a real SMTP server (aiosmtpd) and a real HTTP receiver, and
the alerts page shows what was sent. The same condition is sent once an hour at most."""

import hashlib
import hmac
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console import alerts, providers, tasks, versions
from console.alert_forms import AlertDestinationForm
from console.models import Alert, AlertDestination, AuditEvent, Instance, PushRequest
from tests import idp_server
from tests.support import PASSWORD, make_instance, make_user

pytestmark = pytest.mark.django_db(transaction=True)

HOOK_SECRET = "alert-hook-secret-canary"


def destinations(smtp_server, hook_receiver, *events):
    """An email and a webhook destination, both for `events`, saved as the form saves them."""
    made = []
    for data in (
        {"name": "ops mail", "kind": "email", "email_to": "ops@example.test, oncall@example.test"},
        {"name": "ops hook", "kind": "webhook", "webhook_url": hook_receiver.url,
         "webhook_secret": HOOK_SECRET},
    ):  # fmt: skip
        form = AlertDestinationForm(data={**data, "events": list(events), "enabled": "on"})
        assert form.is_valid(), form.errors
        made.append(alerts.save_destination(form))
    return made


def wait_for(condition, what, worker, timeout=30):
    worker.wait_until(condition, what, timeout)


def settled(worker, smtp, hook_receiver, mails, hooks):
    """Wait until `mails` and `hooks` arrived and no alert is still to be sent (each alert goes
    out once, so nothing more can come), then count what arrived."""
    wait_for(
        lambda: len(smtp.messages) >= mails and len(hook_receiver.received) >= hooks
        and not Alert.objects.filter(state=Alert.State.PENDING).exists(),
        f"{mails} mail(s) and {hooks} webhook(s), every alert sent", worker,
    )  # fmt: skip
    assert (len(smtp.messages), len(hook_receiver.received)) == (mails, hooks)


def fail_validation(idp):
    idp_server.serve_keycloak(idp, change=lambda d: d.update(issuer="https://elsewhere.test/"))


def test_a_failing_provider_sends_one_email_and_one_webhook(
    celery_worker, smtp, hook_receiver, keycloak_provider, idp
):
    destinations(smtp, hook_receiver, "provider_validation")
    fail_validation(idp)
    revalidate = lambda: tasks.revalidate_provider.delay(keycloak_provider.pk)  # noqa: E731
    revalidate()  # the beat's scheduled re-validation, on the worker
    revalidate()  # still failing: nothing new
    settled(celery_worker, smtp, hook_receiver, mails=1, hooks=1)

    [mail] = smtp.messages
    assert mail["Subject"] == "[Diffgram SSO] Lab Keycloak: validation fails"
    assert mail["X-Rcpt-To"] == "ops@example.test, oncall@example.test"
    assert "oidc.issuer_matches" in mail.get_content() or "issuer" in mail.get_content()
    [(headers, body)] = hook_receiver.received
    [payload] = hook_receiver.payloads()
    assert payload["text"].startswith("Lab Keycloak: validation fails")  # Slack's field
    assert payload["event"] == "provider_validation"
    signed = headers["X-Diffgram-SSO-Timestamp"].encode() + b"." + body
    expected = hmac.new(HOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-Diffgram-SSO-Signature"] == f"sha256={expected}"
    assert set(Alert.objects.values_list("state", flat=True)) == {"sent"}

    # Recovery is news (another condition); failing again within the hour is a repeat.
    idp_server.serve_keycloak(idp)
    revalidate()
    settled(celery_worker, smtp, hook_receiver, mails=2, hooks=2)
    assert smtp.messages[1]["Subject"] == "[Diffgram SSO] Lab Keycloak: validation passes again"
    fail_validation(idp)
    providers.revalidate(keycloak_provider)
    settled(celery_worker, smtp, hook_receiver, mails=2, hooks=2)
    assert set(
        Alert.objects.filter(subject__endswith="fails").values_list("repeats", flat=True)
    ) == {1}


def test_a_push_that_fails_for_good_sends_one_email_and_one_webhook(
    celery_worker, smtp, hook_receiver, keycloak_provider, webhook_instance
):
    destinations(smtp, hook_receiver, "push_failed")
    instance, agent = webhook_instance
    agent.secret_file.write_text("not-the-signing-secret")  # 401: permanent
    agent.serve(agent.port)
    versions.publish(keycloak_provider)
    wait_for(
        lambda: PushRequest.objects.filter(instance=instance, state="failed").exists(),
        "the push to fail", celery_worker,
    )  # fmt: skip
    settled(celery_worker, smtp, hook_receiver, mails=1, hooks=1)
    assert smtp.messages[0]["Subject"] == "[Diffgram SSO] Pushing Lab Keycloak v1 failed for good"
    assert "bad signature" in smtp.messages[0].get_content()
    assert "kc-master-canary" not in smtp.messages[0].as_string()


def test_a_drifting_instance_sends_one_email_and_one_webhook(
    celery_worker, smtp, hook_receiver, keycloak_provider
):
    destinations(smtp, hook_receiver, "instance_drifting")
    make_instance(keycloak_provider, "lab")  # pulls; never has
    make_instance(keycloak_provider, "quiet")
    versions.publish(keycloak_provider)
    assert alerts.check_fleet() == 0  # just assigned: their agents have not had time yet
    Instance.objects.update(assigned_at=timezone.now() - timedelta(minutes=20))
    Instance.objects.filter(name="quiet").update(
        applied_version_number=1, applied_status="ok", last_pull_at="2026-01-01T00:00Z"
    )
    tasks.check_fleet.delay()
    tasks.check_fleet.delay()  # the beat runs it again: still the same condition
    settled(celery_worker, smtp, hook_receiver, mails=2, hooks=2)
    # (Python's parser keeps the space before a folded, encoded subject; mail clients do not.)
    subjects = sorted(m["Subject"].strip() for m in smtp.messages)
    assert subjects == [
        "[Diffgram SSO] lab: applied ≠ assigned, not pulled recently",
        "[Diffgram SSO] quiet: not pulled recently",
    ]
    assert sorted(Alert.objects.values_list("repeats", flat=True)) == [1, 1, 1, 1]


def test_a_webhook_that_fails_is_retried_then_the_alert_records_why(
    celery_worker, smtp, hook_receiver, keycloak_provider
):
    _, hook = destinations(smtp, hook_receiver, "rollout_halted")
    hook_receiver.statuses = [503]  # once
    alerts.send_test(hook)
    wait_for(
        lambda: Alert.objects.filter(state="sent").exists(), "the retried alert", celery_worker
    )
    alert = Alert.objects.get()
    assert alert.attempts == 2 and len(hook_receiver.received) == 2

    hook_receiver.statuses = [404]  # not worth retrying
    failed = alerts.send_test(hook)
    wait_for(
        lambda: Alert.objects.get(pk=failed.pk).state == "failed", "the failure", celery_worker
    )
    failed = Alert.objects.get(pk=failed.pk)
    assert failed.attempts == 1 and failed.last_error == "The webhook answered HTTP 404"


def test_break_glass_and_halted_rollouts_raise_alerts(
    celery_worker, smtp, hook_receiver, keycloak_provider, client, django_user_model, sso
):
    destinations(smtp, hook_receiver, "break_glass", "rollout_halted")
    user = make_user(django_user_model, "rescue", "admin")
    client.post(reverse("login"), {"username": "rescue", "password": PASSWORD})
    assert AuditEvent.objects.filter(action="login.break_glass").exists()
    make_instance(keycloak_provider, "canary", rollout_group="canary")
    make_instance(keycloak_provider, "rest")
    version = versions.publish(keycloak_provider, group="canary")
    versions.halt_rollout(version, actor=user)
    settled(celery_worker, smtp, hook_receiver, mails=2, hooks=2)
    subjects = sorted(m["Subject"] for m in smtp.messages)
    assert subjects == [
        "[Diffgram SSO] Break-glass sign-in by rescue",
        "[Diffgram SSO] The rollout of Lab Keycloak v1 halted",
    ]


# --- the alerts page ----------------------------------------------------------------------------


def test_admins_manage_destinations_and_the_secret_never_shows(admin_client, auditor_client):
    page = admin_client.post(
        reverse("alerts"),
        {"name": "slack", "kind": "webhook", "webhook_url": "http://hooks.slack.test/x",
         "events": ["push_failed"], "enabled": "on", "webhook_secret": HOOK_SECRET},
    )  # fmt: skip
    assert page.status_code == 400
    assert "use https://" in page.content.decode()  # alerts name what failed: https only
    page = admin_client.post(
        reverse("alerts"),
        {"name": "slack", "kind": "webhook", "webhook_url": "https://hooks.slack.test/x",
         "events": ["push_failed"], "enabled": "on", "webhook_secret": HOOK_SECRET},
        follow=True,
    )  # fmt: skip
    assert "Alerts now go to slack." in page.content.decode()
    destination = AlertDestination.objects.get()
    assert destination.secret("webhook_secret") == HOOK_SECRET
    created = AuditEvent.objects.get(action="alert_destination.created")
    assert created.changes["webhook_secret"] == ["[not set]", "[changed]"]
    assert created.changes["events"] == [None, ["push_failed"]]

    bad = admin_client.post(
        reverse("alerts"),
        {"name": "mail", "kind": "email", "email_to": "ops@example.test, not-an-address",
         "events": ["push_failed"]},
    )  # fmt: skip
    assert bad.status_code == 400
    assert "&#x27;not-an-address&#x27; is not an email address." in bad.content.decode()

    for client in (admin_client, auditor_client):
        text = client.get(reverse("alerts")).content.decode()
        assert "hooks.slack.test" in text and HOOK_SECRET not in text
    auditor_page = auditor_client.get(reverse("alerts")).content.decode()
    assert "Add a destination" not in auditor_page and "Send a test" not in auditor_page
    assert (
        auditor_client.post(reverse("alert-destination-test", args=[destination.pk])).status_code
        == 403
    )

    admin_client.post(reverse("alert-destination-delete", args=[destination.pk]))
    assert not AlertDestination.objects.exists()
    assert AuditEvent.objects.filter(action="alert_destination.deleted").exists()


def test_a_jwks_rotation_is_its_own_alert():
    event = AuditEvent(
        action="provider.validation_changed", target_id="4", target_label="Okta",
        changes={"jwks_kids": [["a"], ["a", "b"]]}, context={"scheduled": True},
    )  # fmt: skip
    [(kind, condition, subject, text)] = alerts.alerts_for(event)
    assert (kind, condition, subject) == ("jwks_rotated", "provider:4:jwks:a,b",
                                          "Okta: signing keys changed")  # fmt: skip
    assert "before: a; now: a, b" in text


def test_a_broken_audit_chain_is_reported_by_the_daily_check(
    celery_worker, smtp, hook_receiver, audit_triggers_disabled
):
    destinations(smtp, hook_receiver, "audit_broken")
    tasks.check_audit_chain.delay()  # intact: nothing to say
    first = AuditEvent.objects.order_by("id").first()
    with audit_triggers_disabled() as cursor:
        cursor.execute(
            "UPDATE console_auditevent SET actor_label = 'someone else' WHERE id = %s", [first.pk]
        )
    tasks.check_audit_chain.delay()
    settled(celery_worker, smtp, hook_receiver, mails=1, hooks=1)
    assert smtp.messages[0]["Subject"] == "[Diffgram SSO] The audit chain does not verify"
    assert f"broken at event #{first.pk}" in smtp.messages[0].get_content()


@pytest.mark.django_db  # in a transaction never committed: nothing is sent
def test_a_name_cannot_add_mail_headers(smtp, hook_receiver):
    destinations(smtp, hook_receiver, "push_failed")
    queued = alerts.notify(
        "push_failed", "push:x:1", "Pushing Evil\r\nBcc: someone@example.test v1 failed", "text"
    )
    assert [alert.subject for alert in queued] == [
        "Pushing Evil Bcc: someone@example.test v1 failed"
    ] * 2


def test_the_page_says_when_email_is_only_printed(auditor_client, settings):
    assert "email alerts are written to the Celery worker" in (
        auditor_client.get(reverse("alerts")).content.decode()
    )  # the default: EMAIL_URL=consolemail://
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    assert "email alerts are written" not in auditor_client.get(reverse("alerts")).content.decode()


def test_slack_markup_from_a_diffgram_host_arrives_as_plain_text(smtp, hook_receiver, settings):
    """A probe detail is what a Diffgram host (or an identity provider) said: <!channel> and a
    disguised <url|text> link in it must reach Slack as text, not as a mention and a link."""
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True  # the receiver listens on 127.0.0.1
    destinations(smtp, hook_receiver, "rollout_halted")
    detail = "failed at diffgram: <!channel> see <https://evil.test/steal|the console> & fix " + (
        "x" * 5000
    )
    queued = alerts.notify("rollout_halted", "rollout:1", "The rollout of lab halted", detail)
    [hook] = [alert for alert in queued if alert.destination.kind == "webhook"]
    alerts.send(hook)
    [payload] = hook_receiver.payloads()
    text = payload["text"]
    assert "<" not in text and ">" not in text
    assert "&lt;!channel&gt; see &lt;https://evil.test/steal|the console&gt; &amp; fix" in text
    assert len(text) == alerts.SLACK_TEXT_LIMIT and text.endswith("…")
    assert payload["detail"] == detail  # the structured field keeps the words as they were


def test_the_sent_alerts_are_searched_by_subject_destination_and_event(admin_client):
    destination = AlertDestination.objects.create(
        name="ops-mail", kind="email", email_to="ops@corp.test", events=["push_failed"]
    )
    for event, subject in (("push_failed", "Pushing v3 failed"), ("test", "A test alert")):
        Alert.objects.create(
            destination=destination, destination_name="ops-mail", event=event,
            condition=subject, subject=subject, text="", state="sent",
        )  # fmt: skip

    def found(term):
        page = admin_client.get(reverse("alerts"), {"q": term}).content.decode()
        return sorted(re.findall(r"<strong>([^<]+)</strong><div class=\"small\">", page))

    assert found("PUSHING") == ["Pushing v3 failed"]
    assert found("push_failed") == ["Pushing v3 failed"]
    assert found("ops-mail") == ["A test alert", "Pushing v3 failed"]
    assert (
        "No sent alerts match" in admin_client.get(reverse("alerts"), {"q": "x"}).content.decode()
    )
