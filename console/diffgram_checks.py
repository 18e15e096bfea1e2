"""The checks of what Diffgram's own code needs and does with the published settings
(docs/DIFFGRAM.md): the host it concatenates paths to, its URL_BASE, what its Keycloak client
logs in with at start-up, one Keycloak client per instance, and the known defects of the
Diffgram release. Pure functions; console/discovery.py runs them with the discovery checks."""

from __future__ import annotations

from django.utils.translation import ngettext

from console import diffgram, diffgram_releases
from console.oidc_checks import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Check,
    has_userinfo,
    token_auth_methods,
    url_problems,
    without_one_slash,
)

# --- of the documents -----------------------------------------------------------------------------


def check_not_for_diffgram(add, spec, documents) -> None:
    add(
        "diffgram.host",
        SKIP,
        "Not applicable: Diffgram talks to Cognito or Keycloak; use this provider for the "
        "console's own login or federate it through Cognito.",
    )


def _host_verdict(add, host, wrong) -> None:
    if not host:
        add("diffgram.host", FAIL, "OAUTH2_PROVIDER_HOST cannot be derived: no token_endpoint.")
    elif wrong:
        add("diffgram.host", FAIL, f"With OAUTH2_PROVIDER_HOST={host}: " + "; ".join(wrong) + ".")
    else:
        add("diffgram.host", PASS, f"OAUTH2_PROVIDER_HOST={host} matches the discovery document.")


def check_oauth2_host(add, spec, documents) -> None:
    """Diffgram's OAuth2 (Cognito) path appends its token and userinfo paths to the host."""
    document = documents.discovery
    host = diffgram.oauth2_provider_host(document, spec.cognito_domain)
    expected = {
        "token_endpoint": host + diffgram.OAUTH2_TOKEN_PATH,
        "userinfo_endpoint": host + diffgram.OAUTH2_USERINFO_PATH,
    }
    wrong = [
        f"{name} is {document.get(name)!r}, Diffgram will call {url!r}"
        for name, url in expected.items()
        if document.get(name) != url
    ]
    _host_verdict(add, host, wrong)


def check_keycloak_host(add, spec, documents) -> None:
    """Diffgram's Keycloak path builds the issuer from the host and the realm."""
    host = (
        diffgram.with_trailing_slash(spec.keycloak_server_url) if spec.keycloak_server_url else ""
    )
    expected_issuer = host + "realms/" + spec.keycloak_realm
    found = documents.discovery.get("issuer")
    right = isinstance(found, str) and without_one_slash(found) == expected_issuer
    _host_verdict(
        add,
        host,
        [] if right else [f"the issuer is {found!r}, Diffgram expects {expected_issuer!r}"],
    )


def check_userinfo_for_diffgram(add, spec, documents) -> None:
    if has_userinfo(documents.discovery):
        add("userinfo.present", PASS, "A userinfo endpoint is published.")
    else:
        add(
            "userinfo.present",
            FAIL,
            "No userinfo_endpoint: Diffgram reads the user's sub and email from it.",
        )


def check_token_auth_post(add, spec, documents) -> None:
    """Diffgram sends a client secret in the token request body."""
    methods = token_auth_methods(documents.discovery)
    if not spec.confidential:
        add("token_auth.method", PASS, "Public client: no client secret is sent.")
    elif "client_secret_post" in methods:
        add("token_auth.method", PASS, "client_secret_post is supported, as Diffgram needs.")
    else:
        add(
            "token_auth.method",
            FAIL,
            "This client has a secret, which Diffgram sends in the token request body "
            "(client_secret_post), but the provider supports only "
            f"{', '.join(methods) or 'nothing'}. Allow client_secret_post for this client.",
        )


def check_keycloak_token_auth(add, spec, documents) -> None:
    """Informational: Diffgram creates its Keycloak client and reads the secret from the admin
    API, then sends it in the token request body."""
    methods = token_auth_methods(documents.discovery)
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


