"""The building blocks of what Diffgram needs: its URL rules, the variables every sign-in
shares, per-instance settings and the output formats. Pure functions, no I/O and no ORM; each
provider kind (console/kinds/) composes them into its own settings.

Diffgram builds URLs by string concatenation, so trailing slashes matter (docs/DIFFGRAM.md):
- OAUTH2_PROVIDER_HOST must end with "/" (Diffgram appends "oauth2/token" etc.);
- the OAuth2 redirect is URL_BASE + "user/oauth2-login/" (a "/" is inserted if missing);
- Keycloak's redirect is URL_BASE + "user/oidc-login" with no "/" inserted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import yaml

from agent.envfile import MANAGED, env_value

# In a Keycloak client id, replaced by each instance's name: Diffgram overwrites its client's
# redirect URIs at every start, so instances sharing one client break each other's login.
INSTANCE_PLACEHOLDER = "{instance}"

SECRET_VARIABLES = frozenset(
    {"OAUTH2_PROVIDER_CLIENT_SECRET", "KEY_CLOAK_MASTER_PASSWORD", "KEY_CLOAK_DIFFGRAM_PASSWORD"}
)
# The paths Diffgram appends to OAUTH2_PROVIDER_HOST on its OAuth2 (Cognito) path.
OAUTH2_TOKEN_PATH = "oauth2/token"
OAUTH2_USERINFO_PATH = "oauth2/userInfo"
OAUTH2_AUTHORIZE_PATH = "oauth2/authorize"


@dataclass(frozen=True)
class ProviderConfig:
    """The provider facts rendering needs, secrets in clear (callers decide where they go)."""

    client_id: str
    client_secret: str = field(default="", repr=False)  # secrets never in a repr
    scopes: str = "openid email"
    cognito_domain: str = ""
    keycloak_server_url: str = ""
    keycloak_realm: str = ""
    keycloak_master_user: str = ""
    keycloak_master_password: str = field(default="", repr=False)
    keycloak_diffgram_user: str = ""
    keycloak_diffgram_password: str = field(default="", repr=False)
    discovery: dict = field(default_factory=dict)


def with_trailing_slash(url) -> str:
    return url if url.endswith("/") else url + "/"


def diffgram_join(url_base, path) -> str:
    """Diffgram's own rule for its derived URLs: insert "/" between if URL_BASE lacks one."""
    return with_trailing_slash(url_base) + path


def oauth2_callback_url(url_base) -> str:
    """The redirect URI of Diffgram's OAuth2 sign-in (the route its frontend has)."""
    return diffgram_join(url_base, "user/oauth2-login/")


def keycloak_callback_url(url_base) -> str:
    """The redirect URI Diffgram's Keycloak sign-in sends: no "/" inserted."""
    return url_base + "user/oidc-login"


def signout_url(url_base) -> str:
    return diffgram_join(url_base, "user/login/")


def login_scopes(scopes) -> str:
    """Scopes for the login URL: the configured ones, always with openid and email first."""
    extra = [scope for scope in scopes.split() if scope not in ("openid", "email")]
    return " ".join(["openid", "email", *dict.fromkeys(extra)])


def oauth2_provider_host(discovery, domain) -> str:
    """OAUTH2_PROVIDER_HOST on Diffgram's OAuth2 (Cognito) path: the base it appends
    oauth2/token and oauth2/userInfo to, from the token endpoint, else the hosted-UI domain
    ("" while neither is known). Always ends in "/"."""
    token_endpoint = discovery.get("token_endpoint")
    if isinstance(token_endpoint, str) and token_endpoint.endswith(OAUTH2_TOKEN_PATH):
        return with_trailing_slash(token_endpoint[: -len(OAUTH2_TOKEN_PATH)])
    return with_trailing_slash(domain) if domain else ""


def oauth2_authorize_endpoint(discovery, domain) -> str:
    """The hosted UI's authorize endpoint, "" while neither discovery nor the domain says."""
    authorize = discovery.get("authorization_endpoint")
    if isinstance(authorize, str) and authorize:
        return authorize
    host = oauth2_provider_host(discovery, domain)
    return host + OAUTH2_AUTHORIZE_PATH if host else ""


