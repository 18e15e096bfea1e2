"""Real Chromium, through Playwright, against Django's live server."""

import pytest
from playwright.sync_api import expect

from tests import idp_server
from tests.support import PASSWORD, add_keycloak_in_browser, browser_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_logs_in_through_the_form_and_sees_the_providers_page(live_server, page, admin_user):
    page.goto(f"{live_server.url}/providers/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/providers/")

    page.get_by_label("Username").fill(admin_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server.url}/providers/")
    expect(page.get_by_role("heading", name="Identity providers")).to_be_visible()
    expect(page.get_by_text("No identity providers yet.")).to_be_visible()
    expect(page.locator(".whoami")).to_contain_text("alice-admin")


def test_an_admin_fetches_discovery_without_reload_and_adds_a_provider(
    live_server, page, admin_user, idp
):
    issuer = idp_server.serve_okta(idp)
    csp_violations = []
    page.on("console", lambda message: csp_violations.append(message.text))
    browser_sign_in(page, live_server, admin_user)

    page.get_by_role("link", name="Add provider").click()
    page.get_by_role("link", name="Generic OIDC").click()
    page.get_by_label("Name").fill("Corporate Okta")
    page.get_by_label("Issuer URL").fill(issuer)
    page.get_by_label("Client id").fill("0oa1")
    form_url = page.url
    page.get_by_role("button", name="Fetch from discovery").click()

    preview = page.locator("#discovery-preview")
    expect(preview).to_contain_text(f"{issuer}/v1/token")
    expect(preview.locator('[data-check="jwks.keys"]')).to_contain_text("pass")
    assert page.url == form_url
    expect(page.get_by_label("Name")).to_have_value("Corporate Okta")  # no reload lost input

    page.get_by_role("button", name="Add and validate").click()
    expect(page.get_by_role("heading", name="Corporate Okta")).to_be_visible()
    expect(page.get_by_text("Corporate Okta passed validation")).to_be_visible()
    assert not [text for text in csp_violations if "Content Security Policy" in text]


def test_an_admin_rolls_out_a_provider_and_sees_the_agent_apply_it(
    live_server, page, admin_user, idp, tmp_path
):
    """The whole journey: provider → instance → publish → a real agent pulls → fleet in sync."""
    from console.models import Instance
    from tests.support import AgentProcess

    server_url = idp_server.serve_keycloak(idp)
    browser_sign_in(page, live_server, admin_user)

    add_keycloak_in_browser(
        page, live_server, server_url, name="Lab Keycloak", url_base="https://lab.example.test/",
        master_password="journey-secret",
    )  # fmt: skip
    expect(page.get_by_text("Lab Keycloak passed validation")).to_be_visible()

    page.get_by_role("link", name="Instances").click()
    page.get_by_role("link", name="Register instance").click()
    page.get_by_label("Name").fill("lab")
    page.get_by_label("URL_BASE").fill("https://lab.example.test/")
    page.get_by_label("Provider").select_option(label="Lab Keycloak")
    page.get_by_role("button", name="Register").click()
    token = page.locator("#token").inner_text()
    assert token.startswith("dgi_")
    page.get_by_role("link", name="Done").click()

    page.get_by_role("link", name="Lab Keycloak").click()
    page.get_by_label("Why (shown in the history)").fill("first rollout")
    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("heading", name="Publish v1 of Lab Keycloak?")).to_be_visible()
    expect(page.locator(".instances-now")).to_contain_text("lab")
    page.get_by_role("button", name="Publish v1").click()
    expect(page.get_by_text("Published Lab Keycloak v1.")).to_be_visible()

    agent = AgentProcess(tmp_path, Instance.objects.get(name="lab"), token, live_server.url)
    result = agent.pull()
    assert result.returncode == 0, result.stderr
    assert agent.env()["KEY_CLOAK_MASTER_PASSWORD"] == "journey-secret"
    assert agent.env()["OAUTH2_PROVIDER_CLIENT_ID"] == "diffgram-lab"

    page.get_by_role("link", name="Instances").click()
    row = page.locator('tr[data-instance="lab"]')
    expect(row.locator("td.applied")).to_have_text("v1")
    expect(row.locator("td.state")).to_have_text("in sync")
