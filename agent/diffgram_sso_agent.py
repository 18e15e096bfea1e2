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
(temporary file + rename) with its permissions, the applied version is acknowledged to the
console, and --on-change "CMD" (e.g. "docker compose up -d") runs after a change. Every poll
and push logs one line: "applied v4 to <env-file>" or "unchanged at v3". What was applied is
remembered in <env-file>.sso-state.json: the version, the ETag of the last pull, and the
console's assignment sequence, which orders pushes across a switch to another provider (version
numbers are per provider).
"""

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
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
CONNECTION_TIMEOUT = 10  # seconds a push connection may sit idle
MAX_CONNECTIONS = 16  # pushes handled at once; more are turned away
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


def write_atomically(path, text):
    """Write via a temporary file in the same folder and rename, keeping mode and owner."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        stat = os.stat(path)
        mode, owner = stat.st_mode & 0o7777, (stat.st_uid, stat.st_gid)
    except FileNotFoundError:
        mode, owner = 0o600, None
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
# {"use_oauth2": false} or {"use_oauth2": true, "login_url": ...}; an identity provider answers a
# login request whose redirect_uri is not registered with an error, not a login page. The
# console gives the expected values (VERIFY_HEADER on a pull, "verify" in a push) and runs the
# same checks itself through its own HTTP module, passing its `get`.


class Unreachable(Exception):
    """A request that got no HTTP answer (refused, timed out, not resolved)."""


def http_get(url, cookie=""):
    """One GET, no redirect followed: (status, headers with lower-case names, body, the
    Set-Cookie values). Only http(s): a login_url or a redirect must never make the agent
    read a local file."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise Unreachable(f"{url[:200]} is not an http(s) URL")
    opener = urllib.request.build_opener(_NoRedirect)
    headers = {"Accept": "application/json, text/html", **({"Cookie": cookie} if cookie else {})}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - http(s), checked
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
    parts = urllib.parse.urlsplit(login_url)
    endpoint = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if endpoint != expect["authorize_endpoint"]:
        return "login_url", (
            f"login_url goes to {endpoint}, expected {expect['authorize_endpoint']}"
        )
    query = urllib.parse.parse_qs(parts.query)
    for name, wanted in (
        ("client_id", expect["client_id"]),
        ("response_type", "code"),
        ("redirect_uri", expect["redirect_uri"]),
    ):
        found = query.get(name, [""])[0]
        if found != wanted:
            return "login_url", f"login_url has {name}={found or '(none)'}, expected {wanted}"
    return None


# Words an identity provider's error answer holds: Cognito's /error?error=redirect_mismatch,
# Keycloak's "Invalid parameter: redirect_uri", oidc-provider's invalid_redirect_uri.
IDP_ERRORS = re.compile(
    r"redirect_mismatch|invalid_redirect_uri|invalid parameter: redirect_uri|invalid_client|"
    r"unauthorized_client|invalid_request|invalid_scope",
    re.IGNORECASE,
)


def check_login_page(login_url, get):
    """(ok, detail): does the identity provider answer the login URL with a login page? Follows
    redirects on the provider's own host only (a hand-over to a federated provider counts as
    a login page)."""
    host = urllib.parse.urlsplit(login_url).netloc
    url, cookies = login_url, {}
    for _ in range(MAX_IDP_HOPS):
        # Cookies the provider sets along the way go back to it, as a browser's would (login
        # pages often keep their state in one).
        cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        status, headers, body, set_cookies = get(url, cookie)
        for line in set_cookies:
            name, _, value = line.split(";", 1)[0].partition("=")
            cookies[name.strip()] = value.strip()
        text = body[:20000].decode("utf-8", "replace")
        location = headers.get("location", "")
        if 300 <= status < 400 and location:
            target = urllib.parse.urljoin(url, location)
            found = IDP_ERRORS.search(urllib.parse.unquote(target))
            if found or "error=" in urllib.parse.urlsplit(target).query:
                error = found.group(0) if found else target
                return False, f"the identity provider refused the login request: {error}"
            if urllib.parse.urlsplit(target).netloc != host:
                return (
                    True,
                    f"the identity provider hands over to {urllib.parse.urlsplit(target).netloc}",
                )
            url = target
            continue
        if status >= 400:
            found = IDP_ERRORS.search(text)
            why = found.group(0) if found else text.strip()[:200]
            return False, f"the identity provider answered HTTP {status}: {why}"
        found = IDP_ERRORS.search(text)
        if found:
            return False, f"the identity provider shows an error page: {found.group(0)}"
        return True, f"the identity provider shows its login page ({url})"
    return False, f"more than {MAX_IDP_HOPS} redirects at the identity provider"


def probe(expect, *, diffgram_url="", wait=0, get=http_get, sleep=time.sleep):
    """Ask Diffgram whether it signs in with what was applied, then the identity provider
    whether it accepts that login request. Waits up to `wait` seconds for Diffgram to come back
    and pick up the change. Returns {"ok", "step", "detail"}."""
    url = (diffgram_url or expect["url_base"]).rstrip("/") + "/" + IS_OAUTH2_SET
    deadline, pause = time.monotonic() + wait, 1.0
    while True:
        try:
            status, _, body, _ = get(url, "")
            failure = check_oauth2_answer(status, body, expect)
        except Unreachable as error:
            failure = "diffgram", f"Diffgram did not answer at {url}: {error}"
        if failure is None or time.monotonic() + pause > deadline:
            break
        sleep(pause)
        pause = min(pause * 2, 10.0)
    if failure:
        return {"ok": False, "step": failure[0], "detail": failure[1]}
    login_url = json.loads(body)["login_url"]
    try:
        ok, detail = check_login_page(login_url, get)
    except Unreachable as error:
        ok, detail = False, f"the identity provider did not answer: {error}"
    return {"ok": ok, "step": "" if ok else "idp", "detail": detail}


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
    if state.get("etag") and os.path.exists(args.env_file):
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


def verify_applied(args, token, version, expect):
    """Probe Diffgram after an apply and report the outcome with the version."""
    if not expect or args.no_verify:
        return
    result = probe(expect, diffgram_url=args.diffgram_url, wait=args.verify_wait)
    log(
        f"verified v{version}: Diffgram signs in through the identity provider"
        if result["ok"]
        else f"v{version} not verified ({result['step']}): {result['detail']}"
    )
    try:
        acknowledge(args.console, args.instance, token, version, True, probed=result)
    except AgentError as error:
        log(f"warning: {error}")


def run_pull(args):
    if args.once:
        pull_once(args)
        return 0
    while True:
        try:
            pull_once(args)
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
        timeout = CONNECTION_TIMEOUT  # an idle or slow client cannot hold a connection

        def do_POST(self):  # noqa: N802 - the stdlib's name
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():  # missing, negative or not a number: never read to EOF
                return self._answer(411, {"error": "a Content-Length is required"})
            if int(length) > MAX_BODY:
                return self._answer(413, {"error": "body too large"})
            body = self.rfile.read(int(length))
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


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS at once; more are closed at once."""

    daemon_threads = True

    def __init__(self, *args, **kwargs):
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


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
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


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
