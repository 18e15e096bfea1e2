"""Tasks only the test worker loads (`celery worker --include tests.worker_tasks`)."""

import os
from pathlib import Path

from celery import shared_task


@shared_task
def write_marker(name):
    """Leave a file the test can see, proving the worker ran this task."""
    (Path(os.environ["CELERY_TEST_MARKER_DIR"]) / name).write_text("ran")
