"""Celery tasks: thin wrappers that take primary keys; the logic lives in the service modules
(console/delivery.py, console/providers.py, console/audit_anchor.py). The only module that
knows Celery: everything else asks it to dispatch."""

from __future__ import annotations

from celery import shared_task
from django.db import transaction

from console import audit_anchor, delivery, providers
from console.models import Provider
from sso_admin.celery import app


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


@shared_task(
    bind=True,
    max_retries=None,  # PUSH_MAX_ATTEMPTS is counted per push request, in the database
    soft_time_limit=delivery.PUSH_BATCH_TIME_LIMIT,
    time_limit=delivery.PUSH_BATCH_TIME_LIMIT + 30,
)
def push_config(self, push_request_ids) -> None:
    """Deliver a batch of push requests. Transient failures due again within a few minutes are
    retried together by this task (Celery's retry, after the longest of their delays); those
    backing off longer, up to an hour, are left to the outbox sweeper, which sends them when
    due (delivery.retry_delay)."""
    retries = delivery.deliver(push_request_ids)
    soon = [(pk, delay) for pk, delay in retries if delay <= delivery.PUSH_RETRY_IN_TASK_MAX]
    if soon:
        raise self.retry(args=([pk for pk, _ in soon],), countdown=max(delay for _, delay in soon))


@shared_task
def sweep_outbox() -> int:
    """Beat: send again the pending push requests that are overdue. Returns how many."""
    with transaction.atomic():
        overdue = delivery.take_overdue()
        if overdue:
            dispatch_after_commit(overdue)
    return len(overdue)


@shared_task
def revalidate_providers() -> None:
    """Beat: queue a re-validation of every enabled provider."""
    for provider_id in Provider.objects.filter(enabled=True).values_list("pk", flat=True):
        revalidate_provider.delay(provider_id)


@shared_task
def revalidate_provider(provider_id) -> None:
    provider = Provider.objects.filter(pk=provider_id, enabled=True).first()
    if provider is not None:
        providers.revalidate(provider)


@shared_task
def audit_checkpoint() -> int:
    """Beat: anchor the audit chain's end outside the database."""
    return audit_anchor.write_checkpoint().event_id
