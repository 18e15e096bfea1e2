"""Verifying that Diffgram signs people in with what it runs, shared by the agent (after it
applies a version) and the console (console/verification.py, through its own HTTP module).
Standard library only: it ships inside the agent.

Diffgram answers GET <URL_BASE>api/configs/is-oauth2-set without authentication with
{"use_oauth2": false} or {"use_oauth2": true, "login_url": ...}. The console gives the expected
values (VERIFY_HEADER on a pull, "verify" in a push) and runs the same code itself through its
own HTTP module, passing its `send`.

Two depths. The probe asks Diffgram and loads the identity provider's login page. The
synthetic sign-in, given a test account, goes on as a person does (docs/DIFFGRAM.md): it
submits the login form, lands on Diffgram's callback page with a code, does what that page
does (POST api/v1/auth/callback), checks that Diffgram signed the test account in, and signs
out. Each step is reported by name with a one-line detail that never holds the password, the
code or a token.
"""

import html.parser
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

IS_OAUTH2_SET = "api/configs/is-oauth2-set"
VERIFY_HEADER = "X-Config-Verify"  # the expectations, on a pull answer (JSON)
MAX_BODY = 1024 * 1024
HTTP_TIMEOUT = 10

FRONTEND_CALLBACK = "user/oauth2-login/"  # the one page of Diffgram's frontend that signs in
AUTH_CALLBACK = "api/v1/auth/callback"
LOGOUT = "api/v1/user/logout"
MAX_HOPS = 10  # redirects followed at the identity provider (and the ones it federates)
# Words an identity provider's error answer holds: Cognito's /error?error=redirect_mismatch,
# Keycloak's "Invalid parameter: redirect_uri", oidc-provider's invalid_redirect_uri.
IDP_ERRORS = re.compile(
    r"redirect_mismatch|invalid_redirect_uri|invalid parameter: redirect_uri|invalid_client|"
    r"unauthorized_client|invalid_request|invalid_scope",
    re.IGNORECASE,
)


class Unreachable(Exception):
    """A request that got no HTTP answer (refused, timed out, not resolved)."""


def http_send(method, url, body=None, headers=None):
    """One request, no redirect followed: (status, headers with lower-case names, body, the
    Set-Cookie values). Only http(s): a login_url or a redirect must never make the agent
    read a local file."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise Unreachable(f"{url[:200]} is not an http(s) URL")
    opener = urllib.request.build_opener(_NoRedirect)
    headers = {"Accept": "application/json, text/html", **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - http(s)
            return _answer(response, response.status)
    except urllib.error.HTTPError as answer:
        return _answer(answer, answer.code)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise Unreachable(str(getattr(error, "reason", error))) from None


def _answer(response, status):
    headers = {name.lower(): value for name, value in response.headers.items()}
    return status, headers, response.read(MAX_BODY), response.headers.get_all("Set-Cookie") or []


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _without_query(url):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _host(url):
    return urllib.parse.urlsplit(url).netloc


class Browser:
    """What a browser keeps between requests: cookies, per host (name=value only; paths and
    domains do not matter for one sign-in). Redirects are followed by the caller, one at a
    time, so that it sees where each goes."""

    def __init__(self, send):
        self.send = send
        self.cookies = {}  # host -> {name: value}

    def fetch(self, method, url, *, form=None, body=None, headers=None):
        """(status, headers, body) of one request with its host's cookies; keeps new ones."""
        headers = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        jar = self.cookies.setdefault(_host(url), {})
        if jar:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in jar.items())
        status, answer_headers, answer, set_cookies = self.send(method, url, body, headers)
        for line in set_cookies:
            pair, _, attributes = line.partition(";")
            name, _, value = pair.partition("=")
            expired = re.search(r"max-age=0\b|expires=[^;]*1970", attributes, re.IGNORECASE)
            if not value.strip() or expired:
                jar.pop(name.strip(), None)
            else:
                jar[name.strip()] = value.strip()
        return status, answer_headers, answer