def _check_url_base(add, spec, *, callback_url=None) -> None:
    """`callback_url`: Diffgram's redirect URI rule when it inserts no "/" (URL_BASE must end
    with one)."""
    if not spec.url_base:
        add("diffgram.url_base", SKIP, "No Diffgram URL_BASE given.")
        return
    problems = url_problems(spec.url_base, allow_loopback_http=True)
    plain_http = [problem for problem in problems if problem.startswith("it uses http://")]
    problems = [problem for problem in problems if problem not in plain_http]
    if problems:
        add("diffgram.url_base", FAIL, f"URL_BASE {spec.url_base!r}: {'; '.join(problems)}.")
    elif callback_url and not spec.url_base.endswith("/"):
        add(
            "diffgram.url_base",
            FAIL,
            f"URL_BASE {spec.url_base!r} must end with '/': Diffgram would send the redirect URI "
            f"{callback_url(spec.url_base)!r}.",
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


def check_url_base(add, spec) -> None:
    _check_url_base(add, spec)


def check_keycloak_url_base(add, spec) -> None:
    _check_url_base(add, spec, callback_url=diffgram.keycloak_callback_url)


# --- from the configuration alone ----------------------------------------------------------------


def _absent(user, password_set, user_words, password_words):
    """What is missing of a user name and its password, in words ("" when nothing is)."""
    missing = [(user_words, not user), (password_words, not password_set)]
    return " and ".join(words for words, absent in missing if absent)


def check_keycloak_admin(add, spec) -> None:
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


def check_keycloak_realm_user(add, spec) -> None:
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


def client_per_instance_verdict(spec) -> tuple[str, str]:
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


def check_client_per_instance(add, spec) -> None:
    add("diffgram.keycloak_client_per_instance", *client_per_instance_verdict(spec))


def known_issues_check(areas) -> Check:
    """The check of the known Diffgram defects in the `areas` of its code a kind's sign-in
    goes through (console/diffgram_releases.py)."""

    def check_known_issues(add, spec) -> None:
        _known_issues(add, spec, areas)

    return Check(check_known_issues, ("diffgram.known_issues",))


def _known_issues(add, spec, areas) -> None:
    version = spec.diffgram_version
    issues = diffgram_releases.known_issues(version, areas, client_secret=spec.confidential)
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
        add("diffgram.known_issues", WARN, known_issues_text(version, issues))


def known_issues_text(version, issues) -> str:
    """One line per defect, then each workaround once with the defects it answers (several
    defects share one): pages show the lines as they are."""
    defects = [
        f"{number}. {issue.issue}: {issue.consequence}." for number, issue in enumerate(issues, 1)
    ]
    answers: dict[str, list[str]] = {}
    for number, issue in enumerate(issues, 1):
        answers.setdefault(issue.workaround, []).append(str(number))
    instead = [
        f"- {workaround} ({ngettext('defect', 'defects', len(numbers))} {', '.join(numbers)})."
        for workaround, numbers in answers.items()
    ]
    count = ngettext("%d known defect", "%d known defects", len(issues)) % len(issues)
    return "\n".join(
        [f"Diffgram {version} has {count} here that no setting fixes:", *defects,
         "What to do instead:", *instead]
    )  # fmt: skip


NOT_FOR_DIFFGRAM = Check(check_not_for_diffgram, ("diffgram.host",))
OAUTH2_HOST = Check(check_oauth2_host, ("diffgram.host",))
KEYCLOAK_HOST = Check(check_keycloak_host, ("diffgram.host",))
USERINFO_FOR_DIFFGRAM = Check(check_userinfo_for_diffgram, ("userinfo.present",))
TOKEN_AUTH_POST = Check(check_token_auth_post, ("token_auth.method",))
KEYCLOAK_TOKEN_AUTH = Check(check_keycloak_token_auth, ("token_auth.method",))
URL_BASE = Check(check_url_base, ("diffgram.url_base",))
KEYCLOAK_URL_BASE = Check(check_keycloak_url_base, ("diffgram.url_base",))
KEYCLOAK_ADMIN = Check(check_keycloak_admin, ("diffgram.keycloak_admin",))
KEYCLOAK_REALM_USER = Check(check_keycloak_realm_user, ("diffgram.keycloak_realm_user",))
CLIENT_PER_INSTANCE = Check(check_client_per_instance, ("diffgram.keycloak_client_per_instance",))
