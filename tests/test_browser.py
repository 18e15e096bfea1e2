"""Real Chromium, through Playwright, against Django's live server."""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

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
