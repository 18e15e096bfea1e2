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

from agent import signin
from agent.envfile import merge_env, parse_env_body, refused_names
from agent.signin import MAX_BODY, VERIFY_HEADER

MAX_TIMESTAMP_SKEW = 300
CONNECTION_TIMEOUT = 10  # seconds a push connection may take to send its whole request
MAX_CONNECTIONS = 16  # pushes handled at once
MAX_PER_ADDRESS = 4  # of which from any one address
RESERVED_CONNECTIONS = 2  # beyond them, for a request that shows a signed push's headers at once
RESERVED_DEADLINE = 2  # seconds such a request has to send its head
SEQUENCE_HEADER = "X-Config-Sequence"
VERIFY_WAIT = 120  # seconds to wait for Diffgram to come back after a change
# For an answer from the console (Diffgram and the identity provider get signin.HTTP_TIMEOUT):
# the console answers requests in the order they come, so a slow answer means a queue, and a
# request given up is still answered, then sent again. At 10,000 instances with 10 s, the
# console answered 26,670 reports for 10,000 (docs/BENCHMARKS.md, P5).
CONSOLE_TIMEOUT = 60


class AgentError(Exception):
    """A failure with a message for the operator; `transient` when trying again may help (the
    console busy, restarting or unreachable for a moment)."""

    def __init__(self, message, transient=False):
        super().__init__(message)
        self.transient = transient


def log(message):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}", flush=True)


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
        with urllib.request.urlopen(request, timeout=CONSOLE_TIMEOUT):  # noqa: S310 - operator's URL
            pass
    except urllib.error.HTTPError as error:
        transient = error.code == 429 or error.code >= 500
        raise AgentError(f"could not acknowledge version {version}: {error}", transient) from None
    except (urllib.error.URLError, OSError) as error:
        raise AgentError(f"could not acknowledge version {version}: {error}", True) from None


# A publish to a large fleet brings every agent's report within a minute or two, more than the
# console takes at once: with ~1 minute of tries, over a thousand of 10,000 simulated agents
# gave theirs up (docs/BENCHMARKS.md, P5). The tries now span about four minutes.
REPORT_ATTEMPTS = 9
REPORT_PAUSE_CAP = 60


def report(console, instance, token, version, probed=None):
    """acknowledge() a successful apply, or its verification's outcome, tried again after a
    transient failure with growing, jittered pauses (at most ~4 minutes in all): a report lost
    is otherwise lost for good — the next poll is a 304 — and the console waits for it (a
    rollout that halts by itself, the fleet's state)."""
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        try:
            acknowledge(console, instance, token, version, True, probed=probed)
            return
        except AgentError as error:
            if not error.transient or attempt == REPORT_ATTEMPTS:
                raise
            pause(min(2**attempt, REPORT_PAUSE_CAP) * random.uniform(0.5, 1.0))  # noqa: S311 - jitter


def report_apply_error(console, instance, token, version, error):
    """Tell the console a version could not be applied, once (the next push or poll tries the
    apply again). A console that does not hear it leaves a warning, not the apply's error
    unsaid."""
    try:
        acknowledge(console, instance, token, version, False, str(error))
    except AgentError as lost:
        log(f"warning: {lost}")


def pause(seconds):
    """Wait (tests replace it to move a clock instead)."""
    time.sleep(seconds)


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
        with urllib.request.urlopen(request, timeout=CONSOLE_TIMEOUT) as response:  # noqa: S310
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
        report_apply_error(args.console, args.instance, token, version, error)
        raise AgentError(f"could not apply version {version}: {error}") from None
    # Tried again like the verification's report, and even lost it does not end the poll: the
    # next poll is a 304, so a version not verified now never is (docs/BENCHMARKS.md, P5). The
    # verification's report says that the version was applied, too.
    try:
        report(args.console, args.instance, token, version)
    except AgentError as error:
        if not expect or args.no_verify:
            raise
        log(f"warning: {error}; verifying it all the same (its report says it was applied)")
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
        return signin.signin(expect, account, diffgram_url=args.diffgram_url, wait=args.verify_wait)
    return signin.probe(expect, diffgram_url=args.diffgram_url, wait=args.verify_wait)


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
        report(args.console, args.instance, token, version, result)
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
                self._answer(500, {"error": f"could not apply: {error}"})
                # After answering, as below: the push waits for its answer only so long, and a
                # console busy with a fleet's reports may take longer to hear this one.
                threading.Thread(
                    target=report_apply_error,
                    args=(args.console, args.instance, token, version, error),
                    daemon=True,
                ).start()
                return None
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
