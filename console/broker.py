"""The Celery broker as the health check and the metrics see it: reachable or not, and how many
tasks wait. With tasks.py, the only module that talks to Celery."""

from __future__ import annotations

import logging

from django.conf import settings
from kombu.exceptions import ChannelError

from sso_admin.celery import app

logger = logging.getLogger(__name__)


def reachable() -> bool:
    """Whether the broker takes a connection (the reason, which may name hosts, is logged)."""
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=3)
        return True
    except Exception:
        logger.exception("healthz: broker unreachable")
        return False


def queue_length() -> int | None:
    """Messages in the console's queue on the broker; None (and a warning) if it cannot say."""
    try:
        with app.connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(
                queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True
            )
            return int(declared.message_count)
    except ChannelError:  # the queue was never declared: no task was ever sent, none waits
        return 0
    except Exception as error:  # any broker trouble: the rest of the scrape still answers
        logger.warning("Celery queue length unknown: %s", type(error).__name__)
        return None