class _Page(html.parser.HTMLParser):
    """A page's forms (action, method, fields) and the words a person reads first."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.forms, self.heading, self.alert, self._reading = [], "", "", None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = {name: value or "" for name, value in attrs}
        if tag == "form":
            method = attrs.get("method", "get").lower()
            self.forms.append({"action": attrs.get("action", ""), "method": method, "fields": []})
        elif tag in ("input", "button") and self.forms and attrs.get("name"):
            kind = attrs.get("type", "text" if tag == "input" else "submit").lower()
            self.forms[-1]["fields"].append((attrs["name"], kind, attrs.get("value", "")))
        elif tag in ("title", "h1") and not self.heading:
            self._reading = "heading"
        elif "error" in attrs.get("class", "") or attrs.get("role") == "alert":
            self._reading = "alert"

    def handle_data(self, data):
        if self._reading and data.strip():
            setattr(self, self._reading, " ".join(data.split())[:200])
            self._reading = None

    def password_form(self):
        for form in self.forms:
            if any(kind == "password" for _, kind, _ in form["fields"]):
                return form
        return None

    def about(self):
        """What the page says, in a few words: its error, else its heading."""
        return self.alert or self.heading or "a page without a heading"


def _filled(form, username, password):
    """The form's fields as a browser submits them, the test account typed in: the first text
    or email field takes the username, the password field the password."""
    fields, typed = [], False
    for name, kind, value in form["fields"]:
        if kind == "password":
            fields.append((name, password))
        elif kind in ("text", "email") and not typed:
            fields.append((name, username))
            typed = True
        elif kind not in ("submit", "button", "checkbox", "radio"):
            fields.append((name, value))
    return fields


def _walk(browser, method, url, url_base, *, form=None, stay_on=""):
    """Follow redirects from one request until a page shows or the browser is sent back to
    Diffgram (`url_base`); with `stay_on`, stop at the first redirect to another host.
    Returns (what, found): ("page", (url, status, text)), ("landing", url), ("refused", why),
    ("handover", host) or ("lost", why)."""
    for _ in range(MAX_HOPS):
        status, headers, body = browser.fetch(method, url, form=form)
        location = headers.get("location", "")
        if not (300 <= status < 400 and location):
            return "page", (url, status, body[:200000].decode("utf-8", "replace"))
        target = urllib.parse.urljoin(url, location)
        if target.startswith(url_base):
            return "landing", target
        found = IDP_ERRORS.search(urllib.parse.unquote(target))
        if found or "error=" in urllib.parse.urlsplit(target).query:
            return "refused", found.group(0) if found else _without_query(target)
        if stay_on and _host(target) != stay_on:
            return "handover", _host(target)
        method, url, form = "GET", target, None
    return "lost", f"more than {MAX_HOPS} redirects at the identity provider"


def check_oauth2_answer(status, body, expect):
    """(failing step, detail) for Diffgram's is-oauth2-set answer, or None when it matches."""
    if status != 200:
        return "diffgram", f"is-oauth2-set answered HTTP {status}"
    try:
        answer = json.loads(body)
    except ValueError:
        return "diffgram", "is-oauth2-set did not answer JSON"
    if not isinstance(answer, dict) or answer.get("use_oauth2") is not True:
        return "use_oauth2", (
            "Diffgram answers use_oauth2: false, so it offers no single sign-on (it needs "
            "USE_OAUTH2, OAUTH2_PROVIDER_HOST and OAUTH2_PROVIDER_CLIENT_ID, and a restart)"
        )
    login_url = answer.get("login_url")
    if not isinstance(login_url, str) or not login_url:
        return "login_url", "Diffgram gives no login_url"
    endpoint = _without_query(login_url)
    if endpoint != expect["authorize_endpoint"]:
        return "login_url", f"login_url goes to {endpoint}, expected {expect['authorize_endpoint']}"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(login_url).query)
    for name, wanted in (
        ("client_id", expect["client_id"]),
        ("response_type", "code"),
        ("redirect_uri", expect["redirect_uri"]),
    ):
        found = query.get(name, [""])[0]
        if found != wanted:
            return "login_url", f"login_url has {name}={found or '(none)'}, expected {wanted}"
    return None


def judge_login_page(outcome, login_url):
    """(ok, detail, the page's password form or None) for where the login URL led."""
    what, found = outcome
    if what == "refused":
        return False, f"the identity provider refused the login request: {found}", None
    if what == "lost":
        return False, found, None
    if what == "handover":
        return True, f"the identity provider hands over to {found} (not followed)", None
    if what == "landing":
        return True, "the identity provider sent the browser straight back (it had a session)", None
    url, status, text = found
    error = IDP_ERRORS.search(text)
    if status >= 400:
        why = error.group(0) if error else " ".join(text.split())[:200]
        return False, f"the identity provider answered HTTP {status}: {why}", None
    if error:
        return False, f"the identity provider shows an error page: {error.group(0)}", None
    where = _without_query(url)
    if _host(url) != _host(login_url):
        where += f" (handed over to {_host(url)})"
    return (
        True,
        f"the identity provider shows its login page ({where})",
        _Page(text).password_form(),
    )


