"""Celery tasks: thin wrappers that take primary keys; the logic lives in console.rollout."""

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from console import audit_anchor, providers, rollout
from console.models import Provider


@shared_task(
    bind=True,
    max_retries=None,  # PUSH_MAX_ATTEMPTS is counted per push request, in the database
    soft_time_limit=rollout.PUSH_BATCH_TIME_LIMIT,
    time_limit=rollout.PUSH_BATCH_TIME_LIMIT + 30,
)
def push_config(self, push_request_ids):
    """Deliver a batch of push requests; those that failed transiently are retried together,
    with exponential backoff and jitter."""
    retry_ids = rollout.deliver(push_request_ids)
    if retry_ids:
        raise self.retry(
            args=(retry_ids,),
            countdown=get_exponential_backoff_interval(
                factor=settings.PUSH_RETRY_BACKOFF_SECONDS,
                retries=self.request.retries,
                maximum=rollout.PUSH_RETRY_MAX_DELAY,
                full_jitter=True,
            ),
        )


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
