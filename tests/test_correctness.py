"""Correctness (issue 16): states the fleet view and the API must get right, each reproduced
first. The fault drills are in tests/test_fault_drills.py."""

import pytest
from django.urls import reverse

from console import outbound
from tests.conftest import make_instance

pytestmark = pytest.mark.django_db


# --- 10. an answer read in full is an answer ------------------------------------------------------


def test_a_complete_answer_read_after_the_deadline_is_not_lost(idp, monkeypatch):
    """A worker paused while the agent answered (or an agent slower than the deadline to
    start answering) must not turn a delivered push into a failure that is sent again."""
    monkeypatch.setattr(outbound, "TOTAL_DEADLINE", 0.5)
    idp.json("/late", {"applied": 1}, delay=1.0)  # whole, but after the deadline
    response = outbound.get(idp.url("/late"))
    assert (response.status, response.json()) == (200, {"applied": 1})


def test_an_answer_still_arriving_after_the_deadline_is_abandoned(idp, monkeypatch):
    monkeypatch.setattr(outbound, "TOTAL_DEADLINE", 0.5)
    idp.slow_body("/dripping", b"x" * 200_000, pause=0.3)
    with pytest.raises(outbound.OutboundError, match="took longer than 0.5 s") as caught:
        outbound.get(idp.url("/dripping"))
    assert not caught.value.permanent


# --- 11. the pull API while the cache is down -----------------------------------------------------


def test_a_bad_token_gets_401_not_500_while_the_cache_is_down(client, keycloak_provider, settings):
    from console import rollout

    instance, token = make_instance(keycloak_provider, "lab")
    rollout.publish(keycloak_provider)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    url = reverse("api-pull-config", args=[instance.pk])
    assert client.get(url, HTTP_AUTHORIZATION="Bearer dgi_wrong").status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
