"""The checks of an OpenID Provider's discovery document and JWKS (OpenID Connect Discovery 1.0,
at the depth of the conformance suite): pure functions over what was fetched, each adding a
CheckResult with a stable id. console/discovery.py fetches and runs them; the checks of what
Diffgram itself needs are in console/diffgram_checks.py. Which checks a provider gets is its
kind's plan (console/kinds/): nothing here depends on the kind."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from django.utils.translation import ngettext
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from console import diffgram_releases

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
# The order an admin reads results in: what must be fixed, what should be, what is fine.
STATUS_ORDER = {FAIL: 0, WARN: 1, PASS: 2, SKIP: 3}
DISCOVERY_PATH = "/.well-known/openid-configuration"

REQUIRED_METADATA = {
    "issuer": str,
    "authorization_endpoint": str,
    "token_endpoint": str,
    "jwks_uri": str,
    "response_types_supported": list,
    "subject_types_supported": list,
    "id_token_signing_alg_values_supported": list,
}
ENDPOINT_KEYS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
    "registration_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
)
PRIVATE_KEY_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


@dataclass(frozen=True)
class CheckResult:
    id: str
    status: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One step of a plan: a function adding the results `ids`, in that order. A document
    check is called (add, spec, documents), a configuration check (add, spec)."""

    run: Callable[..., None]
    ids: tuple[str, ...]


@dataclass(frozen=True)
class CheckPlan:
    """The checks a kind of provider gets, in report order: those of the documents (after
    issuer.url and discovery.fetch, which every plan starts with), then those that read only
    the configuration and run even when the documents could not be read."""

    documents: tuple[Check, ...]
    configuration: tuple[Check, ...] = ()

    def ids(self) -> tuple[str, ...]:
        steps = (*self.documents, *self.configuration)
        return ("issuer.url", "discovery.fetch", *(i for step in steps for i in step.ids))

    def document_ids(self) -> tuple[str, ...]:
        return tuple(i for step in self.documents for i in step.ids)


@dataclass(frozen=True)
class Documents:
    """What validation read: the discovery document (a JSON object) and the JWKS fetch."""

    discovery: dict
    jwks: Any  # a discovery.Fetched, or None when not fetched
    allow_loopback_http: bool


@dataclass(frozen=True)
class ProviderSpec:
    """What the admin configured; enough to know what the discovery document must say."""

    issuer: str
    discovery_url: str = ""  # defaults to issuer + /.well-known/openid-configuration
    client_id: str = ""
    confidential: bool = False
    keycloak_server_url: str = ""
    keycloak_realm: str = ""
    cognito_domain: str = ""
    url_base: str = ""
    # What Diffgram logs in to Keycloak with at start-up (passwords only as set / not set);
    # None when unknown (check_issuer), which skips those checks.
    keycloak_master_user: str | None = ""
    keycloak_master_password_set: bool = False
    keycloak_diffgram_user: str | None = ""
    keycloak_diffgram_password_set: bool = False
    # The names of the instances the provider is assigned to; None when unknown.
    instance_names: tuple | None = ()
    diffgram_version: str = diffgram_releases.LATEST
    # What the console needs to reach this issuer, added to a failed fetch (e.g. AWS for Cognito).
    reach_hint: str = ""

    def discovery_location(self) -> str:
        return self.discovery_url or self.issuer.rstrip("/") + DISCOVERY_PATH


def _is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problems(url, allow_loopback_http) -> list[str]:
    """What makes `url` unacceptable as an issuer or endpoint (empty list when it is fine)."""
    if not isinstance(url, str) or not url:
        return ["it is not a URL"]
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return ["it is not a valid URL"]
    problems = []
    if any(character.isspace() for character in url):
        problems.append("it contains whitespace")
    if parts.scheme == "http":
        if host and _is_loopback_host(host) and not allow_loopback_http:
            problems.append(
                "it uses http:// on a loopback address, which only "
                "SSO_ADMIN_ALLOW_PRIVATE_URLS=true allows: for development only"
            )
        elif not (allow_loopback_http and host and _is_loopback_host(host)):
            problems.append("it uses http:// (only https:// is allowed)")
    elif parts.scheme != "https":
        problems.append("it must start with https://")
    if not host:
        problems.append("it has no host")
    if parts.query:
        problems.append("it has a query string")
    if parts.fragment:
        problems.append("it has a fragment")
    if parts.username or parts.password:
        problems.append("it contains credentials")
    return problems


def without_one_slash(url) -> str:
    return url[:-1] if url.endswith("/") else url


def strings(value) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def check_issuer_match(add, spec, documents) -> None:
    found = documents.discovery.get("issuer")
    if not isinstance(found, str):
        add("issuer.match", FAIL, "The discovery document has no issuer string.")
    elif without_one_slash(found) == without_one_slash(spec.issuer):
        add("issuer.match", PASS, f"The document's issuer equals the configured {spec.issuer}.")
    else:
        add(
            "issuer.match",
            FAIL,
            f"The document says issuer {found!r} but the configured issuer is {spec.issuer!r}. "
            "They must be identical (tokens are checked against it): fix the configured issuer.",
        )