def _ask_diffgram(report, expect, diffgram_url, wait, send, sleep):
    """The first step: Diffgram's is-oauth2-set, asked until it answers as expected or `wait`
    seconds have passed. Returns its login_url, or None (the failure is in `report`)."""
    url = (diffgram_url or expect["url_base"]).rstrip("/") + "/" + IS_OAUTH2_SET
    deadline, pause = time.monotonic() + wait, 1.0
    while True:
        try:
            status, _, body, _ = send("GET", url, None, {})
            failure = check_oauth2_answer(status, body, expect)
        except Unreachable as error:
            failure = "diffgram", f"Diffgram did not answer at {url}: {error}"
        if failure is None or time.monotonic() + pause > deadline:
            break
        sleep(pause)
        pause = min(pause * 2, 10.0)
    if failure:
        report.add(failure[0], False, failure[1])
        return None
    report.add("diffgram", True, "Diffgram offers single sign-on with the expected login URL")
    return json.loads(body)["login_url"]


class _Report:
    """The steps so far; the first failure names the result."""

    def __init__(self, kind, hidden=()):
        self.kind, self.steps, self.hidden = kind, [], [value for value in hidden if value]
        self.started = time.monotonic()

    def hide(self, value):
        if value:
            self.hidden.append(value)

    def add(self, name, ok, detail):
        for value in self.hidden:  # a password, a code or a token never goes into a report
            detail = detail.replace(value, "[hidden]")
        self.steps.append({"name": name, "ok": ok, "detail": detail[:500]})
        return ok

    def result(self):
        failed = next((step for step in self.steps if not step["ok"]), None)
        return {
            "ok": failed is None,
            "kind": self.kind,
            "step": failed["name"] if failed else "",
            "detail": (failed or self.steps[-1])["detail"],
            "steps": self.steps,
            "seconds": round(time.monotonic() - self.started, 3),
        }


def probe(expect, *, diffgram_url="", wait=0, send=http_send, sleep=time.sleep):
    """Ask Diffgram whether it offers single sign-on with what was applied (waiting up to
    `wait` seconds for it to come back), then whether the identity provider shows a login page
    for its login URL. Returns {"ok", "kind", "step", "detail", "steps", "seconds"}."""
    report = _Report("probe")
    login_url = _ask_diffgram(report, expect, diffgram_url, wait, send, sleep)
    if login_url is None:
        return report.result()
    try:
        outcome = _walk(
            Browser(send), "GET", login_url, expect["url_base"], stay_on=_host(login_url)
        )
    except Unreachable as error:
        outcome = "lost", f"the identity provider did not answer: {error}"
    ok, detail, _ = judge_login_page(outcome, login_url)
    report.add("login_page", ok, detail)
    return report.result()


def signin(expect, account, *, diffgram_url="", wait=0, send=http_send, sleep=time.sleep):
    """Sign the test `account` ({"username", "password", "email"}) in to Diffgram the way a
    person does, then out: the probe's steps, then `credentials`, `callback`, `session` and
    `logout`. Returns the probe's shape with kind "signin"."""
    report = _Report("signin", hidden=[account.get("password", "")])
    login_url = _ask_diffgram(report, expect, diffgram_url, wait, send, sleep)
    if login_url is None:
        return report.result()
    try:
        _sign_in_and_out(report, Browser(send), expect, account, login_url, diffgram_url)
    except Unreachable as error:
        step = ("diffgram", "login_page", "credentials", "callback", "session", "logout")[
            len(report.steps)
        ]
        who = "the identity provider" if step in ("login_page", "credentials") else "Diffgram"
        report.add(step, False, f"{who} did not answer: {error}")
    return report.result()


