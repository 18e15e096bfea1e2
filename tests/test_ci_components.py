"""In CI the suite must really run on PostgreSQL and Redis, not on the embedded defaults."""

import pytest
from django.conf import settings
from django.db import connection

from tests.support import IN_CI

pytestmark = pytest.mark.skipif(not IN_CI, reason="only meaningful with CI=true (.ci/run)")


@pytest.mark.django_db
def test_it_runs_on_postgresql_in_ci():
    assert connection.vendor == "postgresql"


def test_it_uses_redis_as_broker_in_ci():
    assert settings.CELERY_BROKER_URL.startswith("redis://")
