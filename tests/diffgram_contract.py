"""A small stand-in for Diffgram's sign-in, written from docs/DIFFGRAM.md (not from Diffgram's
code): it reads the settings the console publishes and does what Diffgram 56f04d8 does with
them — builds the login URL, exchanges the code, reads userinfo, refreshes, revokes and builds
the sign-out URL — so that a regression in what the console renders fails a test.

Also a browser stand-in for the person signing in at the test OP (its login and consent forms).
"""

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar

TRUE_VALUES = {"yes", "y", "true", "1"}


@dataclass
class Answer:
    status: int
    body: dict


def _send(url, form=None, headers=None):
    """One request, no redirects followed; the answer's status and JSON body."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, json.loads(response.read() or b"{}"))
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return Answer(error.code, json.loads(body))
        except ValueError:
            return Answer(error.code, {"raw": body.decode("utf-8", "replace")})


def diffgram_join(url_base, path):
    """Diffgram's rule for its own URLs: a "/" is inserted when URL_BASE lacks one."""
    return (url_base if url_base.endswith("/") else url_base + "/") + path


class DiffgramSettings:
    """What Diffgram's settings module makes of the environment."""

    def __init__(self, env, url_base):
        self.use_oauth2 = env.get("USE_OAUTH2", "").strip().lower() in TRUE_VALUES
        self.provider_name = env.get("OAUTH2_PROVIDER_NAME", "keycloak")
        self.host = env.get("OAUTH2_PROVIDER_HOST", "http://localhost:8099/auth/")
        self.client_id = env.get("OAUTH2_PROVIDER_CLIENT_ID", "diffgram")
        secret = env.get("OAUTH2_PROVIDER_CLIENT_SECRET")
        self.client_secret = None if secret in (None, "none") else secret
        self.cognito_login_url = env.get("COGNITO_LOGIN_URL", "")
        self.realm = env.get("KEYCLOAK_REALM", "diffgram-realm")
        self.url_base = url_base
        self.redirect_url = diffgram_join(url_base, "user/oauth2-login/")
        self.login_page = diffgram_join(url_base, "user/login/")
        self.keycloak_redirect = url_base + "user/oidc-login"  # no "/" inserted here


class CognitoClient:
    """Diffgram's Cognito client: everything by concatenation on OAUTH2_PROVIDER_HOST."""

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
        return _send(f"{self.settings.host}oauth2/token", form)

    def userinfo(self, access_token):
        return _send(
            f"{self.settings.host}oauth2/userInfo",
            headers={"Authorization": f"Bearer {access_token}"},
        )

    def refresh(self, refresh_token):
        # Diffgram sends no secret here, whatever the client is.
        form = {
            "grant_type": "refresh_token",
            "client_id": self.settings.client_id,
            "refresh_token": refresh_token,
        }
        return _send(f"{self.settings.host}oauth2/token", form)

    def revoke(self, refresh_token):
        form = {"client_id": self.settings.client_id, "token": refresh_token}
        return _send(f"{self.settings.host}oauth2/revoke", form)

    def logout_url(self):
        query = urllib.parse.urlencode(
            {
                "client_id": self.settings.client_id,
                "logout_uri": self.settings.login_page,
                "response_type": "code",
            }
        )
        return f"{self.settings.host}logout?{query}"


class KeycloakClient:
    """Diffgram's Keycloak client (python-keycloak 1.9.1): the realm's endpoints below
    OAUTH2_PROVIDER_HOST, the secret as read from Keycloak's admin API, scope=email."""

    def __init__(self, settings, client_secret_from_admin_api, scope="email"):
        self.settings = settings
        self.secret = client_secret_from_admin_api
        self.scope = scope
        self.base = f"{settings.host}realms/{settings.realm}/protocol/openid-connect"

    def login_url(self):
        # python-keycloak formats the URL without encoding the redirect URI (a browser
        # encodes the space of a scope list).
        return (
            f"{self.base}/auth?client_id={self.settings.client_id}&response_type=code"
            f"&redirect_uri={self.settings.keycloak_redirect}"
            f"&scope={urllib.parse.quote(self.scope)}&state="
        )

    def exchange_code(self, code):
        form = {
            "grant_type": "authorization_code",
            "client_id": self.settings.client_id,
            "client_secret": self.secret,
            "code": code,
            "redirect_uri": self.settings.keycloak_redirect,
        }
        return _send(f"{self.base}/token", form)

    def userinfo(self, access_token):
        return _send(f"{self.base}/userinfo", headers={"Authorization": f"Bearer {access_token}"})


# --- the person at the OP's login page ------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.IGNORECASE)
PROMPT = re.compile(r'name="prompt" value="(\w+)"')


def sign_in_at_op(login_url, login, callback_prefix):
    """Open the login URL as a browser would, sign in as `login` and consent, following the
    OP's own redirects only. Returns the URL the OP sends the browser back to (starting with
    `callback_prefix`), never contacting it."""
    opener = urllib.request.build_opener(
        _NoRedirect, urllib.request.HTTPCookieProcessor(CookieJar())
    )
    url, data = login_url, None
    for _ in range(12):
        request = urllib.request.Request(url, data=data)
        try:
            with opener.open(request, timeout=10) as response:
                page, status, location = response.read().decode(), response.status, None
        except urllib.error.HTTPError as answer:
            page, status = answer.read().decode("utf-8", "replace"), answer.code
            location = answer.headers.get("Location")
        if location:
            url, data = urllib.parse.urljoin(url, location), None
            if url.startswith(callback_prefix):
                return url
            continue
        action, prompt = FORM_ACTION.search(page), PROMPT.search(page)
        if status != 200 or not action or not prompt:
            raise AssertionError(f"the OP answered {status} with no form to fill:\n{page[:2000]}")
        fields = {"prompt": prompt[1]}
        if prompt[1] == "login":
            fields |= {"login": login, "password": "any password"}
        url, data = urllib.parse.urljoin(url, action[1]), urllib.parse.urlencode(fields).encode()
    raise AssertionError("the OP never sent the browser back")


def code_from(callback_url):
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback_url).query)
    if "code" not in query:
        raise AssertionError(f"no code in {callback_url}")
    return query["code"][0]


def login_page_answer(login_url):
    """The OP's first answer to a login URL: its status and, for a redirect, where to."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(login_url, timeout=10) as response:
            return response.status, None, response.read().decode()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers.get("Location"), answer.read().decode()