def check_required_metadata(add, spec, documents) -> None:
    document = documents.discovery
    missing = [name for name in REQUIRED_METADATA if name not in document]
    wrong_type = [
        name
        for name, kind in REQUIRED_METADATA.items()
        if name in document and not isinstance(document[name], kind)
    ]
    if missing or wrong_type:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if wrong_type:
            parts.append("wrong type for " + ", ".join(wrong_type))
        add("metadata.required", FAIL, "Required discovery metadata: " + "; ".join(parts) + ".")
    else:
        add("metadata.required", PASS, "All required discovery metadata is present.")


def check_endpoints(add, spec, documents) -> None:
    document, allow_loopback_http = documents.discovery, documents.allow_loopback_http
    bad = []
    for name in ENDPOINT_KEYS:
        if name in document:
            problems = url_problems(document[name], allow_loopback_http)
            if problems:
                bad.append(f"{name} {document[name]!r}: {'; '.join(problems)}")
    if bad:
        add("endpoints.https", FAIL, "Unacceptable endpoint URLs: " + " | ".join(bad) + ".")
        return
    plain_http = [
        name
        for name in ENDPOINT_KEYS
        if isinstance(document.get(name), str) and document[name].startswith("http://")
    ]
    if plain_http:
        add(
            "endpoints.https",
            PASS,
            "Every endpoint URL is acceptable (no query or fragment). These use http:// on "
            "loopback, allowed by SSO_ADMIN_ALLOW_PRIVATE_URLS for development only: "
            + ", ".join(plain_http)
            + ".",
        )
    else:
        add("endpoints.https", PASS, "Every endpoint URL uses https:// (no query or fragment).")


def check_code_flow(add, spec, documents) -> None:
    document = documents.discovery
    response_types = strings(document.get("response_types_supported"))
    grant_types = document.get("grant_types_supported", ["authorization_code", "implicit"])
    if "code" not in response_types:
        add(
            "response_types.code",
            FAIL,
            "response_types_supported does not contain 'code': Diffgram uses the "
            "authorization-code flow.",
        )
    elif "authorization_code" not in strings(grant_types):
        add(
            "response_types.code",
            FAIL,
            "grant_types_supported does not contain 'authorization_code', which Diffgram needs.",
        )
    else:
        add("response_types.code", PASS, "The authorization-code flow is supported.")


def check_id_token_alg(add, spec, documents) -> None:
    algorithms = strings(documents.discovery.get("id_token_signing_alg_values_supported"))
    if "RS256" in algorithms:
        add("id_token_alg.rs256", PASS, "ID tokens can be signed with RS256.")
    else:
        add(
            "id_token_alg.rs256",
            FAIL,
            "id_token_signing_alg_values_supported does not contain RS256 "
            f"(it lists {', '.join(algorithms) or 'nothing'}); OIDC requires RS256.",
        )


def check_jwks(add, spec, documents) -> None:
    jwks_uri, allow_loopback_http = (
        documents.discovery.get("jwks_uri"),
        documents.allow_loopback_http,
    )
    jwks_fetched = documents.jwks
    if not isinstance(jwks_uri, str) or url_problems(jwks_uri, allow_loopback_http):
        add("jwks.fetch", SKIP, "Skipped: there is no acceptable jwks_uri.")
        add("jwks.keys", SKIP, "Skipped: there is no acceptable jwks_uri.")
        return
    if jwks_fetched is None or jwks_fetched.error:
        reason = jwks_fetched.error if jwks_fetched else "not fetched"
        add("jwks.fetch", FAIL, f"Could not read the JWKS at {jwks_uri}: {reason}")
        add("jwks.keys", SKIP, "Skipped: the JWKS could not be read.")
        return
    jwks = jwks_fetched.document
    if not isinstance(jwks, dict):
        add("jwks.fetch", FAIL, f"The JWKS at {jwks_uri} is JSON but not an object.")
        add("jwks.keys", SKIP, "Skipped: the JWKS is not a JSON object.")
        return
    add("jwks.fetch", PASS, f"Read the JWKS at {jwks_uri}.")
    status, message = jwks_verdict(jwks)
    add("jwks.keys", status, message)


