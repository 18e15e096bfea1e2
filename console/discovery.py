"""Validate an identity provider against its OIDC discovery document and JWKS.

`validate()` fetches (through console.outbound) and then runs `evaluate()`, a pure function over
what was fetched, so every check can be tested on plain data. Each check has a stable id and
ends pass / warn / fail / skip with a message an admin can act on. Checks never raise on bad
input: any JSON at all yields check results.

Rules: OpenID Connect Discovery 1.0, at the depth of the conformance suite, plus what Diffgram's
own code needs and does (docs/DIFFGRAM.md). The Diffgram checks that read only the configuration
run even when the documents could not be read.
"""

import ipaddress
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from console import diffgram, diffgram_releases, outbound

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
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
CHECK_IDS = (
    "issuer.url",
    "discovery.fetch",
    "issuer.match",
    "metadata.required",
    "endpoints.https",
    "response_types.code",
    "id_token_alg.rs256",
    "jwks.fetch",
    "jwks.keys",
    "userinfo.present",
    "scopes.openid_email",
    "token_auth.method",
    "diffgram.host",
    # From here on the checks read only the configuration, never the documents.
    "diffgram.url_base",
    "diffgram.keycloak_admin",
    "diffgram.keycloak_realm_user",
    "diffgram.keycloak_client_per_instance",
    "diffgram.known_issues",
)
CONFIG_CHECK_IDS = CHECK_IDS[CHECK_IDS.index("diffgram.url_base") :]
KEYCLOAK_CHECK_IDS = (
    "diffgram.keycloak_admin",
    "diffgram.keycloak_realm_user",
    "diffgram.keycloak_client_per_instance",
)


def check_ids(kind):
    """The checks a provider of this kind gets, in report order."""
    skipped = set() if kind == diffgram.KEYCLOAK else set(KEYCLOAK_CHECK_IDS)
    if kind not in diffgram.DIFFGRAM_KINDS:
        skipped.add("diffgram.known_issues")
    return tuple(check_id for check_id in CHECK_IDS if check_id not in skipped)


@dataclass(frozen=True)
class CheckResult:
    id: str
    status: str
    message: str

    def as_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class ProviderSpec:
    """What the admin configured; enough to know what the discovery document must say."""

    kind: str
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

    def discovery_location(self):
        return self.discovery_url or self.issuer.rstrip("/") + DISCOVERY_PATH


@dataclass
class Fetched:
    """The outcome of fetching one JSON document: a status and parsed JSON, or an error."""

    url: str
    status: int | None = None
    document: object = None
    error: str = ""


@dataclass
class Report:
    checks: list = field(default_factory=list)
    discovery: Fetched | None = None
    jwks: Fetched | None = None

    @property
    def ok(self):
        return not any(check.status == FAIL for check in self.checks)

    @property
    def fetched_everything(self):
        """True when both documents were read as JSON objects (a snapshot worth keeping)."""
        return all(
            fetched is not None and not fetched.error and isinstance(fetched.document, dict)
            for fetched in (self.discovery, self.jwks)
        )

    def as_list(self):
        return [check.as_dict() for check in self.checks]


# --- I/O ----------------------------------------------------------------------------------------


def fetch_json(url):
    try:
        response = outbound.get(url, headers={"Accept": "application/json"})
    except outbound.OutboundError as error:
        return Fetched(url, error=error.message)
    if response.status != 200:
        return Fetched(url, status=response.status, error=f"{url} answered HTTP {response.status}")
    try:
        return Fetched(url, status=200, document=response.json())
    except outbound.OutboundError as error:
        return Fetched(url, status=200, error=error.message)


