"""The pages a new admin and an auditor meet first, in real Chromium: the users page, the publish
confirmation and the auditor's read-only provider page. On failure, pytest-playwright keeps a
screenshot under var/test-results/."""

import re

import pytest
from playwright.sync_api import expect

from tests import idp_server
from tests.support import (
    add_keycloak_in_browser,
    browser_sign_in,
    make_instance,
    make_user,
    stored_cognito_provider,
    validated_keycloak_provider,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def watch_console(page):
    """Every error the browser reports: console errors (CSP violations, htmx's own) and
    uncaught exceptions."""
    problems = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def assert_fits_the_window(page):
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page is wider than the window: {widths}"


@pytest.fixture
def keycloak(idp, django_db_blocker):
    return validated_keycloak_provider(
        idp_server.serve_keycloak(idp), diffgram_url_base="https://lab.example.test/",
        scopes="openid email",
    )  # fmt: skip


CONTRAST = """element => {
    const rgb = text => text.match(/[0-9.]+/g).slice(0, 3).map(Number);
    const luminance = ([r, g, b]) => {
        const [R, G, B] = [r, g, b].map(c => {
            c /= 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * R + 0.7152 * G + 0.0722 * B;
    };
    const style = getComputedStyle(element);
    const [a, b] = [luminance(rgb(style.color)), luminance(rgb(style.backgroundColor))];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


def contrast_ratio(locator):
    """WCAG's contrast ratio of an element's text on its own background colour."""
    return locator.evaluate(CONTRAST)


def test_an_admin_adds_an_auditor_on_the_users_page(live_server, page, admin_user):
    problems = watch_console(page)
    page.set_viewport_size({"width": 1024, "height": 800})
    browser_sign_in(page, live_server, admin_user)
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users and roles")).to_be_visible()

    long_name = "external-auditor-from-the-big-four-firm-with-a-very-long-name" + "x" * 40
    page.get_by_label("Username").fill(long_name)
    page.get_by_label("Role", exact=True).select_option("auditor")
    page.get_by_role("button", name="Create user").click()

    handover = page.locator(".handover")
    expect(handover).to_contain_text("shown only this once")
    expect(handover).to_have_class("result result-secret handover")  # to copy, not an error
    password = page.locator("#one-time-password").inner_text()
    assert len(password) >= 20
    row = page.locator(f'tr[data-username="{long_name}"]')
    expect(row).to_contain_text("set locally")
    expect(row.locator(".badge")).to_have_text("auditor")

    # Nothing on your own row that the console would refuse.
    own = page.locator(f'tr[data-username="{admin_user.username}"]')
    expect(own.get_by_role("button", name="Disable")).to_have_count(0)
    expect(own.get_by_role("button", name="Set role")).to_have_count(0)
    expect(own.locator(".own-row")).to_contain_text("another admin changes your role")
    # Disabling someone asks first; saying no changes nothing.
    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    row.get_by_role("button", name="Disable").click()
    expect(row.get_by_role("button", name="Disable")).to_be_visible()
    assert questions == [
        f"Disable {long_name}? They are signed out at once and their API tokens stop working."
    ]
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Disable").click()
    expect(page.locator(f'tr[data-username="{long_name}"]')).to_contain_text("disabled")
    for badge in page.locator("main .badge").all():  # WCAG 2.1 AA: 4.5 for small text
        assert contrast_ratio(badge) >= 4.5, badge.inner_text()
    assert_fits_the_window(page)  # the long name wraps instead of widening the table
    assert problems == []


def test_publishing_shows_the_diff_and_the_instances_before_it_publishes(
    live_server, page, admin_user, keycloak
):
    make_instance(keycloak, "lab", rollout_group="canary")
    make_instance(keycloak, "prod", rollout_group="main")
    problems = watch_console(page)
    browser_sign_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/providers/{keycloak.pk}/")
    page.get_by_label("Publish to").select_option(label="group canary first")
    page.get_by_label("Why (shown in the history)").fill("Move lab to the new realm (CHG-1042)")
    page.get_by_role("button", name="Publish").click()

    expect(page.get_by_role("heading", name="Publish v1 of Lab Keycloak?")).to_be_visible()
    expect(page.locator(".why-note")).to_have_text("Move lab to the new realm (CHG-1042)")
    expect(page.locator("table.diff")).to_contain_text("KEYCLOAK_REALM")
    # Keycloak used directly: Diffgram's own defects stop every sign-in, said before publishing.
    defects = page.locator(".blocking-defects")
    expect(defects).to_contain_text("Nobody can sign in to Diffgram 56f04d8 with this setup")
    expect(defects).to_contain_text("keycloak.redirect_route")
    # Each instance with the client id it gets, not the template diffgram-{instance}.
    expect(page.locator(".instances-now")).to_contain_text("lab")
    expect(page.locator(".instances-now .client-id")).to_have_text("diffgram-lab")
    expect(page.locator(".instances-later")).to_contain_text("prod")
    expect(page.locator(".instances-later .client-id")).to_have_text("diffgram-prod")
    assert_fits_the_window(page)
    page.get_by_role("button", name="Publish v1").click()
    expect(page.get_by_text("Published Lab Keycloak v1.")).to_be_visible()
    assert problems == []


def test_an_auditor_reads_a_provider_without_write_buttons(
    live_server, page, keycloak, django_user_model
):
    auditor = make_user(django_user_model, "oscar-auditor", "auditor")
    make_instance(keycloak, "lab")
    problems = watch_console(page)
    browser_sign_in(page, live_server, auditor)
    page.goto(f"{live_server.url}/providers/{keycloak.pk}/")
    expect(page.get_by_role("heading", name="Lab Keycloak")).to_be_visible()
    expect(page.get_by_text("KEYCLOAK_REALM", exact=True)).to_be_visible()
    for name in ("Edit", "Validate now", "Disable", "Delete", "Publish"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    page.goto(f"{live_server.url}/providers/{keycloak.pk}/edit/")
    expect(page.get_by_text("only admins")).to_be_visible()
    assert [p for p in problems if "403" not in p] == []  # the refused page's own status


def test_htmx_runs_under_the_csp_without_errors(live_server, page, admin_user, idp):
    """The discovery preview (hx-post) and the fleet table's polling (hx-trigger) work with
    script-src 'self' and no 'unsafe-eval'."""
    issuer = idp_server.serve_okta(idp)
    problems = watch_console(page)
    browser_sign_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/providers/new/oidc/")
    page.get_by_label("Issuer URL").fill(issuer)
    page.get_by_role("button", name="Fetch from discovery").click()
    expect(page.locator("#discovery-preview")).to_contain_text(f"{issuer}/v1/token")
    assert problems == []


def test_the_fleet_table_polls_under_the_csp_without_errors(
    live_server, page, admin_user, keycloak
):
    """While a push is in flight the fleet table refreshes itself every 2 s (hx-trigger)."""
    from console import versions

    make_instance(keycloak, "lab", push_target="webhook", webhook_url="http://127.0.0.1:9/")
    versions.publish(keycloak)  # no worker here: the push stays pending, so the table polls
    problems = watch_console(page)
    browser_sign_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/instances/")
    with page.expect_request(lambda request: request.headers.get("hx-request") == "true"):
        pass  # the first refresh, about 2 s after the page loaded
    assert problems == []


def test_an_htmx_error_answer_shows_in_place_without_eval_even_in_debug(
    live_server, page, admin_user, idp, settings
):
    """Under DEBUG (make run) an expired form used to trigger a helper that eval()s the error
    page, which the CSP refuses. The answer is now shown where the preview goes."""
    settings.DEBUG = True
    issuer = idp_server.serve_okta(idp)
    problems = watch_console(page)
    browser_sign_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/providers/new/oidc/")
    page.get_by_label("Issuer URL").fill(issuer)
    page.context.clear_cookies(name="csrftoken")  # the session's form has gone stale
    page.get_by_role("button", name="Fetch from discovery").click()
    preview = page.locator("#discovery-preview")
    expect(preview).to_contain_text("This form has expired")
    expect(page.locator("header.topbar")).to_have_count(1)  # a fragment, not a second page
    assert [p for p in problems if "status of 403" not in p] == []


def test_the_registration_page_fits_the_window_with_its_commands(
    live_server, page, admin_user, keycloak
):
    problems = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 900})
    browser_sign_in(page, live_server, admin_user)
    page.goto(f"{live_server.url}/instances/new/")
    page.get_by_label("Name").fill("lab")
    page.get_by_label("URL_BASE").fill("https://lab.example.test/")
    page.get_by_label("Provider").select_option(label="Lab Keycloak")
    # Only the chosen push target's own fields are shown.
    expect(page.get_by_label("Webhook URL")).to_be_hidden()
    expect(page.get_by_label("SSM parameter prefix")).to_be_hidden()
    page.get_by_label("Push target").select_option("ssm")
    expect(page.get_by_label("SSM parameter prefix")).to_be_visible()
    expect(page.get_by_label("Webhook URL")).to_be_hidden()
    page.get_by_label("Push target").select_option("webhook")
    expect(page.get_by_label("SSM parameter prefix")).to_be_hidden()
    page.get_by_label("Webhook URL").fill("https://lab-host.example.test:9443/")
    page.get_by_role("button", name="Register").click()
    expect(page).to_have_url(re.compile(r"/instances/\d+/credentials/$"))  # not the POST's URL
    commands = page.locator("#agent-commands")
    expect(commands).to_contain_text("serve --listen 0.0.0.0:9443")
    # Diffgram restarts with each new version, and the agent verifies it on the host itself.
    expect(commands).to_contain_text("--on-change 'docker compose --project-directory")
    expect(commands).to_contain_text("--diffgram-url http://127.0.0.1:8085/")
    box = commands.evaluate("element => [element.scrollWidth, element.clientWidth]")
    assert box[0] <= box[1], f"the commands overflow their block: {box}"
    assert_fits_the_window(page)
    assert problems == []


def test_an_admin_adds_an_alert_destination(live_server, page, admin_user):
    problems = watch_console(page)
    page.set_viewport_size({"width": 800, "height": 900})
    browser_sign_in(page, live_server, admin_user)
    page.get_by_role("link", name="Alerts").click()
    expect(page.get_by_text("No destination yet: nobody is told.")).to_be_visible()
    page.get_by_label("Name").fill("ops mail")
    page.get_by_label("Kind").select_option("email")
    page.get_by_label("Email addresses").fill("ops@example.test")
    page.get_by_label("A push fails for good").check()
    page.get_by_label("An instance drifts or stops pulling").check()
    page.get_by_role("button", name="Add destination").click()
    expect(page.get_by_text("Alerts now go to ops mail.")).to_be_visible()
    row = page.locator('tr[data-destination="ops mail"]')
    expect(row).to_contain_text("ops@example.test")
    expect(row).to_contain_text("push_failed, instance_drifting")
    assert_fits_the_window(page)
    assert problems == []


def test_a_keycloak_url_base_without_its_slash_is_refused_inline_and_never_offered_to_copy(
    live_server, page, admin_user, idp, keycloak
):
    """Diffgram appends user/oidc-login to URL_BASE without a "/": https://corp.test would
    register https://corp.testuser/oidc-login. Refused where it is typed; nothing broken to copy."""
    server_url = idp_server.serve_keycloak(idp)
    browser_sign_in(page, live_server, admin_user)
    add_keycloak_in_browser(
        page, live_server, server_url, name="Corp Keycloak", url_base="https://corp.test",
        master_password="url-base-secret",
    )  # fmt: skip

    field = page.locator(".field.has-error")
    expect(field).to_contain_text("End URL_BASE with / — Diffgram appends its paths to it")
    expect(field).to_contain_text("https://corp.test/")
    expect(page.get_by_label("Name")).to_have_value("Corp Keycloak")  # nothing typed is lost
    expect(page.locator("[data-copy]")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("corp.testuser")

    # The provider page's URL_BASE preview follows the same rule.
    page.goto(f"{live_server.url}/providers/{keycloak.pk}/?url_base=https://corp.test")
    expect(page.locator("#url-base-error")).to_contain_text("End URL_BASE with /")
    expect(page.locator(".registrations")).to_have_count(0)
    expect(page.locator("main")).not_to_contain_text("corp.testuser")
    page.get_by_label("Diffgram URL_BASE").fill("https://corp.test/")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".registrations")).to_contain_text("https://corp.test/user/oidc-login")


