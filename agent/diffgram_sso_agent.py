#!/usr/bin/env python3
"""Diffgram SSO agent: keeps the SSO variables of a Diffgram .env file in step with the console.

Copy this one file to a Diffgram host (Python 3.8+, standard library only) and run either

  pull   poll the console for this instance's configuration (ETag, so polls are cheap),
         every --interval seconds or --once:
         diffgram_sso_agent.py pull --interval 60 --console https://sso.example.com/ \
             --instance 7 --token-file /etc/diffgram-sso/token --env-file /opt/diffgram/.env

  serve  receive signed webhook pushes from the console, over TLS:
         diffgram_sso_agent.py serve --listen 0.0.0.0:8765 \
             --tls-cert /etc/diffgram-sso/agent.crt --tls-key /etc/diffgram-sso/agent.key \
             --secret-file /etc/diffgram-sso/secret --env-file /opt/diffgram/.env \
             --console https://sso.example.com/ --instance 7 --token-file /etc/diffgram-sso/token

Only the SSO variables are replaced (MANAGED below; a push or pull naming any other variable is
refused); every other line and comment of the .env file is kept. The file is written atomically
(temporary file + rename), keeping its owner and group, with mode 600 (it holds secrets); the
applied version is acknowledged to the console, and --on-change "CMD" (e.g. "docker compose up
-d") runs after a change. Every poll and push logs one line: "applied v4 to <env-file>" or
"unchanged at v3". What was applied is remembered in <env-file>.sso-state.json: the version, the
ETag of the last pull, and the console's assignment sequence, which orders pushes across a
switch to another provider (version numbers are per provider).

After applying, the agent asks Diffgram whether it offers single sign-on with the version and
the identity provider whether it shows a login page (the probe); with --signin and the test
account the console sends for this instance (kept in memory only, never written), it signs in
to Diffgram the way a person does, and out again, after every apply and every --signin-every
minutes. Each result goes to the console with the version.
"""

import argparse
import contextlib
import hashlib
import hmac
import html.parser
import json
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The variables the console manages; console/diffgram.py uses this same list.
MANAGED = (
    "USE_OAUTH2", "OAUTH2_PROVIDER_NAME", "OAUTH2_PROVIDER_HOST", "OAUTH2_PROVIDER_CLIENT_ID",
    "OAUTH2_PROVIDER_CLIENT_SECRET", "OAUTH2_PROVIDER_PUBLIC_KEY", "COGNITO_LOGIN_URL",
    "KEYCLOAK_REALM", "KEY_CLOAK_MASTER_USER", "KEY_CLOAK_MASTER_PASSWORD",
    "KEY_CLOAK_DIFFGRAM_USER", "KEY_CLOAK_DIFFGRAM_PASSWORD",
)  # fmt: skip
HEADER_COMMENT = "# Diffgram SSO: managed by the SSO console's agent"
MAX_TIMESTAMP_SKEW = 300
MAX_BODY = 1024 * 1024
HTTP_TIMEOUT = 10
CONNECTION_TIMEOUT = 10  # seconds a push connection may take to send its whole request
MAX_CONNECTIONS = 16  # pushes handled at once
MAX_PER_ADDRESS = 4  # of which from any one address
RESERVED_CONNECTIONS = 2  # beyond them, for a request that shows a signed push's headers at once
RESERVED_DEADLINE = 2  # seconds such a request has to send its head
SEQUENCE_HEADER = "X-Config-Sequence"
VERIFY_HEADER = "X-Config-Verify"  # what Diffgram must answer once it runs the version (JSON)
VERIFY_WAIT = 120  # seconds to wait for Diffgram to come back after a change
IS_OAUTH2_SET = "api/configs/is-oauth2-set"
MAX_IDP_HOPS = 5
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")
UNQUOTED = re.compile(r"[A-Za-z0-9_./:@%+,=~-]+")


class AgentError(Exception):
    """A failure with a message for the operator."""


def log(message):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}", flush=True)


# --- .env files ---------------------------------------------------------------------------------


def env_value(value):
    """A value as docker compose (and python-dotenv) read it back exactly. The console renders
    its env files with this same function.

    Plain values stay unquoted; otherwise single quotes, which neither parser interprets;
    values holding a single quote or a backslash go in double quotes with escapes, "$" doubled
    so that compose does not interpolate it.
    """
    if UNQUOTED.fullmatch(value):
        return value
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("$", "$$")
    )
    return f'"{escaped}"'


