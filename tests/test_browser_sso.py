"""The console's own single sign-on in real Chromium against the certified node oidc-provider."""

import re

import pytest
from playwright.sync_api import expect

from console import providers
from console.kinds import OIDCProviderForm
from console.models import Provider
from tests.idp_server import signing_key
from tests.support import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACCOUNTS = {
    "alice": {"sub": "alice-sub", "email": "alice@example.test", "groups": ["console-admins"]},
    "oscar": {"sub": "oscar-sub", "email": "oscar@example.test", "groups": ["console-auditors"]},
    "nora": {"sub": "nora-sub", "email": "nora@example.test", "groups": ["engineering"]},
}


@pytest.fixture
def sso(node_op, live_server, settings):
    """The node OP, with a client for this live server, marked as the console's sign-in."""
    node_op.start(
        clients=[
            {
                "client_id": "console",
                "client_secret": "console-test-secret",
                "redirect_uris": [f"{live_server.url}/oidc/callback/"],
                "post_logout_redirect_uris": [f"{live_server.url}/login/"],
                "token_endpoint_auth_method": "client_secret_post",
            }
        ],
        accounts=ACCOUNTS,
        jwks={"keys": [signing_key("op-key-1").as_dict(private=True)]},
    )
    settings.CONSOLE_ADMIN_GROUPS = ["console-admins"]
    settings.CONSOLE_AUDITOR_GROUPS = ["console-auditors"]
    form = OIDCProviderForm(
        data={
            "name": "Company SSO",
            "issuer": node_op.issuer,
            "client_id": "console",
            "client_secret": "console-test-secret",
            "scopes": "openid email profile groups",
        }
    )
    assert form.is_valid(), form.errors
    provider, report = providers.run_validation(providers.save_provider(form))
    assert report.ok, report.as_list()
    providers.mark_console_login(provider)
    return provider


def sign_in_at_op(page, login, live_server):
    """Fill the OP's login form (and consent, when asked) and come back to the console."""
    page.locator('input[name="login"]').fill(login)
    page.locator('input[name="password"]').fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.wait_for_url(re.compile(rf"^({re.escape(live_server.url)}|.*/interaction/).*"))
    if "/interaction/" in page.url:
        page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(rf"^{re.escape(live_server.url)}.*"))


def local_sign_in(page, live_server, user):
    """The login page's local form, behind its "Emergency" disclosure while SSO is set up."""
    page.goto(f"{live_server.url}/login/")
    page.get_by_text("Emergency: sign in with a local account").click()
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sso_sign_in(page, live_server, login):
    page.goto(f"{live_server.url}/login/")
    page.get_by_role("link", name="Sign in with Company SSO").click()
    sign_in_at_op(page, login, live_server)