def jwks_verdict(jwks) -> tuple[str, str]:
    """(status, message) for a parsed JWKS object."""
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        return FAIL, "The JWKS has no keys: ID tokens could not be verified."
    usable, weak, problems = 0, 0, []
    for index, key in enumerate(keys):
        label = f"key {index + 1}"
        if not isinstance(key, dict):
            # Every key must be a JSON object: sign-in would fail on this one.
            return FAIL, f"The JWKS's {label} is not a JSON object; fix the JWKS."
        if isinstance(key.get("kid"), str):
            label += f" (kid {key['kid'][:60]!r})"
        if key.get("kty") == "oct":
            return FAIL, f"The JWKS publishes a symmetric (oct) key, {label}: never publish those."
        leaked = [member for member in PRIVATE_KEY_MEMBERS if member in key]
        if leaked:
            return (
                FAIL,
                f"The JWKS publishes private key material ({', '.join(leaked)}) in {label}: "
                "rotate that key now.",
            )
        if key.get("kty") != "RSA" or key.get("use", "sig") != "sig":
            continue
        if key.get("alg", "RS256") != "RS256":
            continue
        try:
            rsa_key = RSAKey.import_key(key)
        except (JoseError, ValueError, TypeError) as error:
            problems.append(f"{label} cannot be read ({error.__class__.__name__})")
            continue
        usable += 1
        if rsa_key.raw_value.key_size < 2048:
            weak += 1
    if not usable:
        detail = f" ({'; '.join(problems)})" if problems else ""
        return FAIL, f"The JWKS has no usable RS256 signing key{detail}."
    if weak or problems:
        shorter = ngettext("%d RSA key shorter", "%d RSA keys shorter", weak) % weak
        notes = problems + ([f"{shorter} than 2048 bits"] if weak else [])
        return WARN, f"{_usable_keys(usable)}, but: {'; '.join(notes)}."
    return PASS, f"{_usable_keys(usable)}; no private or symmetric keys."


def _usable_keys(count) -> str:
    return ngettext("%d usable RS256 signing key", "%d usable RS256 signing keys", count) % count


def has_userinfo(document) -> bool:
    endpoint = document.get("userinfo_endpoint")
    return isinstance(endpoint, str) and bool(endpoint)


def check_userinfo(add, spec, documents) -> None:
    if has_userinfo(documents.discovery):
        add("userinfo.present", PASS, "A userinfo endpoint is published.")
    else:
        add("userinfo.present", WARN, "No userinfo_endpoint is published (recommended).")


def check_scopes(add, spec, documents) -> None:
    document = documents.discovery
    if "scopes_supported" not in document:
        add("scopes.openid_email", WARN, "scopes_supported is not published; cannot confirm email.")
        return
    scopes = strings(document.get("scopes_supported"))
    if "openid" not in scopes:
        add("scopes.openid_email", FAIL, "scopes_supported does not contain 'openid'.")
    elif "email" not in scopes:
        add(
            "scopes.openid_email",
            WARN,
            "scopes_supported does not contain 'email': Diffgram needs the user's email.",
        )
    else:
        add("scopes.openid_email", PASS, "The openid and email scopes are supported.")


def token_auth_methods(document) -> list[str]:
    """How the token endpoint lets clients authenticate (client_secret_basic when not said,
    RFC 8414)."""
    return strings(document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"]))


def check_token_auth(add, spec, documents) -> None:
    """For a client of the console's own sign-in, which sends its secret either way."""
    methods = token_auth_methods(documents.discovery)
    if not spec.confidential:
        add("token_auth.method", PASS, "Public client: no client secret is sent.")
    elif "client_secret_post" in methods:
        add("token_auth.method", PASS, "client_secret_post is supported.")
    elif "client_secret_basic" in methods:
        add(
            "token_auth.method",
            PASS,
            "client_secret_basic is supported (the console's own sign-in uses it).",
        )
    else:
        add(
            "token_auth.method",
            FAIL,
            "This client has a secret, but the provider accepts it neither in the token request "
            f"body nor in its header (it lists {', '.join(methods) or 'nothing'}). Allow "
            "client_secret_basic or client_secret_post for this client.",
        )


# The checks of the documents every provider gets, in report order.
ISSUER_MATCH = Check(check_issuer_match, ("issuer.match",))
REQUIRED_METADATA_CHECK = Check(check_required_metadata, ("metadata.required",))
ENDPOINTS = Check(check_endpoints, ("endpoints.https",))
CODE_FLOW = Check(check_code_flow, ("response_types.code",))
ID_TOKEN_ALG = Check(check_id_token_alg, ("id_token_alg.rs256",))
JWKS = Check(check_jwks, ("jwks.fetch", "jwks.keys"))
USERINFO = Check(check_userinfo, ("userinfo.present",))
SCOPES = Check(check_scopes, ("scopes.openid_email",))
TOKEN_AUTH = Check(check_token_auth, ("token_auth.method",))
OPENID_CHECKS = (ISSUER_MATCH, REQUIRED_METADATA_CHECK, ENDPOINTS, CODE_FLOW, ID_TOKEN_ALG, JWKS)


def failures_first(checks):
    """`checks` (CheckResults, or their dicts as stored) failures first, then warnings, passes
    and skips; each group in the order the checks ran."""

    def status(check):
        return check["status"] if isinstance(check, dict) else check.status

    return sorted(checks, key=lambda check: STATUS_ORDER.get(status(check), len(STATUS_ORDER)))
