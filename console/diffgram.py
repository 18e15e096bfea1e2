"""What Diffgram needs, derived from a provider: its environment variables and the URLs to
register at the identity provider. Pure functions, no I/O and no ORM.

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

COGNITO = "cognito"
KEYCLOAK = "keycloak"
OIDC = "oidc"
DIFFGRAM_KINDS = (COGNITO, KEYCLOAK)  # the providers Diffgram itself can talk to
# In a Keycloak client id, replaced by each instance's name: Diffgram overwrites its client's
# redirect URIs at every start, so instances sharing one client break each other's login.
INSTANCE_PLACEHOLDER = "{instance}"

SECRET_VARIABLES = frozenset(
    {"OAUTH2_PROVIDER_CLIENT_SECRET", "KEY_CLOAK_MASTER_PASSWORD", "KEY_CLOAK_DIFFGRAM_PASSWORD"}
)
COGNITO_TOKEN_PATH = "oauth2/token"
COGNITO_USERINFO_PATH = "oauth2/userInfo"


@dataclass(frozen=True)
class ProviderConfig:
    """The provider facts rendering needs, secrets in clear (callers decide where they go)."""

    kind: str
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


def callback_url(kind, url_base) -> str:
    """The redirect URI Diffgram sends, which must be registered at the provider verbatim."""
    if kind == KEYCLOAK:
        return url_base + "user/oidc-login"  # Diffgram inserts no "/" here
    return diffgram_join(url_base, "user/oauth2-login/")


def signout_url(url_base) -> str:
    return diffgram_join(url_base, "user/login/")


def provider_host(config) -> str:
    """OAUTH2_PROVIDER_HOST: the base Diffgram appends its paths to, always ending in "/"."""
    if config.kind == KEYCLOAK:
        return with_trailing_slash(config.keycloak_server_url) if config.keycloak_server_url else ""
    if config.kind == COGNITO:
        token_endpoint = config.discovery.get("token_endpoint")
        if isinstance(token_endpoint, str) and token_endpoint.endswith(COGNITO_TOKEN_PATH):
            return with_trailing_slash(token_endpoint[: -len(COGNITO_TOKEN_PATH)])
        return with_trailing_slash(config.cognito_domain) if config.cognito_domain else ""
    return ""


def login_scopes(scopes) -> str:
    """Scopes for the login URL: the configured ones, always with openid and email first."""
    extra = [scope for scope in scopes.split() if scope not in ("openid", "email")]
    return " ".join(["openid", "email", *dict.fromkeys(extra)])


def cognito_authorize_endpoint(config) -> str:
    """The hosted UI's authorize endpoint, "" while neither discovery nor the domain says."""
    authorize = config.discovery.get("authorization_endpoint")
    if isinstance(authorize, str) and authorize:
        return authorize
    host = provider_host(config)
    return host + "oauth2/authorize" if host else ""


def unknown_variables(config, url_base="") -> dict[str, str]:
    """The variables Diffgram needs that cannot be derived yet, each with why. They are left
    out of settings_for() rather than shown empty or relative as if they were valid."""
    if config.kind != COGNITO:
        return {}
    why = (
        "unknown until the discovery document is read (validate the provider) or the "
        "hosted-UI domain is set"
    )
    unknown = {}
    if not provider_host(config):
        unknown["OAUTH2_PROVIDER_HOST"] = why
    if url_base and not cognito_authorize_endpoint(config):
        unknown["COGNITO_LOGIN_URL"] = why
    return unknown


def cognito_login_template(config) -> str:
    """COGNITO_LOGIN_URL without its redirect_uri, which depends on each instance's URL_BASE
    ("" while the authorize endpoint is unknown)."""
    authorize = cognito_authorize_endpoint(config)
    if not authorize:
        return ""
    query = urlencode(
        {
            "client_id": config.client_id,
            "response_type": "code",
            "scope": login_scopes(config.scopes),
        }
    )
    return f"{authorize}?{query}"


def with_redirect(login_template, url_base) -> str:
    if not login_template:
        return ""
    return f"{login_template}&redirect_uri={quote(callback_url(COGNITO, url_base), safe='')}"


def cognito_login_url(config, url_base) -> str:
    return with_redirect(cognito_login_template(config), url_base)


