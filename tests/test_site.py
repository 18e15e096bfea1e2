"""What every page shares: favicon, required-field marks, and wording."""

import re

import pytest
from django.urls import reverse

from tests.support import ROOT

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


def test_every_page_has_a_favicon_and_favicon_ico_needs_no_sign_in(client, admin_client):
    page = admin_client.get(reverse("providers")).content.decode()
    assert re.search(r'<link rel="icon" href="/static/console/favicon[^"]*\.svg"', page)
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert re.match(r"/static/console/favicon[^/]*\.svg$", response["Location"])


def test_required_fields_are_marked(admin_client):
    page = admin_client.get(reverse("provider-create", args=["keycloak"])).content.decode()
    required = re.findall(r'<div class="field required[^"]*">\s*<label for="id_(\w+)"', page)
    assert {"name", "keycloak_server_url", "keycloak_realm", "client_id"} <= set(required)
    assert "diffgram_url_base" not in required  # optional fields are not marked
