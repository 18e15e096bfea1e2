"""A real worker process runs tasks dispatched with delay_on_commit only after a commit."""

import pytest
from django.db import transaction

from tests.worker_tasks import write_marker

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def test_it_runs_a_task_after_commit_and_never_after_rollback(celery_worker):
    with transaction.atomic():
        write_marker.delay_on_commit("committed")

    with pytest.raises(Rollback), transaction.atomic():
        write_marker.delay_on_commit("rolled-back")
        raise Rollback

    # The solo worker runs tasks in order: once this one has run, anything sent before it has too.
    with transaction.atomic():
        write_marker.delay_on_commit("sentinel")
    celery_worker.wait_for_marker("sentinel")

    assert (celery_worker.marker_dir / "committed").exists()
    assert not (celery_worker.marker_dir / "rolled-back").exists()