def split_entries(text):
    """The file as a list of (name or None, raw text) entries; a quoted value may span lines."""
    entries, lines, index = [], text.splitlines(keepends=True), 0
    while index < len(lines):
        line = lines[index]
        match = ASSIGNMENT.match(line.rstrip("\r\n"))
        if not match:
            entries.append((None, line))
            index += 1
            continue
        raw, value = line, match.group(2)
        quote = value[:1] if value[:1] in ("'", '"') else ""
        if quote and not _closes(value[1:], quote):
            while index + 1 < len(lines):
                index += 1
                raw += lines[index]
                if _closes(lines[index].rstrip("\r\n"), quote):
                    break
        entries.append((match.group(1), raw))
        index += 1
    return entries


def _closes(rest, quote):
    position = 0
    while True:
        position = rest.find(quote, position)
        if position < 0:
            return False
        if position == 0 or rest[position - 1] != "\\":
            return True
        position += 1


def refused_names(settings):
    """The names in `settings` this agent will not write: only the SSO variables it manages.
    A signed push must not be able to set POSTGRES_PASSWORD or inject a line."""
    return sorted(name for name in settings if name not in MANAGED)


def merge_env(existing, settings):
    """Replace the managed variables in `existing` with `settings`, keeping everything else."""
    lines, seen = [], set()
    for name, raw in split_entries(existing):
        if name in MANAGED:
            if name in settings and name not in seen:
                lines.append(f"{name}={env_value(settings[name])}\n")
                seen.add(name)
            continue  # removed from the configuration, or a duplicate
        lines.append(raw if raw.endswith("\n") else raw + "\n")
    # In the console's own order, whatever order a pull or a push lists them in.
    missing = [name for name in MANAGED if name in settings and name not in seen]
    if missing:
        if HEADER_COMMENT + "\n" not in lines:
            if lines and lines[-1].strip():
                lines.append("\n")
            lines.append(HEADER_COMMENT + "\n")
        lines.extend(f"{name}={env_value(settings[name])}\n" for name in missing)
    return "".join(lines)


def parse_env_body(body):
    """The console's env rendering back to {name: value} (the console writes only what
    env_value produces)."""
    settings = {}
    for name, raw in split_entries(body):
        if name is None:
            continue
        value = raw.split("=", 1)[1].rstrip("\n")
        if value[:1] == "'" and value[-1:] == "'":
            value = value[1:-1]
        elif value[:1] == '"' and value[-1:] == '"':
            value = re.sub(
                r"\\(.)|\$\$",
                lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)) if m.group(1) else "$",
                value[1:-1],
            )
        settings[name] = value
    return settings


_warned_about = set()


