"""Every page an admin or an auditor can open, audited in Chromium with axe-core (WCAG 2.0 and
2.1, levels A and AA, and axe's best practices): no violation, in the light and the dark theme."""

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse

from console import providers, versions
from console.models import AlertDestination, AuditEvent
from tests.support import (
    browser_sign_in,
    make_instance,
    make_pool,
    make_provider,
    make_user,
    stored_cognito_provider,
    validated_keycloak_provider,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


def violations(page):
    """axe-core's findings on the page as it is: one line per rule and element."""
    results = Axe().run(page, options=AXE_OPTIONS)
    return [
        f"{page.url}: {rule['id']} ({rule['impact']}): {rule['help']} at {node['target']}"
        for rule in results.response["violations"]
        for node in rule["nodes"]
    ]


@pytest.fixture
def console_world(django_user_model, idp, moto):
    """A provider of each kind, one that fails its checks, instances, a published version,
    history, an alert destination and a user of each role."""
    from tests import idp_server

    keycloak = validated_keycloak_provider(idp_server.serve_keycloak(idp))
    lab, _ = make_instance(keycloak, "eu-1", rollout_group="canary")
    make_instance(keycloak, "us-1")
    version = versions.publish(keycloak, group="canary", note="first rollout")
    pool, app = make_pool(moto)
    cognito = make_provider(pool, app)  # moto's pool: its checks fail (no hosted-UI endpoints)
    providers.run_validation(cognito)
    stored_cognito_provider("eu-west-1_Stored2", name="Staff Cognito")
    destination = AlertDestination(name="ops mail", kind="email", email_to="ops@corp.test")
    destination.save()
    return {
        "keycloak": keycloak, "cognito": cognito, "instance": lab, "version": version,
        "destination": destination,
        "admin": make_user(django_user_model, "alice", "admin"),
        "auditor": make_user(django_user_model, "oscar", "auditor"),
    }  # fmt: skip


def pages_for(world, role):
    keycloak, cognito = world["keycloak"].pk, world["cognito"].pk
    instance = world["instance"].pk
    pages = [
        reverse("providers"),
        reverse("provider-detail", args=[keycloak]),
        reverse("provider-detail", args=[cognito]),
        reverse("cognito-inspect", args=[cognito]),
        reverse("version-detail", args=[keycloak, world["version"].number]),
        reverse("version-diff", args=[keycloak]),
        reverse("instances"),
        reverse("instance-detail", args=[instance]),
        reverse("history"),
        reverse("history-event", args=[AuditEvent.objects.order_by("-id").first().pk]),
        reverse("history-verify"),
        reverse("alerts"),
        reverse("users"),
        reverse("api-tokens"),
        reverse("choose-password"),
    ]
    if role == "admin":
        pages += [
            reverse("provider-new"),
            *(reverse("provider-create", args=[kind]) for kind in ("cognito", "keycloak", "oidc")),
            reverse("cognito-provision"),
            reverse("provider-edit", args=[keycloak]),
            reverse("provider-delete", args=[keycloak]),
            reverse("provider-signin-account", args=[cognito]),
            reverse("federation-new", args=[cognito, "google"]),
            reverse("instance-create"),
            reverse("instance-edit", args=[instance]),
            reverse("instance-delete", args=[instance]),
            reverse("config-import"),
            reverse("alert-destination-edit", args=[world["destination"].pk]),
        ]
    return pages


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("role", ["admin", "auditor"])
def test_every_page_passes_an_axe_audit(live_server, page, console_world, role, scheme):
    page.emulate_media(color_scheme=scheme)
    page.goto(f"{live_server.url}/login/")
    found = violations(page)  # the login page, before anyone signs in
    browser_sign_in(page, live_server, console_world[role])
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == {"light": "rgb(246, 247, 249)", "dark": "rgb(18, 22, 29)"}[scheme]
    for path in pages_for(console_world, role):
        response = page.goto(live_server.url + path)
        assert response.status == 200, path
        found += violations(page)
    assert found == [], "\n".join(found)