BROKEN_WORDS = """table => {
    // Words of up to 24 characters that the layout split over two lines ("canar|y"); a
    // break after "-" or "/" is between words.
    const broken = [];
    const walker = document.createTreeWalker(table, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode;
        for (const match of node.textContent.matchAll(/[^\\s\\/-]{2,24}/g)) {
            const range = document.createRange();
            range.setStart(node, match.index);
            range.setEnd(node, match.index + match[0].length);
            const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
            if (tops.size > 1) broken.push(match[0]);
        }
    }
    return broken;
}"""


def test_screenshots_of_the_provider_page_failures_first_and_the_fleet_without_broken_words(
    live_server, page, admin_user, keycloak, moto
):
    """Kept under var/test-results/ for a reviewer's eyes; what they must show is asserted."""
    from console import providers
    from tests.support import make_pool, make_provider

    pool, app = make_pool(moto)
    cognito = make_provider(pool, app)  # moto's pool: its hosted-UI checks fail
    providers.run_validation(cognito)
    for number, group in enumerate(("canary", "canary", "main", "main", "enabled-hosts")):
        make_instance(keycloak, f"annotation-cluster-{number}", rollout_group=group,
                      url_base=f"http://127.0.0.1:{8100 + number}/")  # fmt: skip
    page.set_viewport_size({"width": 1024, "height": 900})
    browser_sign_in(page, live_server, admin_user)

    page.goto(f"{live_server.url}/providers/{cognito.pk}/")
    statuses = page.locator(".checklist .check-status").all_inner_texts()
    assert statuses[0].endswith("fail") and "fail" not in " ".join(statuses[-3:])
    assert statuses == sorted(statuses, key=lambda s: ["fail", "warn", "pass", "skip"].index(s[2:]))
    page.screenshot(path="var/test-results/provider-page-failures-first.png", full_page=True)

    page.goto(f"{live_server.url}/instances/")
    table = page.locator("table.fleet")
    expect(table.locator("tbody tr")).to_have_count(6)  # the 5 and make_provider's "lab"
    assert table.evaluate(BROKEN_WORDS) == []
    assert_fits_the_window(page)
    page.screenshot(path="var/test-results/fleet.png", full_page=True)

    page.goto(f"{live_server.url}/history/")
    assert page.locator("table").first.evaluate(BROKEN_WORDS) == []
    # History uses the width of the window, not half of it.
    width = page.locator("main").evaluate("main => main.getBoundingClientRect().width")
    assert width > 0.9 * 1024 - 40, width