def _sign_in_and_out(report, browser, expect, account, login_url, diffgram_url):
    url_base = expect["url_base"]
    at_diffgram = (diffgram_url or url_base).rstrip("/") + "/"  # where this host reaches it

    def diffgram(path):
        return at_diffgram + path

    outcome = _walk(browser, "GET", login_url, url_base)
    ok, detail, form = judge_login_page(outcome, login_url)
    if ok and outcome[0] == "page" and form is None:
        ok, detail = False, f"{detail[:-1]}, but it has no form with a password field)"
    if not report.add("login_page", ok, detail):
        return
    # credentials
    if outcome[0] == "page":
        page_url = outcome[1][0]
        fields = _filled(form, account["username"], account["password"])
        action = urllib.parse.urljoin(page_url, form["action"] or page_url)
        if form["method"] == "post":
            outcome = _walk(browser, "POST", action, url_base, form=fields)
        else:
            query = urllib.parse.urlencode(fields)
            outcome = _walk(browser, "GET", f"{_without_query(action)}?{query}", url_base)
    what, found = outcome
    if what == "page":
        _, status, text = found
        page = _Page(text)
        if status >= 400:
            detail = f"after the password the identity provider answered HTTP {status}"
        elif page.password_form() is not None:
            detail = (
                f"the identity provider did not accept the test account {account['username']}: "
                + page.about()
            )
        else:
            detail = f"the identity provider asks for more than a password: {page.about()}"
        report.add("credentials", False, detail)
        return
    if what != "landing":
        report.add("credentials", False, judge_login_page(outcome, login_url)[1])
        return
    report.add("credentials", True, f"the identity provider accepted {account['username']}")
    # callback: where the browser lands, and what Diffgram's frontend does there
    landing = found
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(landing).query)
    code = query.get("code", [""])[0]
    report.hide(code)
    path = landing[len(url_base) :].split("?", 1)[0]
    if "error" in query or not code:
        error = query.get("error", ["no code"])[0]
        report.add("callback", False, f"the identity provider sent the browser back with {error}")
        return
    if path != FRONTEND_CALLBACK:
        report.add("callback", False, (
            f"the identity provider sent the browser to {url_base}{path}, a page Diffgram's "
            f"frontend does not have (only {FRONTEND_CALLBACK} signs in): the browser shows "
            "Diffgram's 404 page"
        ))  # fmt: skip
    else:
        status, _, _ = browser.fetch("GET", diffgram(landing[len(url_base) :]))
        report.add("callback", status < 400, (
            f"the identity provider sent the browser back to {url_base}{path} with a code"
            if status < 400 else f"Diffgram answered HTTP {status} for {url_base}{path}"
        ))  # fmt: skip
    # session: what that page does, even past a wrong page (to say what would fail next)
    status, headers, body = browser.fetch(
        "POST", diffgram(AUTH_CALLBACK), body=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    signed_in = _signed_in(report, browser, status, body, account, at_diffgram)
    if signed_in is not None:
        _sign_out(report, browser, expect, login_url, signed_in, diffgram)


def _signed_in(report, browser, status, body, account, at_diffgram):
    """Judge Diffgram's answer to the callback POST: the access token it got (to check later
    that sign-out revoked it) when it signed the test account in, else None."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status != 200 or not isinstance(answer, dict):
        errors = answer.get("log", answer).get("error", {}) if isinstance(answer, dict) else {}
        said = "; ".join(f"{k}: {v}" for k, v in errors.items()) if isinstance(errors, dict) else ""
        report.add("session", False, f"Diffgram's sign-in callback answered HTTP {status}"
                   + (f": {said[:300]}" if said else " (Diffgram's log says why)"))  # fmt: skip
        return None
    tokens = answer.get("access_token_data") or {}
    for name in ("access_token", "id_token", "refresh_token"):
        report.hide(tokens.get(name, "") if isinstance(tokens, dict) else "")
    email = str((answer.get("user") or {}).get("email", ""))
    if email.lower() != account.get("email", "").lower():
        report.add("session", False, (
            f"Diffgram signed in {email or 'nobody'}, not the test account ({account['email']})"
        ))  # fmt: skip
        return None
    if not browser.cookies.get(_host(at_diffgram)):
        report.add("session", False, "Diffgram answered with the user but set no session cookie")
        return None
    created = " (and created that user)" if answer.get("new_user_created") else ""
    report.add("session", True, f"Diffgram signed in {email}{created}")
    return tokens.get("access_token", "") if isinstance(tokens, dict) else ""


def _sign_out(report, browser, expect, login_url, access_token, diffgram):
    """Sign out as Diffgram's page does, and say what that did: Diffgram's own session, where
    it sent the browser, whether the token still works, whether the provider's session stays."""
    at_diffgram = _host(diffgram(""))
    before = dict(browser.cookies.get(at_diffgram, {}))
    status, _, body = browser.fetch("GET", diffgram(LOGOUT))
    if status != 200:
        report.add("logout", False, f"Diffgram's sign-out answered HTTP {status}")
        return
    after = browser.cookies.get(at_diffgram, {})
    ended = all(after.get(name) != value for name, value in before.items())
    try:
        redirect = json.loads(body).get("url_redirect")
    except (ValueError, AttributeError):
        redirect = None
    said = ["Diffgram ended its own session" if ended else "Diffgram kept its session cookie"]
    said.append(f"sent the browser to {_host(redirect)}" if redirect else "redirected nowhere")
    if redirect:
        _walk(browser, "GET", redirect, expect["url_base"])
    userinfo = expect.get("userinfo_endpoint")
    if userinfo and access_token:
        status, _, _ = browser.fetch(
            "GET", userinfo, headers={"Authorization": f"Bearer {access_token}"}
        )
        said.append(
            "revoked nothing (the identity provider still accepts the access token)"
            if status == 200
            else "the access token no longer works"
        )
    what, _ = _walk(browser, "GET", login_url, expect["url_base"])
    said.append(
        "the identity provider's session stays (signing in again needs no password)"
        if what == "landing"
        else "the identity provider asks for the password again"
    )
    report.add("logout", ended, "; ".join(said))