def test_an_admin_signs_in_edits_and_signs_out_of_both(page, live_server, sso, node_op):
    sso_sign_in(page, live_server, "alice")
    expect(page).to_have_url(f"{live_server.url}/providers/")
    expect(page.locator(".badge-admin").first).to_have_text("admin")
    expect(page.get_by_role("link", name="Add provider")).to_be_visible()
    expect(page.get_by_text("local break-glass account")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Yes, sign me out").click()  # the OP's own confirmation
    expect(page).to_have_url(re.compile(rf"^{re.escape(live_server.url)}/login/"))

    # The OP session ended too: signing in again asks for the login form.
    page.get_by_role("link", name="Sign in with Company SSO").click()
    expect(page.locator('input[name="login"]')).to_be_visible()


def test_an_auditor_is_read_only_and_a_user_in_no_group_is_refused(browser, live_server, sso):
    auditor = browser.new_context().new_page()
    sso_sign_in(auditor, live_server, "oscar")
    expect(auditor.locator(".whoami .badge")).to_have_text("auditor")
    expect(auditor.get_by_role("link", name="Add provider")).to_have_count(0)

    outsider = browser.new_context().new_page()
    sso_sign_in(outsider, live_server, "nora")
    expect(outsider.get_by_role("heading", name="No access")).to_be_visible()
    outsider.goto(f"{live_server.url}/providers/")
    expect(outsider).to_have_url(re.compile(r"/login/\?next="))


def test_test_login_shows_the_claims(page, live_server, sso, admin_user):
    local_sign_in(page, live_server, admin_user)
    expect(page.get_by_text("Signed in with a local break-glass account")).to_be_visible()

    page.goto(f"{live_server.url}/providers/{sso.pk}/")
    page.get_by_role("link", name="Test login").click()
    sign_in_at_op(page, "oscar", live_server)
    expect(page.get_by_text("The test login worked.")).to_be_visible()
    expect(page.get_by_text("would sign in as auditor")).to_be_visible()
    expect(page.locator("#userinfo")).to_contain_text("oscar@example.test")
    expect(page.locator("#id-token-claims")).to_contain_text('"sub": "oscar-sub"')
    # Still the local admin: the test login did not touch the session.
    expect(page.locator(".whoami")).to_contain_text(admin_user.username)


def test_a_key_rotation_at_the_op_does_not_break_sign_in(page, live_server, sso, node_op):
    node_op.start(jwks={"keys": [signing_key("op-key-2").as_dict(private=True)]})
    sso_sign_in(page, live_server, "alice")
    expect(page).to_have_url(f"{live_server.url}/providers/")
    expect(page.locator(".whoami")).to_contain_text("alice")
    kids = [key["kid"] for key in Provider.objects.get(pk=sso.pk).jwks_snapshot["keys"]]
    assert kids == ["op-key-2"]


def test_an_admin_maps_a_group_on_the_users_page_and_a_test_login_then_maps_the_user(
    page, live_server, sso, admin_user, settings
):
    """nora's group, engineering, gives no role; mapped to auditor on the Users page (no
    restart), her test login says she would sign in as auditor, and then she does."""
    local_sign_in(page, live_server, admin_user)

    page.goto(f"{live_server.url}/providers/{sso.pk}/")
    page.get_by_role("link", name="Test login").click()
    sign_in_at_op(page, "nora", live_server)
    expect(page.get_by_text("the console would refuse it")).to_be_visible()
    page.locator(".groups-hint").get_by_role("link", name="Users page").first.click()

    section = page.locator("#role-groups")
    expect(section).to_contain_text("bootstrap defaults from CONSOLE_ADMIN_GROUPS")
    expect(section.get_by_label("Admin groups")).to_have_value("console-admins")
    section.get_by_label("Auditor groups").fill("console-auditors\nengineering")
    section.get_by_role("button", name="Save role groups").click()
    expect(page.get_by_text("Saved which groups give the roles")).to_be_visible()
    expect(section).to_contain_text(f"Set here by {admin_user.username}")

    page.goto(f"{live_server.url}/providers/{sso.pk}/")
    page.get_by_role("link", name="Test login").click()
    sign_in_at_op(page, "nora", live_server)
    expect(page.get_by_text("would sign in as auditor")).to_be_visible()

    settings.CONSOLE_AUDITOR_GROUPS = []  # no longer read: the mapping is the console's now
    nora = page.context.browser.new_context().new_page()
    sso_sign_in(nora, live_server, "nora")
    expect(nora.locator(".whoami .badge")).to_have_text("auditor")


def test_a_local_auditor_signs_in_with_no_break_glass_banner_event_or_alert(
    page, live_server, sso, auditor_user, admin_user
):
    """Break-glass is a local admin while single sign-on is configured; an external auditor
    with a local account is just a local user."""
    from console.models import Alert, AuditEvent

    local_sign_in(page, live_server, auditor_user)
    expect(page.locator(".whoami .badge")).to_have_text("auditor")
    page.get_by_role("link", name="History").click()
    expect(page.get_by_text("local break-glass account")).to_have_count(0)
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert "login.succeeded" in actions and "login.break_glass" not in actions
    assert not Alert.objects.exists()

    # The local admin, by contrast, is break-glass: banner and event.
    admin = page.context.browser.new_context().new_page()
    local_sign_in(admin, live_server, admin_user)
    expect(admin.get_by_text("Signed in with a local break-glass account")).to_be_visible()
    assert AuditEvent.objects.filter(action="login.break_glass").count() == 1