def settings_for(config, url_base="") -> dict[str, str]:
    """Diffgram's environment variables for this provider (empty for a generic OIDC provider,
    which Diffgram reaches through Cognito federation). COGNITO_LOGIN_URL needs url_base."""
    if config.kind not in DIFFGRAM_KINDS:
        return {}
    variables = {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": config.kind,
        "OAUTH2_PROVIDER_HOST": provider_host(config),
        "OAUTH2_PROVIDER_CLIENT_ID": config.client_id,
    }
    if config.kind == COGNITO and config.client_secret:
        # Keycloak: Diffgram reads its client's secret from Keycloak's admin API instead.
        variables["OAUTH2_PROVIDER_CLIENT_SECRET"] = config.client_secret
    if config.kind == COGNITO and url_base:
        variables["COGNITO_LOGIN_URL"] = cognito_login_url(config, url_base)
    for name in unknown_variables(config, url_base):
        variables.pop(name, None)
    if config.kind == KEYCLOAK:
        variables["KEYCLOAK_REALM"] = config.keycloak_realm
        keycloak_admin = {
            "KEY_CLOAK_MASTER_USER": config.keycloak_master_user,
            "KEY_CLOAK_MASTER_PASSWORD": config.keycloak_master_password,
            "KEY_CLOAK_DIFFGRAM_USER": config.keycloak_diffgram_user,
            "KEY_CLOAK_DIFFGRAM_PASSWORD": config.keycloak_diffgram_password,
        }
        variables.update({name: value for name, value in keycloak_admin.items() if value})
    return variables


def instance_client_id(client_id, instance_name) -> str:
    return client_id.replace(INSTANCE_PLACEHOLDER, instance_name)


def is_per_instance(settings) -> bool:
    """Whether the settings name a client id of each instance's own."""
    return INSTANCE_PLACEHOLDER in settings.get("OAUTH2_PROVIDER_CLIENT_ID", "")


def instance_settings(settings, login_template, url_base, instance_name) -> dict[str, str]:
    """A version's settings as one instance receives them: its own COGNITO_LOGIN_URL (Cognito)
    and its own client id (a Keycloak client id with {instance})."""
    variables = dict(settings)
    if is_per_instance(variables):
        variables["OAUTH2_PROVIDER_CLIENT_ID"] = instance_client_id(
            variables["OAUTH2_PROVIDER_CLIENT_ID"], instance_name
        )
    if login_template:
        variables["COGNITO_LOGIN_URL"] = with_redirect(login_template, url_base)
    return variables


def login_expectations(settings, url_base) -> dict[str, str] | None:
    """What Diffgram's is-oauth2-set must answer once it runs `settings` (as one instance
    receives them) at `url_base`: the login URL's endpoint, client_id and redirect_uri
    (docs/DIFFGRAM.md). None when the settings are not a Diffgram sign-in."""
    kind = settings.get("OAUTH2_PROVIDER_NAME")
    host = with_trailing_slash(settings.get("OAUTH2_PROVIDER_HOST", ""))
    if kind == COGNITO:
        endpoint = settings.get("COGNITO_LOGIN_URL", "").split("?", 1)[0]
        userinfo = host + COGNITO_USERINFO_PATH
    elif kind == KEYCLOAK:
        realm = f"{host}realms/{settings.get('KEYCLOAK_REALM', '')}/protocol/openid-connect"
        endpoint, userinfo = f"{realm}/auth", f"{realm}/userinfo"
    else:
        return None
    if not endpoint or not url_base:
        return None
    return {
        "url_base": url_base,
        "authorize_endpoint": endpoint,
        "client_id": settings.get("OAUTH2_PROVIDER_CLIENT_ID", ""),
        "redirect_uri": callback_url(kind, url_base),
        # Where the synthetic sign-in checks, after signing out, whether the token still works.
        "userinfo_endpoint": userinfo,
    }


def registrations_for(kind, url_base) -> list[dict[str, str]]:
    """What must be registered at the provider for a Diffgram at url_base. For Keycloak,
    Diffgram sets its client's redirect URI itself at start-up: nothing to do by hand."""
    if kind not in DIFFGRAM_KINDS or not url_base:
        return []
    if kind == KEYCLOAK:
        return [
            {
                "label": "Redirect URI (Diffgram sets it on its client at start-up)",
                "value": callback_url(kind, url_base),
            }
        ]
    return [
        {"label": "Allowed callback (redirect) URL", "value": callback_url(kind, url_base)},
        {"label": "Allowed sign-out URL", "value": signout_url(url_base)},
    ]


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