def test_providers_instances_and_users_are_searched_by_the_server_in_a_shareable_url(
    live_server, page, admin_user, keycloak
):
    from django.contrib.auth import get_user_model

    stored = stored_cognito_provider()
    make_instance(keycloak, "eu-annotation", rollout_group="canary")
    make_instance(stored, "us-review", url_base="https://review.corp.test/")
    make_user(get_user_model(), "dana-auditor", "auditor")
    browser_sign_in(page, live_server, admin_user)

    def search(list_url, form_label, term):
        page.goto(f"{live_server.url}{list_url}")
        form = page.get_by_role("form", name=form_label)
        form.get_by_label("Search").fill(term)
        form.get_by_role("button", name="Search").click()
        expect(page).to_have_url(re.compile(rf"[?&]q={re.escape(term)}"))

    search("/providers/", "Search providers", "cognito")
    expect(page.locator("main table tbody tr")).to_have_count(1)
    expect(page.locator("main table")).to_contain_text("Corp Cognito")

    search("/instances/", "Search the fleet", "review.corp")  # by URL
    expect(page.locator("table.fleet tbody tr")).to_have_count(1)
    expect(page.locator('tr[data-instance="us-review"]')).to_be_visible()
    search("/instances/", "Search the fleet", "canary")  # by group
    expect(page.locator("table.fleet tbody tr")).to_have_count(1)
    expect(page.locator('tr[data-instance="eu-annotation"]')).to_be_visible()
    shared = page.url
    page.get_by_label("State").select_option("drifting")  # with a state, still in the URL
    page.get_by_role("button", name="Search").click()
    expect(page).to_have_url(re.compile(r"state=drifting"))

    search("/users/", "Search users", "auditor")  # by role
    expect(page.locator("tr.user-row")).to_have_count(1)
    expect(page.locator('tr[data-username="dana-auditor"]')).to_be_visible()

    page.goto(shared)  # a shared link shows the same search
    expect(page.locator("table.fleet tbody tr")).to_have_count(1)
    expect(page.get_by_role("form", name="Search the fleet").get_by_label("Search")).to_have_value(
        "canary"
    )
