"""What Diffgram's own code gets wrong that no setting can fix, per Diffgram release.

Pure data, read by the `diffgram.known_issues` check and `check_issuer`. The console targets one
Diffgram release (settings.DIFFGRAM_VERSION); the facts come from running that release's code
against a real OpenID Provider (docs/DIFFGRAM.md). When Diffgram ships a fix, add the new release
here without the fixed issue and make it the default: nothing else in the console changes.
"""

from __future__ import annotations

from dataclasses import dataclass

COGNITO = "cognito"
KEYCLOAK = "keycloak"


@dataclass(frozen=True)
class KnownIssue:
    id: str
    kinds: tuple  # the provider kinds it concerns
    issue: str  # what Diffgram's code does
    consequence: str  # what the admin or the users notice
    workaround: str
    only_with_client_secret: bool = False  # Cognito app clients with a secret only


FEDERATE_KEYCLOAK = (
    "Federate this Keycloak realm into a Cognito user pool (Cognito provider → Inspect in AWS "
    "→ Federation, type OIDC) and point Diffgram at Cognito, the path that works with this "
    "Diffgram release"
)

# Diffgram commit 56f04d8 (October 2024), the latest on its main branch.
RELEASE_56F04D8 = (
    KnownIssue(
        "keycloak.scope_email",
        (KEYCLOAK,),
        "Diffgram's Keycloak login asks for scope=email only (python-keycloak's default, "
        "without openid)",
        "No ID token is issued and Keycloak 20 or later refuses the userinfo call "
        "(insufficient_scope), so the sign-in callback fails",
        FEDERATE_KEYCLOAK,
    ),
    KnownIssue(
        "keycloak.redirect_route",
        (KEYCLOAK,),
        "Diffgram sends Keycloak the redirect URI URL_BASE + user/oidc-login, a path its "
        "frontend has no route for (only user/oauth2-login/ exists)",
        "After signing in at Keycloak the browser lands on Diffgram's 404 page",
        FEDERATE_KEYCLOAK,
    ),
    KnownIssue(
        "keycloak.client_lookup",
        (KEYCLOAK,),
        "Diffgram looks its client up by Keycloak's internal id, which equals the client id "
        "only for clients Diffgram created itself",
        "A client created in Keycloak's admin console (internal id: a UUID) makes Diffgram's "
        "start-up fail with 404",
        "Do not create the client in Keycloak: let Diffgram create it at start-up with the "
        "client id given here (delete one made by hand)",
    ),
    KnownIssue(
        "keycloak.python_keycloak_unpinned",
        (KEYCLOAK,),
        "Diffgram does not pin python-keycloak, and releases from 2.0 on raise "
        "KeyError: 'clientId' when Diffgram creates its client",
        "Start-up fails and SSO stays off on images built with a current python-keycloak",
        "Build Diffgram's images with python-keycloak==1.9.1, the last release that works",
    ),
    KnownIssue(
        "keycloak.signout",
        (KEYCLOAK,),
        "Diffgram's Keycloak sign-out does not end the Keycloak session (the call is "
        "commented out)",
        "After signing out of Diffgram, the next sign-in goes through without a password",
        FEDERATE_KEYCLOAK,
    ),
    KnownIssue(
        "cognito.secret_refresh_revoke",
        (COGNITO,),
        "With a client secret, Diffgram's token refresh and revoke send only client_id",
        "Cognito answers 401 invalid_client: sessions end when the ID token expires and "
        "sign-out revokes nothing",
        "Use a public app client (no secret), as Diffgram's own Cognito guide does",
        only_with_client_secret=True,
    ),
)

RELEASES = {"56f04d8": RELEASE_56F04D8}
LATEST = "56f04d8"


def known_issues(version, kind, *, client_secret) -> list[KnownIssue] | None:
    """The known issues of Diffgram `version` that apply to this provider, or None when the
    console has no data for that version."""
    issues = RELEASES.get(version)
    if issues is None:
        return None
    return [
        issue
        for issue in issues
        if kind in issue.kinds and (client_secret or not issue.only_with_client_secret)
    ]