def write_atomically(path, text):
    """Write via a temporary file in the same folder and rename, keeping the owner and group
    and making it readable by them only (mode 600): the .env holds Keycloak passwords and
    client secrets. An existing file readable by others is warned about, once."""
    folder = os.path.dirname(os.path.abspath(path))
    mode = 0o600
    try:
        stat = os.stat(path)
        owner = (stat.st_uid, stat.st_gid)
        if stat.st_mode & 0o077 and path not in _warned_about:
            _warned_about.add(path)
            log(
                f"warning: {path} was readable by others (mode {stat.st_mode & 0o777:o}); it "
                "holds secrets, so the agent writes it with mode 600"
            )
    except FileNotFoundError:
        owner = None
    handle, temporary = tempfile.mkstemp(prefix=".sso-", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        if owner and hasattr(os, "chown") and os.geteuid() == 0:
            os.chown(temporary, *owner)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_state(env_file):
    try:
        with open(env_file + ".sso-state.json", encoding="utf-8") as state:
            return json.load(state)
    except (FileNotFoundError, ValueError):
        return {}


def apply(env_file, version, settings, etag="", on_change="", sequence=0):
    """Write the settings into the env file and remember what was applied."""
    refused = refused_names(settings)
    if refused:
        raise AgentError(f"refused variables this agent does not manage: {', '.join(refused)}")
    try:
        with open(env_file, encoding="utf-8") as current:
            existing = current.read()
    except FileNotFoundError:
        existing = ""
    merged = merge_env(existing, settings)
    changed = merged != existing
    if changed:
        write_atomically(env_file, merged)
    state = {"version": version, "etag": etag, "sequence": sequence}
    write_atomically(env_file + ".sso-state.json", json.dumps(state))
    log(f"applied v{version} to {env_file}" if changed else f"unchanged at v{version}")
    if changed and on_change:
        result = subprocess.run(on_change, shell=True, check=False)  # noqa: S602 - operator's command
        if result.returncode != 0:
            raise AgentError(f"--on-change command exited with {result.returncode}")


# --- verifying that Diffgram signs in with what was applied ---------------------------------------
#
# Diffgram answers GET <URL_BASE>api/configs/is-oauth2-set without authentication with
# {"use_oauth2": false} or {"use_oauth2": true, "login_url": ...}. The console gives the expected
# values (VERIFY_HEADER on a pull, "verify" in a push) and runs the same code itself through its
# own HTTP module, passing its `send`.
#
# Two depths. The probe asks Diffgram and loads the identity provider's login page. The
# synthetic sign-in, given a test account, goes on as a person does (docs/DIFFGRAM.md): it
# submits the login form, lands on Diffgram's callback page with a code, does what that page
# does (POST api/v1/auth/callback), checks that Diffgram signed the test account in, and signs
# out. Each step is reported by name with a one-line detail that never holds the password, the
# code or a token.

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


# --- talking to the console ---------------------------------------------------------------------


def _url(console, instance, path):
    return f"{console.rstrip('/')}/api/v1/instances/{instance}/{path}"


def read_secret(path):
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as error:
        raise AgentError(f"cannot read {path}: {error.strerror}") from None
    if not value:
        raise AgentError(f"{path} is empty")
    return value


def acknowledge(console, instance, token, version, ok, detail="", probed=None):
    report = {"version": version, "status": "ok" if ok else "error", "detail": detail}
    if probed is not None:
        report["probe"] = probed
    body = json.dumps(report)
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in main()
        _url(console, instance, "applied"),
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT):  # noqa: S310 - operator's URL
            pass
    except (urllib.error.URLError, OSError) as error:
        raise AgentError(f"could not acknowledge version {version}: {error}") from None


