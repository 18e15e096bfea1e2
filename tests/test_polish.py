"""Small things a new user notices: plurals, articles, a favicon, sensible defaults, required
fields marked, and history that shows only what belongs to the provider."""

import re

import pytest
from django.urls import reverse

from console import kinds, versions
from console.models import AuditEvent, Provider
from tests.support import ROOT, make_instance

pytestmark = pytest.mark.django_db


def test_no_message_guesses_its_plural_with_parentheses():
    """Counts go through ngettext (or the pluralize filter): "1 instance", "2 instances"."""
    guesses = []
    for folder, pattern in (("console", "*.py"), ("templates", "*.html")):
        for path in (ROOT / folder).rglob(pattern):
            if "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"\w\(s\)", line.replace("http(s)", "")):
                    guesses.append(f"{path.relative_to(ROOT)}:{number}")
    assert guesses == []


def test_the_provider_page_counts_its_instances_in_words(admin_client, keycloak_provider):
    make_instance(keycloak_provider, "lab")
    page = admin_client.get(reverse("provider-detail", args=[keycloak_provider.pk]))
    assert "1 instance uses this provider." in page.content.decode()
    make_instance(keycloak_provider, "prod")
    page = admin_client.get(reverse("provider-detail", args=[keycloak_provider.pk]))
    assert "2 instances use this provider." in page.content.decode()


@pytest.mark.parametrize(
    ("kind", "heading"),
    [
        ("cognito", "Add an AWS Cognito provider"),
        ("keycloak", "Add a Keycloak provider"),
        ("oidc", "Add a Generic OIDC provider"),
    ],
)
def test_the_new_provider_heading_has_the_right_article(admin_client, kind, heading):
    page = admin_client.get(reverse("provider-create", args=[kind])).content.decode()
    assert f"<h1>{heading}</h1>" in page


def test_every_page_has_a_favicon_and_favicon_ico_needs_no_sign_in(client, admin_client):
    page = admin_client.get(reverse("providers")).content.decode()
    assert re.search(r'<link rel="icon" href="/static/console/favicon[^"]*\.svg"', page)
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert re.match(r"/static/console/favicon[^/]*\.svg$", response["Location"])


def test_comparing_versions_starts_with_the_previous_against_the_latest(
    admin_client, keycloak_provider
):
    make_instance(keycloak_provider, "lab")
    for _ in range(3):
        versions.publish(keycloak_provider)
    response = admin_client.get(reverse("version-diff", args=[keycloak_provider.pk]))
    assert (response.context["old"].number, response.context["new"].number) == (2, 3)
    assert response.context["diff"]


def test_required_fields_are_marked(admin_client):
    page = admin_client.get(reverse("provider-create", args=["keycloak"])).content.decode()
    required = re.findall(r'<div class="field required[^"]*">\s*<label for="id_(\w+)"', page)
    assert {"name", "keycloak_server_url", "keycloak_realm", "client_id"} <= set(required)
    assert "diffgram_url_base" not in required  # optional fields are not marked


def test_a_keycloak_providers_history_shows_only_keycloak_fields(admin_client, idp):
    from tests import idp_server

    server = idp_server.serve_keycloak(idp)
    admin_client.post(
        reverse("provider-create", args=["keycloak"]),
        {
            "name": "Lab Keycloak", "keycloak_server_url": server,
            "keycloak_realm": "diffgram-realm", "client_id": "diffgram-{instance}",
        },
    )  # fmt: skip
    Provider.objects.get(name="Lab Keycloak")
    created = AuditEvent.objects.get(action="provider.created")
    assert set(created.changes) <= {
        "kind",
        "enabled",
        "issuer",
        *kinds.KEYCLOAK.editable_fields,
    }
    assert "aws_region" not in created.changes and "user_pool_id" not in created.changes
    page = admin_client.get(reverse("history-event", args=[created.pk])).content.decode()
    assert "aws_region" not in page and "cognito_domain" not in page
