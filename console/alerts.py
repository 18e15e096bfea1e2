"""Alerts: telling the IT team by email or webhook when something needs them, without a storm.

Where alerts come from:
- audit events, heard once their transaction commits (audit.event_recorded, console/signals.py):
  a provider's scheduled re-validation changing outcome or JWKS keys, a push failing for good,
  a rollout halting, a synthetic sign-in failing after one passed (or the reverse), a
  break-glass sign-in;
- checks Celery beat runs: instances drifting or not pulling (`check_fleet`), the audit chain
  (`check_audit_chain`).

Each destination receives the events it chose. The same condition (an event and a key such as
"provider 4 fails") is sent to a destination at most once an hour; repeats within the hour are
counted on the alert. Sending is a Celery task with retries (console/tasks.py: send_alert);
every alert and its outcome is listed on the alerts page.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from console import audit, delivery, instances, outbound
from console.models import Alert, AlertDestination, AlertEvent
from console.signals import alerts_queued

logger = logging.getLogger(__name__)
Action = audit.Action
REPEAT_AFTER = timedelta(hours=1)
# An instance is not reported as drifting this soon after a new assignment: its agent has not
# had time to poll, or its push is still on its way.
DRIFT_GRACE = timedelta(minutes=15)
# Conditions raised together: few queries each, and within SQLite's limit on bound parameters.
NOTIFY_CHUNK = 2000


class SendFailed(Exception):
    def __init__(self, message, permanent=False):
        super().__init__(message)
        self.message, self.permanent = message, permanent


# --- raising ------------------------------------------------------------------------------------


def notify(event, condition, subject, text) -> list[Alert]:
    """Queue an alert to every enabled destination that chose `event`, unless the same condition
    was sent there within the hour (then that alert counts one more repeat)."""
    return notify_many(event, [(condition, subject, text)])


def notify_many(event, raised) -> list[Alert]:
    """notify() for several conditions of one event, [(condition, subject, text)], in a few
    queries per destination whatever their number (a fleet's drift check raises thousands)."""
    destinations = [d for d in AlertDestination.objects.filter(enabled=True) if event in d.events]
    by_condition = {condition[:200]: (subject, text) for condition, subject, text in raised}
    if not by_condition:
        return []
    queued = []
    since = timezone.now() - REPEAT_AFTER
    with transaction.atomic():
        for destination in destinations:
            # Locked, so that two processes raising the same condition at once send it once.
            AlertDestination.objects.select_for_update().filter(pk=destination.pk).first()
            recent = Alert.objects.filter(
                destination=destination, event=event, condition__in=list(by_condition),
                created_at__gte=since,
            )  # fmt: skip
            repeated = set(recent.values_list("condition", flat=True))
            recent.update(repeats=F("repeats") + 1)
            queued += Alert.objects.bulk_create(
                _new_alert(destination, event, condition, subject, text)
                for condition, (subject, text) in by_condition.items()
                if condition not in repeated
            )
        _send_after_commit(queued)
    return queued


def send_test(destination) -> Alert:
    """A test alert to one destination, now (never held back as a repeat)."""
    with transaction.atomic():
        alert = _new_alert(
            destination, AlertEvent.TEST, f"test:{time.time_ns()}",
            "Test alert from the Diffgram SSO console",
            f"This is a test of the alert destination {destination.name}. It works.",
        )  # fmt: skip
        alert.save()
        _send_after_commit([alert])
    return alert


def _new_alert(destination, event, condition, subject, text) -> Alert:
    """An alert not saved yet."""
    # One line: a subject is a mail header (names come from admins and the API).
    subject = " ".join(subject.split())
    return Alert(
        destination=destination, destination_name=destination.name, event=event,
        condition=condition[:200], subject=subject[:255], text=text,
    )  # fmt: skip


def _send_after_commit(alerts) -> None:
    if alerts:
        ids = [alert.pk for alert in alerts]
        transaction.on_commit(lambda: alerts_queued.send(sender=Alert, alert_ids=ids), robust=True)


# --- from audit events --------------------------------------------------------------------------


def raise_for_audit_events(events) -> None:
    """Raise the alerts new audit events call for, once their transaction commits (the
    actions heard are listed in console/signals.py)."""
    for event in events:
        for alert in alerts_for(event):
            try:
                notify(*alert)
            except Exception:  # an alert must never break what was audited
                logger.exception("Could not queue the alert for audit event #%s", event.id)


def alerts_for(event) -> list[tuple[str, str, str, str]]:
    """(event, condition, subject, text) for the alerts an audit event raises."""
    context, changes, name = event.context or {}, event.changes or {}, event.target_label
    if event.action == Action.PROVIDER_VALIDATION_CHANGED:
        raised = []
        if "passed" in changes:
            passed = changes["passed"][1]
            failed = ", ".join(context.get("failed", [])) or "none"
            raised.append((
                AlertEvent.PROVIDER_VALIDATION,
                f"provider:{event.target_id}:{'passes' if passed else 'fails'}",
                f"{name}: validation {'passes again' if passed else 'fails'}",
                f"The scheduled validation of the identity provider {name} "
                + ("passes again." if passed else f"fails. Failing checks: {failed}. "
                   "Sign-in through it may be broken; see its page in the console."),
            ))  # fmt: skip
        if "jwks_kids" in changes:
            before, after = changes["jwks_kids"]
            raised.append((
                AlertEvent.JWKS_ROTATED,
                f"provider:{event.target_id}:jwks:{','.join(after)}",
                f"{name}: signing keys changed",
                f"The identity provider {name} publishes other signing keys (JWKS). "
                f"Key ids before: {', '.join(before) or 'none'}; "
                f"now: {', '.join(after) or 'none'}.",
            ))  # fmt: skip
        return raised
    if event.action == Action.PUSH_FAILED:
        version = f"{context.get('provider', '')} v{context.get('version', '')}"
        return [(
            AlertEvent.PUSH_FAILED,
            f"push:{context.get('provider', '')}:{context.get('version', '')}",
            f"Pushing {version} failed for good",
            f"Pushing {version} to {name} failed after {context.get('attempts', '?')} "
            f"attempts: {context.get('error', 'unknown error')}. Later failures of this "
            "version within the hour are counted, not sent.",
        )]  # fmt: skip
    if event.action == Action.ROLLOUT_HALTED:
        by = "by itself" if context.get("automatic") else f"by {event.actor_label}"
        return [(
            AlertEvent.ROLLOUT_HALTED,
            f"rollout:{event.target_id}",
            f"The rollout of {name} halted",
            f"The staged rollout of {name} halted {by} after its first group "
            f"{context.get('first_group', '')!r}."
            + (f" Reason: {context['reason']}" if context.get("reason") else ""),
        )]  # fmt: skip
    if event.action == Action.INSTANCE_SIGNIN_FAILED:
        return [(
            AlertEvent.SIGNIN_FAILED,
            f"signin:{event.target_id}:failed",
            f"{name}: signing in to Diffgram fails",
            f"The synthetic sign-in to the Diffgram instance {name} (v{context.get('version')}) "
            f"failed at {context.get('step', '?')}: {context.get('detail', '')}. The one before "
            "it passed: people may not be able to sign in now.",
        )]  # fmt: skip
    if event.action == Action.INSTANCE_SIGNIN_RECOVERED:
        return [(
            AlertEvent.SIGNIN_RECOVERED,
            f"signin:{event.target_id}:recovered",
            f"{name}: signing in to Diffgram works again",
            f"The synthetic sign-in to the Diffgram instance {name} "
            f"(v{context.get('version')}) passes again: {context.get('detail', '')}.",
        )]  # fmt: skip
    if event.action == Action.LOGIN_BREAK_GLASS:
        return [(
            AlertEvent.BREAK_GLASS,
            f"break-glass:{event.actor_label}",
            f"Break-glass sign-in by {event.actor_label}",
            f"{event.actor_label} signed in to the console with a local password"
            + (f" from {event.source_ip}" if event.source_ip else "")
            + ". Local sign-in is for emergencies; check that this one was expected.",
        )]  # fmt: skip
    return []


# --- from scheduled checks ----------------------------------------------------------------------


def check_fleet(now=None) -> int:
    """Beat: an alert per instance that drifts or has stopped pulling; returns how many
    instances do. The database finds them (instances.with_state); only their few columns are
    read."""
    now = now or timezone.now()
    drifting = (
        instances.with_state(now=now)
        .filter(Q(off_version=True) | Q(not_pulling=True))
        .exclude(assigned_at__gt=now - DRIFT_GRACE)
        .order_by()
        .values(
            "pk",
            "name",
            "url_base",
            "applied_version_number",
            "applied_status",
            "assigned_version__number",
            *instances.DRIFT_REASONS.values(),
        )  # fmt: skip
    )
    raised, count = [], 0
    for row in drifting.iterator(chunk_size=NOTIFY_CHUNK):
        reasons = [reason for reason, flag in instances.DRIFT_REASONS.items() if row[flag]]
        why = []
        if row["off_version"]:
            why.append(
                f"it does not run what it was assigned: v{row['assigned_version__number']} "
                + (
                    f"assigned, v{row['applied_version_number']} applied ({row['applied_status']})"
                    if row["applied_version_number"]
                    else "assigned, nothing applied yet"
                )
            )
        if row["not_pulling"]:
            why.append(
                "it has not pulled its configuration for over "
                f"{settings.INSTANCE_STALE_AFTER_MINUTES} minutes"
            )
        raised.append(
            (
                f"instance:{row['pk']}:{'+'.join(reasons)}",
                f"{row['name']}: {', '.join(reasons)}",
                f"The Diffgram instance {row['name']} ({row['url_base']}) drifts: "
                + "; ".join(why)
                + ".",
            )
        )
        count += 1
        if len(raised) == NOTIFY_CHUNK:
            notify_many(AlertEvent.INSTANCE_DRIFTING, raised)
            raised = []
    notify_many(AlertEvent.INSTANCE_DRIFTING, raised)
    return count


def check_audit_chain() -> bool:
    """Beat (daily): verify the audit chain; an alert when it does not verify."""
    report = audit.verify_chain()
    if not report.ok:
        notify(
            AlertEvent.AUDIT_BROKEN,
            f"audit:{report.first_bad_id}",
            "The audit chain does not verify",
            f"{report}. Someone or something changed the history; compare it with the "
            "checkpoints and a previous export.",
        )
    return report.ok


# --- sending ------------------------------------------------------------------------------------


def send(alert) -> None:
    """Deliver one alert (in a Celery task); raises SendFailed."""
    destination = alert.destination
    if destination is None:
        raise SendFailed("Its destination was deleted.", permanent=True)
    if destination.kind == AlertDestination.Kind.EMAIL:
        _send_email(destination, alert)
    else:
        _send_webhook(destination, alert)


def _send_email(destination, alert) -> None:
    try:
        send_mail(
            f"[Diffgram SSO] {alert.subject}", f"{alert.text}\n\n{_footer(alert)}",
            settings.ALERTS_FROM_EMAIL, destination.recipients,
        )  # fmt: skip
    except OSError as error:  # smtplib's errors, refused connections and timeouts
        raise SendFailed(f"Email not sent: {type(error).__name__}: {error}") from None


SLACK_TEXT_LIMIT = 3000  # characters of "text"; Slack shows long messages folded anyway


def slack_text(text) -> str:
    """Text for a Slack-compatible "text" field: names, probe details and provider answers come
    from outside, and Slack reads <!channel>, <@user> and <url|label> in it as markup. Its
    three special characters are escaped as Slack asks, and the length is capped."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if len(escaped) <= SLACK_TEXT_LIMIT:
        return escaped
    cut = escaped[: SLACK_TEXT_LIMIT - 1]
    entity = cut.rfind("&")
    if entity != -1 and ";" not in cut[entity:]:  # never half an escape
        cut = cut[:entity]
    return cut + "…"


def _send_webhook(destination, alert) -> None:
    body = json.dumps(
        {
            "text": slack_text(f"{alert.subject}: {alert.text}"),  # what Slack shows
            "event": alert.event,
            "subject": alert.subject,
            "detail": alert.text,
            "alert_id": alert.pk,
            "created_at": alert.created_at.isoformat(),
        }
    ).encode()
    headers = {"Content-Type": "application/json"}
    if destination.has_secret("webhook_secret"):
        headers.update(delivery.signature_headers(destination.secret("webhook_secret"), body))
    try:
        response = outbound.post(destination.webhook_url, body, headers)
    except outbound.OutboundError as error:
        raise SendFailed(error.message, error.permanent) from None
    if not 200 <= response.status < 300:
        transient = response.status in (408, 429) or response.status >= 500
        raise SendFailed(f"The webhook answered HTTP {response.status}", permanent=not transient)


def _footer(alert) -> str:
    when = f"{alert.created_at:%Y-%m-%d %H:%M} UTC"
    return f"Event: {alert.get_event_display()}. Alert #{alert.pk}, {when}."


def record_sent(alert) -> None:
    Alert.objects.filter(pk=alert.pk).update(
        state=Alert.State.SENT, attempts=F("attempts") + 1, sent_at=timezone.now(),
        last_error="",
    )  # fmt: skip


def record_failure(alert, message, *, final) -> None:
    Alert.objects.filter(pk=alert.pk).update(
        state=Alert.State.FAILED if final else Alert.State.PENDING,
        attempts=F("attempts") + 1, last_error=message[:1000],
    )  # fmt: skip


def recent_alerts(search=None, limit=100) -> list[Alert]:
    """The newest alerts (those `search`, a SearchForm, finds)."""
    found = search.search(Alert.objects.all()) if search is not None else Alert.objects.all()
    return list(found[:limit])


# --- destinations (the alerts page) -------------------------------------------------------------


def save_destination(form, *, request=None) -> AlertDestination:
    """Create or change a destination from a valid AlertDestinationForm; audited, the secret
    only as set or changed."""
    with audit.change():
        creating = form.instance.pk is None
        stored = None if creating else AlertDestination.objects.get(pk=form.instance.pk)
        before = stored.audit_fields() if stored else {}
        had_secret = form.instance.has_secret("webhook_secret")
        destination = form.save(commit=False)
        secret = form.cleaned_data.get("webhook_secret", "")
        if secret:
            destination.set_secret("webhook_secret", secret)
        destination.save()
        changes = audit.field_changes(before, destination.audit_fields())
        if secret:
            changes["webhook_secret"] = [
                audit.SECRET_SET if had_secret else audit.SECRET_NOT_SET,
                audit.SECRET_CHANGED,
            ]
        audit.record(
            Action.ALERT_DESTINATION_CREATED if creating else Action.ALERT_DESTINATION_CHANGED,
            request=request,
            target=destination,
            changes=changes,
        )
    return destination


def delete_destination(destination, *, request=None) -> None:
    with audit.change():
        audit.record(
            Action.ALERT_DESTINATION_DELETED,
            request=request,
            target=destination,
            changes={name: [value, None] for name, value in destination.audit_fields().items()},
        )
        destination.delete()
