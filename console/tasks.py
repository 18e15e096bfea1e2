"""Celery tasks: thin wrappers that take primary keys; the logic lives in console.rollout."""

from celery import shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from console import providers, rollout
from console.models import Provider


@shared_task(bind=True, max_retries=None)
def push_config(self, push_request_ids):
    """Deliver a batch of push requests; those that failed transiently are retried together,
    with exponential backoff and jitter."""
    final_attempt = self.request.retries + 1 >= settings.PUSH_MAX_ATTEMPTS
    retry_ids = rollout.deliver(push_request_ids, final_attempt=final_attempt)
    if retry_ids:
        raise self.retry(
            args=(retry_ids,),
            countdown=get_exponential_backoff_interval(
                factor=settings.PUSH_RETRY_BACKOFF_SECONDS,
                retries=self.request.retries,
                maximum=300,
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