def pull_once(args):
    """One poll. Returns the version applied, or None when nothing changed."""
    token = read_secret(args.token_file)
    state = read_state(args.env_file)
    headers = {"Authorization": f"Bearer {token}"}
    # Without the test account in memory (a restart), ask for the full answer that carries it.
    wants_account = args.signin and not HELD.has_account()
    if state.get("etag") and os.path.exists(args.env_file) and not wants_account:
        headers["If-None-Match"] = state["etag"]
    url = _url(args.console, args.instance, "config?format=env")
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - checked in main()
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            body = response.read(MAX_BODY + 1).decode("utf-8")
            version = int(response.headers["X-Config-Version"])
            sequence = int(response.headers.get(SEQUENCE_HEADER) or 0)
            etag = response.headers.get("ETag", "")
            expect = _expectations(response.headers.get(VERIFY_HEADER))
    except urllib.error.HTTPError as error:
        if error.code == 304:
            log(f"unchanged at v{state.get('version')}")
            return None
        detail = error.read(2000).decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error", detail)
        raise AgentError(f"the console answered HTTP {error.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as error:
        raise AgentError(f"cannot reach the console at {args.console}: {error}") from None
    if len(body) > MAX_BODY:
        raise AgentError("the console's answer is larger than 1 MiB")
    try:
        apply(args.env_file, version, parse_env_body(body), etag, args.on_change, sequence)
    except (OSError, AgentError) as error:
        acknowledge(args.console, args.instance, token, version, False, str(error))
        raise AgentError(f"could not apply version {version}: {error}") from None
    acknowledge(args.console, args.instance, token, version, True)
    verify_applied(args, token, version, expect)
    return version


def _expectations(header):
    try:
        expect = json.loads(header) if header else None
    except ValueError:
        return None
    return expect if isinstance(expect, dict) else None


class Held:
    """What the agent keeps in memory only: the newest version's expectations, with the test
    account the console sent for synthetic sign-ins (never written to a file or a log)."""

    def __init__(self):
        self.version, self.expect, self.last_signin = None, None, 0.0

    def remember(self, version, expect):
        self.version, self.expect = version, expect

    def has_account(self):
        return bool(self.expect and self.expect.get("signin"))


HELD = Held()


def check_signin(args, expect):
    """The synthetic sign-in when --signin is on and the console sent a test account, else
    the probe."""
    account = expect.get("signin") if args.signin else None
    if isinstance(account, dict):
        return signin(expect, account, diffgram_url=args.diffgram_url, wait=args.verify_wait)
    return probe(expect, diffgram_url=args.diffgram_url, wait=args.verify_wait)


def _outcome(version, result):
    if not result["ok"]:
        return f"v{version} not verified ({result['step']}): {result['detail']}"
    if result["kind"] == "signin":
        return f"v{version} signed in: {result['steps'][-2]['detail']}; {result['detail']}"
    return f"v{version} offers sign-in (not signed in: no test account): {result['detail']}"


def verify_applied(args, token, version, expect):
    """Verify Diffgram after an apply and report the outcome with the version."""
    if not expect or args.no_verify:
        return
    HELD.remember(version, expect)
    report_check(args, token, version, expect)


def report_check(args, token, version, expect):
    result = check_signin(args, expect)
    if result["kind"] == "signin":
        HELD.last_signin = time.monotonic()
    log(_outcome(version, result))
    try:
        acknowledge(args.console, args.instance, token, version, True, probed=result)
    except AgentError as error:
        log(f"warning: {error}")


def signin_due(args):
    """Whether the periodic synthetic sign-in (--signin-every) should run now."""
    every = args.signin_every * 60
    return (
        args.signin
        and every > 0
        and HELD.has_account()
        and time.monotonic() - HELD.last_signin >= every
    )


def run_due_signin(args):
    if signin_due(args):
        report_check(args, read_secret(args.token_file), HELD.version, HELD.expect)


def run_pull(args):
    if args.once:
        pull_once(args)
        return 0
    while True:
        try:
            pull_once(args)
            run_due_signin(args)
        except AgentError as error:
            log(f"error: {error}")
        # Never longer than the interval, so an admin waits at most that long for a change;
        # at random down to 80 % of it, so a fleet started at once spreads out.
        time.sleep(args.interval * random.uniform(0.8, 1.0))  # noqa: S311 - jitter, not crypto


# --- receiving pushes ---------------------------------------------------------------------------


def verify(secret, timestamp, signature, body, now=None):
    """None when the push is authentic and fresh, else the reason to refuse it."""
    try:
        age = abs((now or time.time()) - int(timestamp))
    except (TypeError, ValueError):
        return "missing or invalid timestamp"
    if age > MAX_TIMESTAMP_SKEW:
        return "timestamp older than 5 minutes"
    expected = (
        "sha256="
        + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    if not hmac.compare_digest(expected, signature or ""):
        return "bad signature"
    return None


def send_json(handler, status, document):
    """Answer an HTTP request handled by `handler` (a BaseHTTPRequestHandler) with JSON."""
    payload = json.dumps(document).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def make_handler(args):
    secret = read_secret(args.secret_file)

    class PushHandler(BaseHTTPRequestHandler):
        timeout = CONNECTION_TIMEOUT  # a silent client cannot hold a connection...

        def setup(self):
            super().setup()
            # ...nor one sending a byte now and then: the whole request, head and body, must
            # arrive by a deadline (a shorter one in a reserved slot), or the connection ends.
            reserved = self.server.slot_of.get(self.request) != "normal"
            self.deadline = threading.Timer(
                RESERVED_DEADLINE if reserved else CONNECTION_TIMEOUT, self._cut_off
            )
            self.deadline.daemon = True
            self.deadline.start()

        def _cut_off(self):
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def finish(self):
            self.deadline.cancel()
            super().finish()

        def do_POST(self):  # noqa: N802 - the stdlib's name
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():  # missing, negative or not a number: never read to EOF
                return self._answer(411, {"error": "a Content-Length is required"})
            if int(length) > MAX_BODY:
                return self._answer(413, {"error": "body too large"})
            # Without a fresh, well-formed signature the body is not worth waiting for.
            early = signed_push_headers(
                self.headers.get("X-Diffgram-SSO-Timestamp"),
                self.headers.get("X-Diffgram-SSO-Signature"),
            )
            if early:
                log(f"refused a push: {early}")
                return self._answer(401, {"error": early})
            self.server.head_shown(self.request)
            body = self.rfile.read(int(length))
            self.deadline.cancel()  # the whole request is in
            refusal = verify(
                secret,
                self.headers.get("X-Diffgram-SSO-Timestamp"),
                self.headers.get("X-Diffgram-SSO-Signature"),
                body,
            )
            if refusal:
                log(f"refused a push: {refusal}")
                return self._answer(401, {"error": refusal})
            try:
                push = json.loads(body)
                version, settings = int(push["version"]), push["settings"]
                sequence = int(push.get("sequence") or 0)
                expect = push.get("verify") if isinstance(push.get("verify"), dict) else None
                if not isinstance(settings, dict):
                    raise ValueError("settings is not an object")
            except (ValueError, KeyError, TypeError) as error:
                return self._answer(400, {"error": f"invalid push: {error}"})
            refused = refused_names(settings)
            if refused:
                log(f"refused a push naming variables it does not manage: {', '.join(refused)}")
                return self._answer(400, {"error": f"refused variables: {', '.join(refused)}"})
            # Ordered by the console's assignment sequence, which grows across provider
            # switches (version numbers start again at 1 with each provider).
            state = read_state(args.env_file)
            applied = state.get("sequence") or 0
            if sequence < applied:
                return self._answer(
                    409, {"error": f"assignment {sequence} is older than {applied}"}
                )
            if sequence == applied and version == state.get("version"):
                if expect:  # a push sent again after the test account's password changed
                    HELD.remember(version, expect)
                log(f"unchanged at v{version}")
                return self._answer(200, {"applied": version, "changed": False})
            token = read_secret(args.token_file)
            try:
                apply(args.env_file, version, settings, on_change=args.on_change, sequence=sequence)
            except (OSError, AgentError) as error:
                acknowledge(args.console, args.instance, token, version, False, str(error))
                return self._answer(500, {"error": f"could not apply: {error}"})
            # The answer is the acknowledgement: the console records the apply from it.
            self._answer(200, {"applied": version, "changed": True})
            # After answering: the console's push does not wait for Diffgram to restart.
            threading.Thread(
                target=verify_applied, args=(args, token, version, expect), daemon=True
            ).start()
            return None

        def _answer(self, status, document):
            send_json(self, status, document)

        def log_message(self, format, *values):  # noqa: A002 - the stdlib's signature
            log(f"{self.client_address[0]} {format % values}")

    return PushHandler


def signed_push_headers(timestamp, signature):
    """None when a request's head looks like a signed push (a fresh timestamp, a signature of
    the right form), else why not: checked before its body is read."""
    try:
        fresh = abs(time.time() - int(timestamp)) <= MAX_TIMESTAMP_SKEW
    except (TypeError, ValueError):
        return "missing or invalid timestamp"
    if not fresh:
        return "timestamp older than 5 minutes"
    if not re.fullmatch(r"sha256=[0-9a-f]{64}", signature or ""):
        return "bad signature"
    return None


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection: at most MAX_CONNECTIONS at once, MAX_PER_ADDRESS of them from
    one address, then RESERVED_CONNECTIONS more, whose request must show a signed push's head
    (a fresh timestamp and a signature) within RESERVED_DEADLINE seconds. When even those are
    taken, the oldest reserved connection that has not shown one yet is closed to make room.
    So slow or silent clients, from one address or many, cannot keep the console's pushes out:
    a push shows its head in the first packet."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self.lock = threading.Lock()
        self.open, self.per_address = 0, {}
        self.slot_of = {}  # connection -> "normal" or "reserved"
        self.waiting = []  # reserved connections that have not shown a signed head, oldest first
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        address, evicted = client_address[0], None
        with self.lock:
            slot = None
            if self.per_address.get(address, 0) >= MAX_PER_ADDRESS:
                pass
            elif self.open < MAX_CONNECTIONS:
                slot, self.open = "normal", self.open + 1
            elif len([s for s in self.slot_of.values() if s == "reserved"]) < RESERVED_CONNECTIONS:
                slot = "reserved"
            elif self.waiting:
                evicted = self.waiting.pop(0)
                self.slot_of[evicted] = "evicted"  # its thread ends on its own, freeing nothing
                slot = "reserved"
            if slot:
                self.per_address[address] = self.per_address.get(address, 0) + 1
                self.slot_of[request] = slot
                if slot == "reserved":
                    self.waiting.append(request)
        if evicted is not None:
            with contextlib.suppress(OSError):
                evicted.shutdown(socket.SHUT_RDWR)
        if slot is None:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def head_shown(self, request):
        """A reserved connection's request showed a signed push's head: it is not evicted."""
        with self.lock:
            if request in self.waiting:
                self.waiting.remove(request)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                if self.slot_of.pop(request) == "normal":
                    self.open -= 1
                if request in self.waiting:
                    self.waiting.remove(request)
                left = self.per_address.pop(client_address[0], 1) - 1
                if left:
                    self.per_address[client_address[0]] = left


def run_serve(args):
    host, _, port = args.listen.rpartition(":")
    server = BoundedServer((host or "127.0.0.1", int(port)), make_handler(args))
    scheme = "http"
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(args.tls_cert, args.tls_key)
        # The handshake happens in the connection's own thread, under its timeout.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        scheme = "https"
    log(f"listening on {scheme}://{args.listen}")
    if args.signin:
        threading.Thread(target=_signin_every, args=(args,), daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _signin_every(args):
    """serve: the periodic synthetic sign-in, with the account the newest push carried."""
    while True:
        time.sleep(30)
        try:
            run_due_signin(args)
        except AgentError as error:
            log(f"error: {error}")


# --- command line -------------------------------------------------------------------------------


def parse_args(argv=None):
    """The command line, checked (exits with a usage message when it is wrong)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def console_args(sub, required=True):
        sub.add_argument("--console", required=required, help="the console's base URL")
        sub.add_argument("--instance", required=required, help="this instance's id")
        sub.add_argument("--token-file", required=required, help="file holding the API token")
        sub.add_argument("--env-file", required=True, help="the Diffgram .env file to update")
        sub.add_argument("--on-change", default="", help="command to run after a change")
        sub.add_argument(
            "--diffgram-url",
            default="",
            help="where this host reaches Diffgram, when not at its URL_BASE "
            "(e.g. http://127.0.0.1:8085/)",
        )
        sub.add_argument(
            "--verify-wait",
            type=float,
            default=VERIFY_WAIT,
            help="seconds to wait for Diffgram to come back before verifying (default 120)",
        )
        sub.add_argument(
            "--no-verify", action="store_true", help="do not ask Diffgram after applying"
        )  # fmt: skip
        sub.add_argument(
            "--signin",
            action="store_true",
            help="sign in to Diffgram with the test account the console sends (kept in memory "
            "only), after every apply and every --signin-every minutes",
        )
        sub.add_argument(
            "--signin-every",
            type=float,
            default=60,
            help="minutes between synthetic sign-ins with --signin (default 60; 0: only after "
            "an apply)",
        )

    pull = commands.add_parser("pull", help="poll the console")
    console_args(pull)
    how_often = pull.add_mutually_exclusive_group(required=True)
    how_often.add_argument("--once", action="store_true", help="poll once and exit")
    how_often.add_argument(
        "--interval",
        type=float,
        help="keep polling, at most N seconds apart (at random 0.8 to 1 x N)",
    )
    serve = commands.add_parser("serve", help="receive webhook pushes")
    serve.add_argument("--listen", required=True, help="HOST:PORT, e.g. 127.0.0.1:8765")
    serve.add_argument("--secret-file", required=True, help="file holding the signing secret")
    serve.add_argument("--tls-cert", default="", help="PEM certificate (chain) to serve TLS")
    serve.add_argument("--tls-key", default="", help="its PEM private key")
    console_args(serve)
    args = parser.parse_args(argv)
    if not args.console.startswith(("https://", "http://")):
        parser.error("--console must be an http(s) URL")
    if args.command == "serve" and bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return run_pull(args) if args.command == "pull" else run_serve(args)
    except AgentError as error:
        print(f"diffgram-sso-agent: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
