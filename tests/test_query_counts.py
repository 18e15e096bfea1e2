"""Every list page runs the same number of SQL queries whatever the number of rows."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from console import audit, versions
from console.models import ApiToken, Provider
from tests.support import make_instance

pytestmark = pytest.mark.django_db


def queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def grows(client, url, add_rows, django_assert_max_num_queries):
    """Queries with a few rows, then with many: never more."""
    add_rows(3)
    few = queries(client, url)
    add_rows(40)
    with django_assert_max_num_queries(few):
        assert client.get(url).status_code == 200


def test_providers_list(admin_client, django_assert_max_num_queries):
    def add(count):
        start = Provider.objects.count()
        for number in range(start, start + count):
            Provider.objects.create(
                name=f"P{number}", kind="oidc", issuer="https://x.example.test", client_id="c",
                validation_checks=[{"id": "issuer.url", "status": "pass", "message": "ok"}],
                validation_passed=True,
            )  # fmt: skip

    grows(admin_client, reverse("providers"), add, django_assert_max_num_queries)


def test_instances_list(admin_client, keycloak_provider, django_assert_max_num_queries):
    def add(count):
        start = keycloak_provider.instances.count()
        for number in range(start, start + count):
            make_instance(keycloak_provider, f"i{number}", push_target="webhook",
                          webhook_url="http://127.0.0.1:9/")  # fmt: skip
        versions.publish(keycloak_provider)

    grows(admin_client, reverse("instances"), add, django_assert_max_num_queries)


def test_history_list(auditor_client, django_assert_max_num_queries):
    def add(count):
        audit.record_many(
            {"action": audit.Action.PROVIDER_CHANGED, "target": ("provider", 1, "P")}
            for _ in range(count)
        )

    grows(auditor_client, reverse("history"), add, django_assert_max_num_queries)


def test_provider_page_with_its_versions(admin_client, keycloak_provider,
                                         django_assert_max_num_queries):  # fmt: skip
    make_instance(keycloak_provider, "lab")

    def add(count):
        for _ in range(count):
            versions.publish(keycloak_provider)

    url = reverse("provider-detail", args=[keycloak_provider.pk])
    grows(admin_client, url, add, django_assert_max_num_queries)


def test_version_page_with_its_instances(admin_client, keycloak_provider,
                                         django_assert_max_num_queries):  # fmt: skip
    make_instance(keycloak_provider, "first")
    version = versions.publish(keycloak_provider)

    def add(count):
        start = keycloak_provider.instances.count()
        for number in range(start, start + count):
            make_instance(keycloak_provider, f"i{number}")

    url = reverse("version-detail", args=[keycloak_provider.pk, version.number])
    grows(admin_client, url, add, django_assert_max_num_queries)


def test_api_tokens_list(admin_client, admin_user, django_assert_max_num_queries):
    def add(count):
        for number in range(count):
            token = ApiToken(user=admin_user, name=f"t{number}",
                             expires_at=timezone.now() + timedelta(days=1))  # fmt: skip
            token.new_token()
            token.save()

    grows(admin_client, reverse("api-tokens"), add, django_assert_max_num_queries)