def oauth2_settings(provider_name, host, client_id) -> dict[str, str]:
    """What every Diffgram sign-in needs: the provider it talks to and its client."""
    return {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": provider_name,
        "OAUTH2_PROVIDER_HOST": host,
        "OAUTH2_PROVIDER_CLIENT_ID": client_id,
    }


def login_url_template(authorize_endpoint, client_id, scopes) -> str:
    """A login URL without its redirect_uri, which depends on each instance's URL_BASE ("" while
    the authorize endpoint is unknown)."""
    if not authorize_endpoint:
        return ""
    query = urlencode(
        {"client_id": client_id, "response_type": "code", "scope": login_scopes(scopes)}
    )
    return f"{authorize_endpoint}?{query}"


def with_redirect(login_template, url_base) -> str:
    """The login URL of the Diffgram at url_base: back to its OAuth2 sign-in route."""
    if not login_template:
        return ""
    return f"{login_template}&redirect_uri={quote(oauth2_callback_url(url_base), safe='')}"


def instance_client_id(client_id, instance_name) -> str:
    return client_id.replace(INSTANCE_PLACEHOLDER, instance_name)


def is_per_instance(settings) -> bool:
    """Whether the settings name a client id of each instance's own."""
    return INSTANCE_PLACEHOLDER in settings.get("OAUTH2_PROVIDER_CLIENT_ID", "")


def instance_settings(settings, login_template, url_base, instance_name) -> dict[str, str]:
    """A version's settings as one instance receives them: its own COGNITO_LOGIN_URL (when the
    version has a login template) and its own client id (one with {instance})."""
    variables = dict(settings)
    if is_per_instance(variables):
        variables["OAUTH2_PROVIDER_CLIENT_ID"] = instance_client_id(
            variables["OAUTH2_PROVIDER_CLIENT_ID"], instance_name
        )
    if login_template:
        variables["COGNITO_LOGIN_URL"] = with_redirect(login_template, url_base)
    return variables


def login_expectation(url_base, authorize_endpoint, client_id, redirect_uri, userinfo_endpoint):
    """What Diffgram's is-oauth2-set must answer at url_base (docs/DIFFGRAM.md); None while
    the endpoint or URL_BASE is unknown."""
    if not authorize_endpoint or not url_base:
        return None
    return {
        "url_base": url_base,
        "authorize_endpoint": authorize_endpoint,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        # Where the synthetic sign-in checks, after signing out, whether the token still works.
        "userinfo_endpoint": userinfo_endpoint,
    }


def masked(variables) -> dict[str, str]:
    """The same variables with secret values replaced, for pages, logs and audit records."""
    return {
        name: ("[secret: set]" if name in SECRET_VARIABLES else value)
        for name, value in variables.items()
    }


# --- output formats -----------------------------------------------------------------------------

# One quoting rule for the console and the agent that writes the same files (agent/envfile.py,
# shipped inside the agent).


def render_env(settings) -> str:
    return "".join(f"{name}={env_value(value)}\n" for name, value in settings.items())


def render_json(instance_name, version_number, content_hash, settings) -> str:
    return json.dumps(
        {
            "instance": instance_name,
            "version": version_number,
            "content_hash": content_hash,
            "settings": settings,
        },
        indent=2,
    )


def helm_value(value) -> str:
    """Quoted twice: Diffgram's chart pastes values unquoted into a ConfigMap/Secret, so the
    value itself must be a quoted YAML string for "True" to stay the string "True". Escapes
    what YAML cannot hold raw in double quotes: controls, line breaks, BOM, non-characters."""
    escaped = []
    for char in value:
        code = ord(char)
        if char in '\\"':
            escaped.append("\\" + char)
        elif (
            code < 0x20
            or 0x7F <= code <= 0x9F
            or char in "\u2028\u2029\ufeff\ufffe\uffff"
            or 0xD800 <= code <= 0xDFFF
        ):
            escaped.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def render_helm(settings) -> str:
    plain = {name: helm_value(v) for name, v in settings.items() if name not in SECRET_VARIABLES}
    secret = {name: helm_value(v) for name, v in settings.items() if name in SECRET_VARIABLES}
    document = {"diffgramSettings": plain, "diffgramSecrets": secret}
    return yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, width=100000, allow_unicode=True
    )


# Every variable the console writes (the agent, which rewrites .env files, owns the list).
MANAGED_VARIABLES = MANAGED