def validate(spec, *, allow_loopback_http, fetch=fetch_json):
    """Fetch the discovery document and the JWKS it names, then evaluate every check."""
    discovery_fetched = jwks_fetched = None
    if not url_problems(spec.issuer, allow_loopback_http):
        discovery_fetched = fetch(spec.discovery_location())
        document = discovery_fetched.document
        if isinstance(document, dict):
            jwks_uri = document.get("jwks_uri")
            if isinstance(jwks_uri, str) and not url_problems(jwks_uri, allow_loopback_http):
                jwks_fetched = fetch(jwks_uri)
    checks = evaluate(spec, discovery_fetched, jwks_fetched, allow_loopback_http)
    return Report(checks=checks, discovery=discovery_fetched, jwks=jwks_fetched)


# --- pure checks --------------------------------------------------------------------------------


def _is_loopback_host(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problems(url, allow_loopback_http):
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
    if parts.scheme == "http":
        if not (allow_loopback_http and host and _is_loopback_host(host)):
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


def _without_one_slash(url):
    return url[:-1] if url.endswith("/") else url


def _strings(value):
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def evaluate(spec, discovery_fetched, jwks_fetched, allow_loopback_http):
    """All checks for the provider's kind, in a fixed order; a check that cannot run because
    of an earlier failure is `skip`, never `fail`."""
    results = []

    def add(check_id, status, message):
        results.append(CheckResult(check_id, status, message))

    stopped = _evaluate_documents(add, spec, discovery_fetched, jwks_fetched, allow_loopback_http)
    if stopped:
        done = {result.id for result in results}
        for check_id in CHECK_IDS[: CHECK_IDS.index("diffgram.url_base")]:
            if check_id not in done:
                add(check_id, SKIP, stopped)
    _check_url_base(add, spec)
    if spec.kind == diffgram.KEYCLOAK:
        _check_keycloak_admin(add, spec)
        _check_keycloak_realm_user(add, spec)
        add("diffgram.keycloak_client_per_instance", *client_per_instance_verdict(spec))
    if spec.kind in diffgram.DIFFGRAM_KINDS:
        _check_known_issues(add, spec)
    return results


def _evaluate_documents(add, spec, discovery_fetched, jwks_fetched, allow_loopback_http):
    """The checks of the discovery document and JWKS. Returns why it stopped early (the
    caller skips the checks not run), or "" when every one ran."""
    problems = url_problems(spec.issuer, allow_loopback_http)
    if problems:
        add(
            "issuer.url",
            FAIL,
            f"The issuer {spec.issuer!r} is not acceptable: {'; '.join(problems)}.",
        )
        return "Skipped: the issuer URL is not acceptable."
    add("issuer.url", PASS, f"The issuer {spec.issuer} is a well-formed issuer URL.")

    location = spec.discovery_location()
    if discovery_fetched is None or discovery_fetched.error:
        reason = discovery_fetched.error if discovery_fetched else "not fetched"
        add(
            "discovery.fetch",
            FAIL,
            f"Could not read the discovery document at {location}: {reason}",
        )
        return "Skipped: the discovery document could not be read."
    document = discovery_fetched.document
    if not isinstance(document, dict):
        add(
            "discovery.fetch",
            FAIL,
            f"The discovery document at {location} is JSON but not an object "
            f"(it is a {type(document).__name__}).",
        )
        return "Skipped: the discovery document is not a JSON object."
    add("discovery.fetch", PASS, f"Read the discovery document at {location}.")

    _check_issuer_match(add, spec, document)
    _check_required_metadata(add, document)
    _check_endpoints(add, document, allow_loopback_http)
    _check_code_flow(add, document)
    _check_id_token_alg(add, document)
    _check_jwks(add, document, jwks_fetched, allow_loopback_http)
    _check_userinfo(add, spec, document)
    _check_scopes(add, document)
    _check_token_auth(add, spec, document)
    _check_diffgram_host(add, spec, document)
    return ""


def _check_issuer_match(add, spec, document):
    found = document.get("issuer")
    if not isinstance(found, str):
        add("issuer.match", FAIL, "The discovery document has no issuer string.")
    elif _without_one_slash(found) == _without_one_slash(spec.issuer):
        add("issuer.match", PASS, f"The document's issuer equals the configured {spec.issuer}.")
    else:
        add(
            "issuer.match",
            FAIL,
            f"The document says issuer {found!r} but the configured issuer is {spec.issuer!r}. "
            "They must be identical (tokens are checked against it): fix the configured issuer.",
        )


def _check_required_metadata(add, document):
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


def _check_endpoints(add, document, allow_loopback_http):
    bad = []
    for name in ENDPOINT_KEYS:
        if name in document:
            problems = url_problems(document[name], allow_loopback_http)
            if problems:
                bad.append(f"{name} {document[name]!r}: {'; '.join(problems)}")
    if bad:
        add("endpoints.https", FAIL, "Unacceptable endpoint URLs: " + " | ".join(bad) + ".")
    else:
        add(
            "endpoints.https",
            PASS,
            "Every endpoint URL is acceptable (https, no query or fragment).",
        )


def _check_code_flow(add, document):
    response_types = _strings(document.get("response_types_supported"))
    grant_types = document.get("grant_types_supported", ["authorization_code", "implicit"])
    if "code" not in response_types:
        add(
            "response_types.code",
            FAIL,
            "response_types_supported does not contain 'code': Diffgram uses the "
            "authorization-code flow.",
        )
    elif "authorization_code" not in _strings(grant_types):
        add(
            "response_types.code",
            FAIL,
            "grant_types_supported does not contain 'authorization_code', which Diffgram needs.",
        )
    else:
        add("response_types.code", PASS, "The authorization-code flow is supported.")


def _check_id_token_alg(add, document):
    algorithms = _strings(document.get("id_token_signing_alg_values_supported"))
    if "RS256" in algorithms:
        add("id_token_alg.rs256", PASS, "ID tokens can be signed with RS256.")
    else:
        add(
            "id_token_alg.rs256",
            FAIL,
            "id_token_signing_alg_values_supported does not contain RS256 "
            f"(it lists {', '.join(algorithms) or 'nothing'}); OIDC requires RS256.",
        )


def _check_jwks(add, document, jwks_fetched, allow_loopback_http):
    jwks_uri = document.get("jwks_uri")
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


def jwks_verdict(jwks):
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
        notes = problems + ([f"{weak} RSA key(s) shorter than 2048 bits"] if weak else [])
        return WARN, f"{usable} usable RS256 signing key(s), but: {'; '.join(notes)}."
    return PASS, f"{usable} usable RS256 signing key(s); no private or symmetric keys."


def _check_userinfo(add, spec, document):
    if isinstance(document.get("userinfo_endpoint"), str) and document["userinfo_endpoint"]:
        add("userinfo.present", PASS, "A userinfo endpoint is published.")
    elif spec.kind in diffgram.DIFFGRAM_KINDS:
        add(
            "userinfo.present",
            FAIL,
            "No userinfo_endpoint: Diffgram reads the user's sub and email from it.",
        )
    else:
        add("userinfo.present", WARN, "No userinfo_endpoint is published (recommended).")


def _check_scopes(add, document):
    if "scopes_supported" not in document:
        add("scopes.openid_email", WARN, "scopes_supported is not published; cannot confirm email.")
        return
    scopes = _strings(document.get("scopes_supported"))
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


def _check_token_auth(add, spec, document):
    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
    methods = _strings(methods)
    if spec.kind == diffgram.KEYCLOAK:
        # Informational: Diffgram creates its Keycloak client and reads the secret from the
        # admin API, then sends it in the token request body.
        if "client_secret_post" in methods:
            add(
                "token_auth.method",
                PASS,
                "Keycloak accepts client_secret_post, which Diffgram uses with the secret it "
                "reads from Keycloak's admin API.",
            )
        else:
            add(
                "token_auth.method",
                WARN,
                "Keycloak does not list client_secret_post, which Diffgram uses with the "
                f"secret it reads from Keycloak's admin API (it lists {', '.join(methods)}).",
            )
    elif not spec.confidential:
        add("token_auth.method", PASS, "Public client: no client secret is sent.")
    elif "client_secret_post" in methods:
        add("token_auth.method", PASS, "client_secret_post is supported, as Diffgram needs.")
    elif spec.kind not in diffgram.DIFFGRAM_KINDS and "client_secret_basic" in methods:
        add(
            "token_auth.method",
            PASS,
            "client_secret_basic is supported (the console's own sign-in uses it).",
        )
    else:
        add(
            "token_auth.method",
            FAIL,
            "This client has a secret, which Diffgram sends in the token request body "
            "(client_secret_post), but the provider supports only "
            f"{', '.join(methods) or 'nothing'}. Allow client_secret_post for this client.",
        )


def _check_diffgram_host(add, spec, document):
    if spec.kind not in diffgram.DIFFGRAM_KINDS:
        add(
            "diffgram.host",
            SKIP,
            "Not applicable: Diffgram talks to Cognito or Keycloak; use this provider for the "
            "console's own login or federate it through Cognito.",
        )
        return
    config = diffgram.ProviderConfig(
        kind=spec.kind,
        client_id=spec.client_id,
        cognito_domain=spec.cognito_domain,
        keycloak_server_url=spec.keycloak_server_url,
        discovery=document,
    )
    host = diffgram.provider_host(config)
    if not host:
        add("diffgram.host", FAIL, "OAUTH2_PROVIDER_HOST cannot be derived: no token_endpoint.")
        return
    if spec.kind == diffgram.COGNITO:
        expected = {
            "token_endpoint": host + diffgram.COGNITO_TOKEN_PATH,
            "userinfo_endpoint": host + diffgram.COGNITO_USERINFO_PATH,
        }
        wrong = [
            f"{name} is {document.get(name)!r}, Diffgram will call {url!r}"
            for name, url in expected.items()
            if document.get(name) != url
        ]
    else:
        expected_issuer = host + "realms/" + spec.keycloak_realm
        found = document.get("issuer")
        wrong = (
            []
            if isinstance(found, str) and _without_one_slash(found) == expected_issuer
            else [f"the issuer is {found!r}, Diffgram expects {expected_issuer!r}"]
        )
    if wrong:
        add("diffgram.host", FAIL, f"With OAUTH2_PROVIDER_HOST={host}: " + "; ".join(wrong) + ".")
    else:
        add("diffgram.host", PASS, f"OAUTH2_PROVIDER_HOST={host} matches the discovery document.")


def _check_url_base(add, spec):
    if not spec.url_base:
        add("diffgram.url_base", SKIP, "No Diffgram URL_BASE given.")
        return
    problems = url_problems(spec.url_base, allow_loopback_http=True)
    plain_http = [problem for problem in problems if problem.startswith("it uses http://")]
    problems = [problem for problem in problems if problem not in plain_http]
    if problems:
        add("diffgram.url_base", FAIL, f"URL_BASE {spec.url_base!r}: {'; '.join(problems)}.")
    elif spec.kind == diffgram.KEYCLOAK and not spec.url_base.endswith("/"):
        add(
            "diffgram.url_base",
            FAIL,
            f"URL_BASE {spec.url_base!r} must end with '/': Diffgram would send the redirect URI "
            f"{diffgram.callback_url(diffgram.KEYCLOAK, spec.url_base)!r}.",
        )
    elif plain_http:
        add(
            "diffgram.url_base",
            WARN,
            f"URL_BASE {spec.url_base} uses plain http: authorization codes travel unencrypted, "
            "and Cognito accepts http callback URLs only for localhost.",
        )
    else:
        add("diffgram.url_base", PASS, f"URL_BASE {spec.url_base} gives correct Diffgram URLs.")


# --- Diffgram's own code, from the configuration alone (docs/DIFFGRAM.md) ------------------------


def _absent(user, password_set, user_words, password_words):
    """What is missing of a user name and its password, in words ("" when nothing is)."""
    missing = [(user_words, not user), (password_words, not password_set)]
    return " and ".join(words for words, absent in missing if absent)


def _check_keycloak_admin(add, spec):
    user = spec.keycloak_master_user
    missing = _absent(user, spec.keycloak_master_password_set, "user", "password")
    if user is None:
        add("diffgram.keycloak_admin", SKIP, "Not checked: no master-realm credentials given.")
    elif missing:
        add(
            "diffgram.keycloak_admin",
            FAIL,
            f"No master admin {missing}: at every start Diffgram logs in to Keycloak's master "
            "realm to create its realm, client and roles, and without them it tries "
            "admin/admin; that login fails and SSO never starts. Enter a master-realm admin "
            "user and its password.",
        )
    else:
        add(
            "diffgram.keycloak_admin",
            PASS,
            f"Diffgram will log in to the master realm as {user} to set up its realm and client.",
        )


def _check_keycloak_realm_user(add, spec):
    user = spec.keycloak_diffgram_user
    defaults = _absent(
        user, spec.keycloak_diffgram_password_set, "user 'diffgram'", "password 'diffgram'"
    )
    if user is None:
        add("diffgram.keycloak_realm_user", SKIP, "Not checked: no Diffgram admin user given.")
    elif defaults:
        add(
            "diffgram.keycloak_realm_user",
            FAIL,
            f"At every start Diffgram creates or resets a user in realm {spec.keycloak_realm!r} "
            f"(not a temporary password); without a Diffgram admin user and password it uses the "
            f"{defaults}, a password anyone can look up. Enter a user name and a strong password.",
        )
    else:
        add(
            "diffgram.keycloak_realm_user",
            PASS,
            f"Diffgram will create or reset realm user {user} with the password entered here.",
        )


def client_per_instance_verdict(spec):
    """(status, message): instances must not share a Keycloak client (Diffgram overwrites its
    client's redirect URIs at every start)."""
    client_id, names = spec.client_id, spec.instance_names
    placeholder = diffgram.INSTANCE_PLACEHOLDER
    if placeholder in client_id:
        if names:
            clients = ", ".join(diffgram.instance_client_id(client_id, n) for n in sorted(names))
            return PASS, f"Each instance gets its own Keycloak client: {clients}."
        return PASS, f"Each instance gets its own Keycloak client ({placeholder} = its name)."
    if names is not None and len(names) > 1:
        return (
            FAIL,
            f"{len(names)} instances ({', '.join(sorted(names))}) share client id {client_id!r}: "
            "at every start Diffgram replaces that client's redirect URIs with its own, so each "
            f"instance breaks the others' sign-in. Put {placeholder} in the client id (e.g. "
            f"{client_id}-{placeholder}) so that each gets its own client.",
        )
    return (
        PASS,
        f"One instance at most uses client id {client_id!r}. Before assigning a second, put "
        f"{placeholder} in the client id (e.g. {client_id}-{placeholder}): Diffgram overwrites its "
        "client's redirect URIs at every start.",
    )


def _check_known_issues(add, spec):
    version = spec.diffgram_version
    issues = diffgram_releases.known_issues(version, spec.kind, client_secret=spec.confidential)
    if issues is None:
        known = ", ".join(diffgram_releases.RELEASES)
        add(
            "diffgram.known_issues",
            WARN,
            f"The console has no record of Diffgram {version}'s defects (it knows {known}): "
            "check that release's sign-in yourself, or set DIFFGRAM_VERSION.",
        )
    elif not issues:
        add(
            "diffgram.known_issues",
            PASS,
            f"No known defect of Diffgram {version} applies to this setup.",
        )
    else:
        listed = " ".join(
            f"({number}) {issue.issue}. {issue.consequence}. Workaround: {issue.workaround}."
            for number, issue in enumerate(issues, 1)
        )
        add(
            "diffgram.known_issues",
            WARN,
            f"Diffgram {version} has {len(issues)} known defect(s) here that no setting fixes: "
            f"{listed}",
        )
