"""What Diffgram's own code gets wrong that no setting can fix, per Diffgram release.

Pure data, read by the `diffgram.known_issues` check and `check_issuer`. The console targets one
Diffgram release (settings.DIFFGRAM_VERSION); the facts come from running that release's code
against a real OpenID Provider (docs/DIFFGRAM.md). When Diffgram ships a fix, add the new release
here without the fixed issue and make it the default: nothing else in the console changes.
"""

from __future__ import annotations

from dataclasses import dataclass

# The parts of Diffgram's code a defect lives in; each provider kind names the parts its
# sign-in goes through (console/kinds/), so a defect concerns exactly the kinds that use them.
KEYCLOAK_SIGNIN = "keycloak_signin"  # its Keycloak login and callback
KEYCLOAK_STARTUP = "keycloak_startup"  # what it sets up in Keycloak at every start
SIGNOUT = "signout"  # its sign-out, whatever the provider
OAUTH2_TOKENS = "oauth2_tokens"  # its token refresh and revoke on the OAuth2 (Cognito) path


@dataclass(frozen=True)
class KnownIssue:
    id: str
    area: str  # the part of Diffgram's code it lives in
    issue: str  # what Diffgram's code does
    consequence: str  # what the admin or the users notice
    workaround: str
    only_with_client_secret: bool = False  # Cognito app clients with a secret only
    # Nobody can sign in to Diffgram with this setup: an instance using it is shown "blocked by
    # a Diffgram defect" whatever its probe or synthetic sign-in found.
    blocks_signin: bool = False


FEDERATE_KEYCLOAK = (
    "Federate this Keycloak realm into a Cognito user pool (Cognito provider → Inspect in AWS "
    "→ Federation, type OIDC) and point Diffgram at Cognito, the path that works with this "
    "Diffgram release"
)

# Diffgram commit 56f04d8 (October 2024), the latest on its main branch.
RELEASE_56F04D8 = (
    KnownIssue(
        "keycloak.scope_email",
        KEYCLOAK_SIGNIN,
        "Diffgram's Keycloak login asks for scope=email only (python-keycloak's default, "
        "without openid)",
        "No ID token is issued and Keycloak 20 or later refuses the userinfo call "
        "(insufficient_scope), so the sign-in callback fails",
        FEDERATE_KEYCLOAK,
        blocks_signin=True,
    ),
    KnownIssue(
        "keycloak.redirect_route",
        KEYCLOAK_SIGNIN,
        "Diffgram sends Keycloak the redirect URI URL_BASE + user/oidc-login, a path its "
        "frontend has no route for (only user/oauth2-login/ exists)",
        "After signing in at Keycloak the browser lands on Diffgram's 404 page",
        FEDERATE_KEYCLOAK,
        blocks_signin=True,
    ),
    KnownIssue(
        "keycloak.client_lookup",
        KEYCLOAK_STARTUP,
        "Diffgram looks its client up by Keycloak's internal id, which equals the client id "
        "only for clients Diffgram created itself",
        "A client created in Keycloak's admin console (internal id: a UUID) makes Diffgram's "
        "start-up fail with 404",
        "Do not create the client in Keycloak: let Diffgram create it at start-up with the "
        "client id given here (delete one made by hand)",
    ),
    KnownIssue(
        "keycloak.python_keycloak_unpinned",
        KEYCLOAK_STARTUP,
        "Diffgram does not pin python-keycloak, and releases from 2.0 on raise "
        "KeyError: 'clientId' when Diffgram creates its client",
        "Start-up fails and SSO stays off on images built with a current python-keycloak",
        "Build Diffgram's images with python-keycloak==1.9.1, the last release that works",
    ),
    KnownIssue(
        "signout.diffgram_only",
        SIGNOUT,
        "Diffgram's sign-out (GET /api/v1/user/logout) clears only its own session and answers "
        '{"url_redirect": null}: the call to the identity provider\'s logout is commented out '
        "(default/methods/user/logout.py)",
        "No token is revoked and the identity provider's session stays: the next Login with SSO "
        "on that browser signs the user in again without a password",
        "Keep the identity provider's session and token lifetimes short (Cognito: the app "
        "client's token validity), and have people on shared machines also sign out at the "
        "identity provider (Cognito: the hosted UI's /logout)",
    ),
    KnownIssue(
        "cognito.secret_refresh_revoke",
        OAUTH2_TOKENS,
        "With a client secret, Diffgram's token refresh (and its revoke, were sign-out to call "
        "it) sends only client_id",
        "Cognito answers 401 invalid_client: sessions end when the ID token expires",
        "Use a public app client (no secret), as Diffgram's own Cognito guide does",
        only_with_client_secret=True,
    ),
)

RELEASES = {"56f04d8": RELEASE_56F04D8}
LATEST = "56f04d8"


def known_issues(version, areas, *, client_secret) -> list[KnownIssue] | None:
    """The known issues of Diffgram `version` in the `areas` of its code a provider's sign-in
    goes through, or None when the console has no data for that version."""
    issues = RELEASES.get(version)
    if issues is None:
        return None
    return [
        issue
        for issue in issues
        if issue.area in areas and (client_secret or not issue.only_with_client_secret)
    ]


def blocking_issues(version, areas, *, client_secret) -> list[KnownIssue]:
    """The known issues that keep everyone from signing in to Diffgram `version` with this
    setup ([] when none, or when the console has no data for that version)."""
    issues = known_issues(version, areas, client_secret=client_secret) or []
    return [issue for issue in issues if issue.blocks_signin]
