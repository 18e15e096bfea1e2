"""A stand-in Diffgram: an HTTP server on 127.0.0.1 that behaves as Diffgram 56f04d8's code does
with the settings the console publishes (docs/DIFFGRAM.md; Diffgram's public source is the
authority, this is written from what it does, not copied). It reads the .env file the agent
writes on every request, and a changed file is a restart.

What it does, as Diffgram does:
- `GET api/configs/is-oauth2-set` (default/methods/configs/oauth2_is_set.py);
- at start-up with OAUTH2_PROVIDER_NAME=keycloak (shared/auth/KeycloakDiffgramClient.py):
  logs in to Keycloak's master realm (admin/admin without KEY_CLOAK_MASTER_*), creates the realm,
  creates or resets the realm user (diffgram/diffgram without KEY_CLOAK_DIFFGRAM_*), creates its
  client with internal id = name = the client id, overwrites that client's redirect URIs with
  its own `URL_BASE + "user/oidc-login"`, and reads the client's secret from the admin API. A
  failed start-up leaves the OAuth2 client uninitialised: is-oauth2-set answers 500;
- the frontend's pages (frontend/src/router/router.js): `user/login/` and `user/oauth2-login/`
  exist; any other page is the frontend's 404 page. (The real frontend is a single-page app and
  answers 200 with its NotFound component; this one answers 404 so that tests see the
  difference.)
- `POST api/v1/auth/callback` {"code"} (default/methods/auth/oidc/oidc_auth_callback.py):
  exchanges the code, reads userinfo, finds the user by the provider's sub, else by email, else
  creates it (the first user becomes super admin), keeps the tokens in its cookie session;
  Cognito's client answers a failed exchange or userinfo with 400, python-keycloak raises (500);
- `GET api/v1/user/logout` (default/methods/user/logout.py): clears its session and answers
  {"url_redirect": null}, contacting nobody.

Stopping it leaves its port closed: a Diffgram that does not come back after a restart.
"""

import json
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from dotenv import dotenv_values

from tests.loopback import LoopbackHTTPServer

TRUE_VALUES = {"yes", "y", "true", "1"}
DEFAULT_URL_BASE = "http://localhost:8085/"  # Diffgram's own default
IS_OAUTH2_SET = "api/configs/is-oauth2-set"
FRONTEND_PAGES = ("user/login/", "user/oauth2-login/")
SESSION_COOKIE = "session"  # Flask's


@dataclass
class Answer:
    status: int
    body: dict


def send(url, form=None, data=None, headers=None, method=None):
    """One request as Diffgram's `requests` calls make it: the answer's status and JSON."""
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    try:
        return Answer(status, json.loads(raw) if raw else {})
    except ValueError:
        return Answer(status, {"raw": raw.decode("utf-8", "replace")})


def diffgram_join(url_base, path):
    """Diffgram's rule for its own URLs: a "/" is inserted when URL_BASE lacks one."""
    return (url_base if url_base.endswith("/") else url_base + "/") + path


class Settings:
    """What Diffgram's settings module (shared/settings/settings.py) makes of the environment."""

    def __init__(self, env):
        self.url_base = env.get("URL_BASE") or DEFAULT_URL_BASE
        self.use_oauth2 = env.get("USE_OAUTH2", "").strip().lower() in TRUE_VALUES
        self.provider_name = env.get("OAUTH2_PROVIDER_NAME", "keycloak")
        self.host = env.get("OAUTH2_PROVIDER_HOST", "http://localhost:8099/auth/")
        self.client_id = env.get("OAUTH2_PROVIDER_CLIENT_ID", "diffgram")
        secret = env.get("OAUTH2_PROVIDER_CLIENT_SECRET")
        self.client_secret = None if secret in (None, "none") else secret
        self.cognito_login_url = env.get("COGNITO_LOGIN_URL", "")
        self.realm = env.get("KEYCLOAK_REALM", "diffgram-realm")
        self.master_user = env.get("KEY_CLOAK_MASTER_USER") or "admin"
        self.master_password = env.get("KEY_CLOAK_MASTER_PASSWORD") or "admin"
        self.realm_user = env.get("KEY_CLOAK_DIFFGRAM_USER") or "diffgram"
        self.realm_password = env.get("KEY_CLOAK_DIFFGRAM_PASSWORD") or "diffgram"
        self.redirect_url = diffgram_join(self.url_base, "user/oauth2-login/")
        self.login_page = diffgram_join(self.url_base, "user/login/")
        self.keycloak_redirect = self.url_base + "user/oidc-login"  # no "/" inserted here


