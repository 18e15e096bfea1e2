"""Celery tasks: thin wrappers that take primary keys; the logic lives in console.rollout."""

from celery import shared_task

from console import audit_anchor, providers, rollout
from console.models import Provider


@shared_task(
    bind=True,
    max_retries=None,  # PUSH_MAX_ATTEMPTS is counted per push request, in the database
    soft_time_limit=rollout.PUSH_BATCH_TIME_LIMIT,
    time_limit=rollout.PUSH_BATCH_TIME_LIMIT + 30,
)
def push_config(self, push_request_ids):
    """Deliver a batch of push requests. Transient failures due again within a few minutes are
    retried together by this task (Celery's retry, after the longest of their delays); those
    backing off longer, up to an hour, are left to the outbox sweeper, which sends them when
    due (rollout.retry_delay)."""
    retries = rollout.deliver(push_request_ids)
    soon = [(pk, delay) for pk, delay in retries if delay <= rollout.PUSH_RETRY_IN_TASK_MAX]
    if soon:
        raise self.retry(args=([pk for pk, _ in soon],), countdown=max(delay for _, delay in soon))


@shared_task
def sweep_outbox():
    return rollout.sweep_outbox()


@shared_task
def revalidate_providers():
    """Beat: queue a re-validation of every enabled provider."""
    for provider_id in Provider.objects.filter(enabled=True).values_list("pk", flat=True):
        revalidate_provider.delay(provider_id)


@shared_task
def revalidate_provider(provider_id):
    provider = Provider.objects.filter(pk=provider_id, enabled=True).first()
    if provider is not None:
        providers.revalidate(provider)


@shared_task
def audit_checkpoint():
    """Beat: anchor the audit chain's end outside the database."""
    return audit_anchor.write_checkpoint().event_id
