"""Scheduled re-validation: changes in what the IdP serves become audit events."""

import json

import pytest
from django.core.cache import cache

from console import auth, tasks
from console.models import AuditEvent, Provider
from tests.idp_server import public_jwks

pytestmark = pytest.mark.django_db

CERTS = "/auth/realms/diffgram-realm/protocol/openid-connect/certs"
DISCOVERY = "/auth/realms/diffgram-realm/.well-known/openid-configuration"


def changes():
    return list(AuditEvent.objects.filter(action="provider.validation_changed").order_by("id"))


def test_nothing_is_recorded_when_nothing_changed(keycloak_provider):
    before = AuditEvent.objects.count()
    tasks.revalidate_provider(keycloak_provider.pk)
    assert AuditEvent.objects.count() == before
    assert Provider.objects.get().validated_at > keycloak_provider.validated_at


def test_a_key_rotation_is_recorded_and_refreshes_a_console_login_cache(keycloak_provider, idp):
    Provider.objects.filter(pk=keycloak_provider.pk).update(console_login=True)
    cache_key = auth.jwks_cache_key(keycloak_provider.issuer)
    cache.set(cache_key, {"keys": []})
    idp.json(CERTS, public_jwks("test-key-1", "rotated-key"))
    tasks.revalidate_provider(keycloak_provider.pk)
    [event] = changes()
    assert event.changes == {"jwks_kids": [["test-key-1"], ["rotated-key", "test-key-1"]]}
    assert event.actor_type == "system" and event.context["scheduled"] is True
    assert cache.get(cache_key) is None


def test_a_pass_to_fail_and_a_changed_endpoint_are_recorded(keycloak_provider, idp):
    document = idp.httpd.routes[DISCOVERY]
    served = json.loads(document.body)
    served["token_endpoint"] = served["token_endpoint"].replace("/token", "/token2")
    served["id_token_signing_alg_values_supported"] = ["ES256"]
    idp.json(DISCOVERY, served)
    tasks.revalidate_provider(keycloak_provider.pk)
    [event] = changes()
    assert event.changes["passed"] == [True, False]
    assert event.changes["token_endpoint"][1].endswith("/token2")
    assert event.context["failed"] == ["id_token_alg.rs256"]


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_runs_on_a_real_worker(celery_worker, keycloak_provider, idp):
    idp.json(CERTS, public_jwks("test-key-1", "worker-key"))
    tasks.revalidate_providers.delay()
    celery_worker.wait_until(lambda: bool(changes()), "the scheduled re-validation")
    assert "worker-key" in changes()[0].changes["jwks_kids"][1]