class StartupFailed(Exception):
    """Diffgram's OAuth2 client could not initialise (it logs the traceback)."""


class CognitoClient:
    """shared/auth/CognitoDiffgramClient.py: everything by concatenation on the host."""

    def __init__(self, settings):
        self.settings = settings

    def login_url(self):
        return self.settings.cognito_login_url

    def exchange_code(self, code):
        form = {
            "grant_type": "authorization_code",
            "client_id": self.settings.client_id,
            "code": code,
            "redirect_uri": self.settings.redirect_url,
        }
        if self.settings.client_secret:
            form["client_secret"] = self.settings.client_secret  # in the body
        answer = send(f"{self.settings.host}oauth2/token", form)
        return answer.body if answer.status == 200 else None

    def userinfo(self, access_token):
        answer = send(
            f"{self.settings.host}oauth2/userInfo",
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return answer.body if answer.status == 200 else None

    def refresh(self, refresh_token):
        """What Diffgram does when the ID token in its session has expired: never the secret."""
        form = {
            "grant_type": "refresh_token",
            "client_id": self.settings.client_id,
            "refresh_token": refresh_token,
            "redirect_uri": self.settings.redirect_url,
        }
        return send(f"{self.settings.host}oauth2/token", form)


class KeycloakClient:
    """shared/auth/KeycloakDiffgramClient.py with python-keycloak 1.9.1: start-up against
    Keycloak's admin API, then the realm's endpoints, scope=email."""

    def __init__(self, settings):
        self.settings = settings
        self.base = f"{settings.host}realms/{settings.realm}/protocol/openid-connect"
        self.secret = self._start_up()

    def _admin(self, method, path, token, body=None):
        return send(
            f"{self.settings.host}admin/realms{path}",
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method=method,
        )

    def _start_up(self):
        s = self.settings
        login = send(
            f"{s.host}realms/master/protocol/openid-connect/token",
            {"grant_type": "password", "client_id": "admin-cli", "username": s.master_user,
             "password": s.master_password},
        )  # fmt: skip
        if login.status != 200:
            raise StartupFailed(f"master realm login as {s.master_user}: HTTP {login.status}")
        token = login.body["access_token"]
        self._expect(self._admin("POST", "", token, {"realm": s.realm, "enabled": True}), 201, 409)
        realm = f"/{urllib.parse.quote(s.realm)}"
        created = self._admin("POST", f"{realm}/users", token,
                              {"username": s.realm_user, "enabled": True})  # fmt: skip
        self._expect(created, 201, 409)
        users = self._admin("GET", f"{realm}/users?username={s.realm_user}", token).body
        user_id = next(user["id"] for user in users if user["username"] == s.realm_user)
        self._expect(self._admin(
            "PUT", f"{realm}/users/{user_id}/reset-password", token,
            {"type": "password", "value": s.realm_password, "temporary": False},
        ), 204)  # fmt: skip
        client = f"{realm}/clients/{urllib.parse.quote(s.client_id)}"
        self._expect(self._admin(
            "POST", f"{realm}/clients", token, {"name": s.client_id, "id": s.client_id}
        ), 201, 409)  # fmt: skip
        self._expect(self._admin("PUT", client, token, {
            "authorizationServicesEnabled": True, "serviceAccountsEnabled": True,
            "redirectUris": [s.keycloak_redirect],
        }), 204)  # fmt: skip
        found = self._admin("GET", client, token)
        self._expect(found, 200)
        return self._admin("GET", f"{client}/client-secret", token).body["value"]

    @staticmethod
    def _expect(answer, *statuses):
        if answer.status not in statuses:
            raise StartupFailed(
                f"Keycloak's admin API answered HTTP {answer.status}: {answer.body}"
            )

    def login_url(self):
        # python-keycloak formats the URL without encoding the redirect URI.
        return (
            f"{self.base}/auth?client_id={self.settings.client_id}&response_type=code"
            f"&redirect_uri={self.settings.keycloak_redirect}&scope=email&state="
        )

    def exchange_code(self, code):
        answer = send(f"{self.base}/token", {
            "grant_type": "authorization_code", "client_id": self.settings.client_id,
            "client_secret": self.secret, "code": code,
            "redirect_uri": self.settings.keycloak_redirect,
        })  # fmt: skip
        if answer.status != 200:
            raise StartupFailed(f"python-keycloak raised on the token answer {answer.status}")
        return answer.body

    def userinfo(self, access_token):
        answer = send(f"{self.base}/userinfo", headers={"Authorization": f"Bearer {access_token}"})
        if answer.status != 200:  # python-keycloak raises KeycloakGetError
            raise StartupFailed(
                f"python-keycloak raised on userinfo: {answer.status} {answer.body}"
            )
        return answer.body


CLIENTS = {"cognito": CognitoClient, "keycloak": KeycloakClient}


@dataclass
class Instance:
    """One running Diffgram: its settings, its OAuth2 client, its users and sessions."""

    settings: Settings
    client: object = None
    startup_error: str = ""
    users: list = field(default_factory=list)  # {"id", "email", "oidc_id", "super_admin"}
    sessions: dict = field(default_factory=dict)  # cookie value -> the tokens it holds
    signed_in: list = field(default_factory=list)  # every token answer a sign-in kept

    def oauth2_client(self):
        """OAuth2Provider(): initialised once, tried again at each use until it works."""
        if self.client is None:
            try:
                self.client = CLIENTS[self.settings.provider_name](self.settings)
                self.startup_error = ""
            except (StartupFailed, KeyError, StopIteration, OSError) as error:
                self.startup_error = str(error)
        return self.client

    def user_for(self, user_data):
        sub, email = user_data.get("sub"), user_data.get("email")
        user = next((u for u in self.users if u["oidc_id"] == sub), None)
        user = user or next((u for u in self.users if u["email"] == email), None)
        if user is not None:
            user["oidc_id"] = sub
            return user, False
        user = {"id": len(self.users) + 1, "email": email, "oidc_id": sub,
                "super_admin": not self.users}  # fmt: skip
        self.users.append(user)
        return user, True


def is_oauth2_set(env):
    """Diffgram's answer for the environment `env` (a dict of its variables), or None when
    its OAuth2 client fails to start (Diffgram then answers HTTP 500)."""
    instance = Instance(Settings(env))
    return _is_oauth2_set(instance)


def _is_oauth2_set(instance):
    s = instance.settings
    if not (s.use_oauth2 and s.host and s.client_id):
        return {"use_oauth2": False}
    client = instance.oauth2_client()
    if client is None:
        return None
    return {"use_oauth2": True, "login_url": client.login_url()}


class StandInDiffgram:
    """One Diffgram instance; `url_base` is where it answers (put it in the .env as URL_BASE).

    With `fleet_folder`, one server plays many instances (bench/verify_rollout.py): the one
    named N answers at `url_base_of(N)` from `fleet_folder/N/.env`."""

    def __init__(self, env_file=None, *, fleet_folder=None):
        self.env_file, self.fleet_folder = env_file, fleet_folder
        self.requests = 0
        self.running = {}  # name -> (the .env's text, Instance)
        self.lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                standin.handle(self, "GET")

            def do_POST(self):  # noqa: N802 - the stdlib's name
                standin.handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.url_base = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # --- the instances ----------------------------------------------------------------------

    def env_file_of(self, name):
        if self.fleet_folder is None:
            return self.env_file if name == "" else None
        return self.fleet_folder / name / ".env" if name.isidentifier() else None

    def url_base_of(self, name):
        return f"{self.url_base}{name}/"

    def write_own_settings(self):
        """What the operator's .env holds before the agent ever runs: Diffgram's URL_BASE."""
        self.env_file.write_text(f"URL_BASE={self.url_base}\n")

    def instance(self, name=""):
        """The Diffgram running with the .env as it is now: a changed file is a restart."""
        env_file = self.env_file_of(name)
        if env_file is None:
            return None
        text = env_file.read_text() if env_file.exists() else ""
        with self.lock:
            running = self.running.get(name)
            if running is None or running[0] != text:
                env = dotenv_values(env_file, interpolate=False) if text else {}
                instance = Instance(Settings({k: v or "" for k, v in env.items()}))
                if instance.settings.use_oauth2:
                    instance.oauth2_client()  # check_oauth2_setup() at start-up
                running = self.running[name] = (text, instance)
            return running[1]

    # --- HTTP -------------------------------------------------------------------------------

    def handle(self, request, method):
        self.requests += 1
        path, _, query = request.path.partition("?")
        name, rest = "", path.lstrip("/")
        if self.fleet_folder is not None:
            name, _, rest = rest.partition("/")
        instance = self.instance(name)
        if instance is None:
            return _send(request, 404, {"error": "not found"})
        if method == "GET" and rest == IS_OAUTH2_SET:
            answer = _is_oauth2_set(instance)
            if answer is None:
                return _send(request, 500, "<h1>Internal Server Error</h1>")
            return _send(request, 200, answer)
        if method == "POST" and rest == "api/v1/auth/callback":
            length = int(request.headers.get("Content-Length") or 0)
            payload = json.loads(request.rfile.read(length) or b"{}")
            code = payload.get("code") or urllib.parse.parse_qs(query).get("code", [None])[0]
            return self.callback(request, instance, code)
        if method == "GET" and rest == "api/v1/user/logout":
            cookie = _cookie(request)
            instance.sessions.pop(cookie, None)
            expired = f"{SESSION_COOKIE}=; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/"
            return _send(request, 200, {"url_redirect": None}, cookie=expired)
        if method == "GET" and not rest.startswith("api/"):
            found = rest in FRONTEND_PAGES
            page = "<div id=app>Diffgram</div>" if found else "<h1>404 Not Found</h1>"
            return _send(request, 200 if found else 404, page)
        return _send(request, 404, {"error": "not found"})

    def callback(self, request, instance, code):
        if code is None:
            return _send(request, 400, {"log": {"error": {"code": "Authorization code missing"}}})
        client = instance.oauth2_client()
        if client is None:
            return _send(request, 500, "<h1>Internal Server Error</h1>")
        try:
            tokens = client.exchange_code(code)
            if not tokens:
                return _send(request, 400, {"log": {"error": {"token": (
                    "Failed to get access token. Please check authorization_code and client "
                    "configuration."
                )}}})  # fmt: skip
            user_data = client.userinfo(tokens.get("access_token"))
            if not user_data:
                return _send(request, 400, {"log": {"error": {"userinfo": (
                    "Failed to get userinfo. Please check access_token and client configuration."
                )}}})  # fmt: skip
            if not tokens.get("id_token"):  # set_jwt_in_session: None.encode()
                raise StartupFailed("AttributeError: 'NoneType' object has no attribute 'encode'")
        except StartupFailed:
            return _send(request, 500, "<h1>Internal Server Error</h1>")
        user, created = instance.user_for(user_data)
        cookie = secrets.token_urlsafe(24)
        instance.sessions[cookie] = tokens
        instance.signed_in.append(tokens)
        answer = {"access_token_data": tokens, "user_data_oidc": user_data,
                  "user": {"id": user["id"], "email": user["email"]}}  # fmt: skip
        if created:
            answer["new_user_created"] = True
        return _send(request, 200, answer, cookie=f"{SESSION_COOKIE}={cookie}; HttpOnly; Path=/")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _cookie(request):
    for part in (request.headers.get("Cookie") or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE:
            return value
    return ""


def _send(request, status, document, cookie=""):
    text = document if isinstance(document, str) else json.dumps(document)
    payload = text.encode()
    request.send_response(status)
    request.send_header(
        "Content-Type", "text/html" if isinstance(document, str) else "application/json"
    )
    request.send_header("Content-Length", str(len(payload)))
    if cookie:
        request.send_header("Set-Cookie", cookie)
    request.end_headers()
    request.wfile.write(payload)
