"""`make demo` as a new admin tries it: the one-time password, a provider that passes every
check, Publish, and two stand-in Diffgram instances signed in through their callbacks, seen in
Chromium; Ctrl-C stops every part."""

import subprocess

import pytest
from playwright.sync_api import expect

from tests.support import MakeTarget, free_port, require_node_op, subprocess_environment

pytestmark = pytest.mark.browser

START_TIMEOUT = 180  # a fresh clone installs nothing more here, but migrates a new database
SIGNED_IN_TIMEOUT_MS = 90_000  # two polls (5 s apart) and a sign-in each, with room to spare


def demo_processes(port):
    """The demo's processes still running: every one of them names its folder var/demo/PORT."""
    found = subprocess.run(
        ["pgrep", "-f", f"var/demo/{port}|demo --port {port}"], capture_output=True, text=True
    )
    return found.stdout.split()


def test_make_demo_publishes_to_two_stand_ins_that_sign_in_and_stops_on_ctrl_c(page):
    require_node_op()
    port = free_port()
    demo = MakeTarget("demo", f"PORT={port}", env=subprocess_environment())
    try:
        password = demo.read_until(r"password: (\S+)", START_TIMEOUT)[1]
        url = f"http://127.0.0.1:{port}"

        page.goto(f"{url}/login/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("New password", exact=True).fill("a demo admin's own password")
        page.get_by_label("New password confirmation").fill("a demo admin's own password")
        page.get_by_role("button", name="Set password").click()
        expect(page.locator(".banner")).to_contain_text("Demo.")

        page.goto(f"{url}/providers/")
        steps = page.locator(".getting-started li")
        # Seeded: a provider and two instances; the agents have nothing to pull yet.
        for number, state in enumerate(("done", "done", "todo", "todo", "todo"), start=1):
            expect(steps.nth(number - 1)).to_have_class(f"step-{state}")
        page.get_by_role("link", name="Demo Cognito", exact=True).click()
        expect(page.locator(".status-fail")).to_have_count(0)  # every check passes
        page.get_by_label("Why (shown in the history)").fill("trying the demo")
        page.get_by_role("button", name="Publish").click()
        page.get_by_role("button", name="Publish v1").click()
        expect(page.get_by_text("Published Demo Cognito v1.")).to_be_visible()

        # The fleet page refreshes itself until both have signed in (no reload).
        page.get_by_role("link", name="Instances").click()
        for name, by in (("demo-eu", "by the agent"), ("demo-us", "by the console")):
            cell = page.locator(f'tr[data-instance="{name}"] td.verified')
            expect(cell).to_contain_text("✓ signed in v1", timeout=SIGNED_IN_TIMEOUT_MS)
            expect(cell).to_contain_text(by)

        page.get_by_role("link", name="Providers").click()
        expect(page.get_by_role("heading", name="Identity providers")).to_be_visible()
        expect(page.locator(".getting-started")).to_have_count(0)  # every step done

        page.get_by_role("link", name="History").click()
        expect(page.locator("main")).to_contain_text("demo set-up")  # what the demo seeded
        page.locator("tr", has_text="version.published").get_by_role("link").first.click()
        expect(page.locator("main")).to_contain_text("trying the demo")
    finally:
        demo.interrupt()
    assert "The demo stopped" in demo.output
    assert demo_processes(port) == []
