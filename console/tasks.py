"""Celery tasks: thin wrappers that take primary keys; the logic lives in the service modules
(console/delivery.py, console/providers.py, console/verification.py, console/alerts.py,
console/audit_anchor.py). The only module that knows Celery: publishing and alerting announce
their work with signals (console/signals.py), whose receivers call this module."""

from __future__ import annotations

import functools
import logging
import random

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from console import alerts, audit_anchor, delivery, providers, verification
from console.models import Alert, Instance, Provider
from sso_admin.celery import app

logger = logging.getLogger(__name__)


def dispatch_after_commit(push_request_ids) -> None:
    """Send the push tasks, PUSH_BATCH_SIZE requests each, once the transaction commits.
    Robust: if the broker is down the publish still succeeds, and the outbox sweeper sends
    them later."""
    ids = list(push_request_ids)

    def send() -> None:
        with app.producer_or_acquire() as producer:  # one connection for the whole fan-out
            for start in range(0, len(ids), delivery.PUSH_BATCH_SIZE):
                batch = ids[start : start + delivery.PUSH_BATCH_SIZE]
                push_config.apply_async((batch,), producer=producer)

    transaction.on_commit(send, robust=True)


def database_outage_tolerant(task):
    """A task that meets a database refusing (restarting, full, unreachable) ends with one
    warning instead of a traceback: what it was for is in the database and is done again (by
    the sweeper, the beat, or the next report) once the database is back."""

    @functools.wraps(task)
    def run(*args, **kwargs):
        try:
            return task(*args, **kwargs)
        except (OperationalError, InterfaceError) as error:
            logger.warning(
                "%s stopped: the database refused (%s); it is done again once the database is "
                "back.", task.__name__, str(error).strip().splitlines()[0] if str(error).strip()
                else type(error).__name__,
            )  # fmt: skip
            connection.close()
            return None

    return run


@shared_task(
    # Acknowledged on receipt: the outbox row, not the message, is what is owed. A batch lost
    # with its worker is swept once its lease runs out (delivery.LEASE_SECONDS), and no stale
    # message is left in the broker to come back an hour later.
    acks_late=False,
    soft_time_limit=delivery.PUSH_BATCH_TIME_LIMIT,
    time_limit=delivery.PUSH_BATCH_TIME_LIMIT + 30,
)
@database_outage_tolerant
def push_config(push_request_ids) -> None:
    """Deliver a batch of push requests. Transient failures are sent again by the outbox
    sweeper when due (delivery.retry_delay)."""
    delivery.deliver(push_request_ids)


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def sweep_outbox() -> int:
    """Beat, every delivery.SWEEP_EVERY seconds: send the pending push requests that are due
    (never started, lost with a worker, or due for a retry). Returns how many."""
    with transaction.atomic():
        overdue = delivery.take_overdue()
        if overdue:
            dispatch_after_commit(overdue)
    return len(overdue)


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def revalidate_providers() -> None:
    """Beat: queue a re-validation of every enabled provider."""
    for provider_id in Provider.objects.filter(enabled=True).values_list("pk", flat=True):
        revalidate_provider.delay(provider_id)


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def revalidate_provider(provider_id) -> None:
    provider = Provider.objects.filter(pk=provider_id, enabled=True).first()
    if provider is not None:
        providers.revalidate(provider)


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def audit_checkpoint() -> int:
    """Beat: anchor the audit chain's end outside the database."""
    return audit_anchor.write_checkpoint().event_id


# Steps that depend on Diffgram having restarted with the new settings: worth asking again.
DIFFGRAM_STEPS = frozenset({"diffgram", "use_oauth2", "login_url"})
VERIFY_RETRIES, VERIFY_RETRY_SECONDS = 6, 10


def verify_after_commit(instance_id) -> None:
    """The console's own verification of an instance, once the transaction commits."""
    transaction.on_commit(lambda: verify_instance.delay(instance_id), robust=True)


@shared_task(bind=True, max_retries=VERIFY_RETRIES)
@database_outage_tolerant
def verify_instance(self, instance_id) -> None:
    """Verify an instance from the console (its synthetic sign-in, or the probe) and record
    the result; while its Diffgram is not answering as expected yet (restarting), ask again a
    few times first."""
    instance = Instance.objects.select_related("assigned_version").filter(pk=instance_id).first()
    if instance is None:
        return
    try:
        number, result = verification.check_instance(instance)
    except verification.NothingToVerify:
        return
    if (
        not result["ok"]
        and result["step"] in DIFFGRAM_STEPS
        and self.request.retries < VERIFY_RETRIES
    ):
        raise self.retry(countdown=VERIFY_RETRY_SECONDS)
    verification.record_verification(
        instance, version_number=number, probe=result, source="console"
    )


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def run_signin_checks(spread_seconds=None) -> int:
    """Beat, every SIGNIN_CHECK_MINUTES: a synthetic sign-in of every instance the console
    signs in to, spread at random over `spread_seconds` (by default the first half of the
    period) so that the identity provider and the worker see no burst. Returns how many were
    queued."""
    if spread_seconds is None:
        spread_seconds = settings.SIGNIN_CHECK_MINUTES * 60 / 2
    queued = verification.instances_to_sign_in()
    for instance_id in queued:
        countdown = random.uniform(0, spread_seconds)  # noqa: S311 - jitter, not crypto
        verify_instance.apply_async((instance_id,), countdown=countdown)
    return len(queued)


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def halt_overdue_rollouts() -> int:
    """Beat: halt the self-halting rollouts whose first group has not verified in time."""
    return len(verification.halt_overdue_rollouts())


# --- alerts (console/alerts.py) -----------------------------------------------------------------


@shared_task(bind=True, max_retries=None)  # ALERT_MAX_ATTEMPTS is counted on the alert
@database_outage_tolerant
def send_alert(self, alert_id) -> None:
    """Send one alert; a transient failure is retried with Celery's retry, backing off from
    ALERT_RETRY_SECONDS, until ALERT_MAX_ATTEMPTS; the alert records each outcome."""
    alert = Alert.objects.select_related("destination").filter(pk=alert_id).first()
    if alert is None or alert.state != Alert.State.PENDING:
        return
    try:
        alerts.send(alert)
    except alerts.SendFailed as failure:
        final = failure.permanent or alert.attempts + 1 >= settings.ALERT_MAX_ATTEMPTS
        alerts.record_failure(alert, failure.message, final=final)
        if not final:
            raise self.retry(countdown=settings.ALERT_RETRY_SECONDS * 2**alert.attempts) from None
        return
    alerts.record_sent(alert)


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def check_fleet() -> int:
    """Beat: alerts for instances that drift or stopped pulling."""
    return alerts.check_fleet()


@shared_task(acks_late=False)  # the beat sends it again
@database_outage_tolerant
def check_audit_chain() -> bool:
    """Beat, daily: verify the audit chain and alert when it does not."""
    return alerts.check_audit_chain()
