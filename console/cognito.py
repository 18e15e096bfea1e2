"""AWS Cognito through boto3: audit an app client against what Diffgram needs, fix it in one
click, read the hosted-UI domain, and manage the federated identity providers of the pool.

The clients come from console/aws.py (credentials, the provider's IAM role, AWS_ENDPOINT_URL);
AWS errors become AWSError messages naming the IAM permission that is missing. Creating an app
client and the provider using it is console/cognito_provisioning.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import ngettext

from console import audit, aws, diffgram, discovery
from console.aws import AWSError, call
from console.models import Provider

PASS, WARN, FAIL = discovery.PASS, discovery.WARN, discovery.FAIL
Check = discovery.CheckResult  # one kind of check result, for discovery and for AWS
REQUIRED_SCOPES = ("openid", "email")
NEW_CLIENT_SCOPES = ("openid", "email", "profile")
REQUIRED_AUTH_FLOWS = ("ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH")
__all__ = ["AWSError", "call"]  # re-exported: callers catch cognito.AWSError


@dataclass
class Inspection:
    client: dict = field(default_factory=dict)  # as described, without the client secret
    client_has_secret: bool = False
    domain: str = ""
    domain_status: str = ""
    identity_providers: list = field(default_factory=list)
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status == PASS for check in self.checks)


def client_for(provider) -> Any:
    """A Cognito client for the provider's pool, as its IAM role (when it names one)."""
    return aws.client("cognito-idp", region=provider.aws_region, role_arn=provider.aws_role_arn)


def app_client(provider, client) -> tuple[dict[str, Any], bool]:
    """The app client as described, without its secret (never kept, never shown), and
    whether it has one."""
    pool, app = provider.user_pool_id, provider.client_id
    described = call(
        client, "describe_user_pool_client", "cognito-idp:DescribeUserPoolClient",
        f"app client {app} of {pool}", UserPoolId=pool, ClientId=app,
    )["UserPoolClient"]  # fmt: skip
    has_secret = described.pop("ClientSecret", None) is not None
    return described, has_secret


def identity_providers(provider, client) -> list[dict[str, str]]:
    """[{"name", "type"}] for every identity provider of the pool."""
    found = call(
        client, "list_identity_providers", "cognito-idp:ListIdentityProviders",
        f"user pool {provider.user_pool_id}", UserPoolId=provider.user_pool_id, MaxResults=60,
    )["Providers"]  # fmt: skip
    return [{"name": p["ProviderName"], "type": p.get("ProviderType", "")} for p in found]


def pool_domain(provider, client) -> str:
    """The pool's custom or Cognito-prefix domain as DescribeUserPool gives it ("" for none)."""
    user_pool = call(
        client, "describe_user_pool", "cognito-idp:DescribeUserPool",
        f"user pool {provider.user_pool_id}", UserPoolId=provider.user_pool_id,
    )["UserPool"]  # fmt: skip
    return user_pool.get("CustomDomain") or user_pool.get("Domain") or ""


def describe(provider, client=None) -> Inspection:
    """Read the app client, the pool's domain and its identity providers."""
    client = client or client_for(provider)
    described, has_secret = app_client(provider, client)
    domain = pool_domain(provider, client)
    status = ""
    if domain:
        status = call(
            client, "describe_user_pool_domain", "cognito-idp:DescribeUserPoolDomain",
            f"domain {domain}", Domain=domain,
        )["DomainDescription"].get("Status", "")  # fmt: skip
    return Inspection(
        client=described,
        client_has_secret=has_secret,
        domain=domain,
        domain_status=status,
        identity_providers=identity_providers(provider, client),
    )


def url_bases(provider) -> list[str]:
    """The Diffgram URL_BASEs the app client must serve: its instances', or the provider's."""
    bases = sorted({i.url_base for i in provider.instances.all()})
    return bases or ([provider.diffgram_url_base] if provider.diffgram_url_base else [])


def inspect(provider) -> Inspection:
    """Describe the app client and check it against every Diffgram instance of the provider."""
    found = describe(provider)
    found.checks = [
        *_redirect_checks(found.client, url_bases(provider)),
        *_oauth_checks(found.client),
        *_client_checks(found, provider),
    ]
    return found


def _verdict(check_id, ok, passed, failed) -> Check:
    return Check(check_id, PASS if ok else FAIL, passed if ok else failed)


def _redirect_checks(app, bases) -> list[Check]:
    """Each Diffgram's callback and sign-out URLs allowed on the app client."""
    checks = []
    for base in bases:
        callback, signout = diffgram.oauth2_callback_url(base), diffgram.signout_url(base)
        checks += [
            _verdict(
                f"callback:{base}",
                callback in app.get("CallbackURLs", []),
                f"Callback URL {callback} is allowed.",
                f"Callback URL {callback} is not allowed.",
            ),
            _verdict(
                f"signout:{base}",
                signout in app.get("LogoutURLs", []),
                f"Sign-out URL {signout} is allowed.",
                f"Sign-out URL {signout} is not allowed.",
            ),
        ]
    return checks


def _oauth_checks(app) -> list[Check]:
    """The grants, scopes and authentication flows Diffgram's sign-in needs."""
    implicit = "implicit" in app.get("AllowedOAuthFlows", [])
    missing_scopes = [s for s in REQUIRED_SCOPES if s not in app.get("AllowedOAuthScopes", [])]
    return [
        _verdict(
            "oauth.code_flow",
            "code" in app.get("AllowedOAuthFlows", [])
            and app.get("AllowedOAuthFlowsUserPoolClient"),
            "The authorization-code grant is enabled.",
            "Enable OAuth flows for this client with the authorization-code grant.",
        ),
        Check(
            "oauth.implicit",
            WARN if implicit else PASS,
            "The implicit grant is enabled: Diffgram needs only the code grant, and the OAuth "
            "2.0 Security Best Current Practice says not to use implicit. Fix removes it."
            if implicit
            else "The implicit grant is off.",
        ),
        _verdict(
            "oauth.scopes",
            not missing_scopes,
            "The openid and email scopes are allowed.",
            ngettext("Allow the scope: %s.", "Allow the scopes: %s.", len(missing_scopes))
            % ", ".join(missing_scopes),
        ),
        _verdict(
            "auth_flows.password",
            "ALLOW_USER_PASSWORD_AUTH" in app.get("ExplicitAuthFlows", []),
            "ALLOW_USER_PASSWORD_AUTH is enabled.",
            "Add ALLOW_USER_PASSWORD_AUTH to the client's authentication flows.",
        ),
    ]


def _client_checks(found, provider) -> list[Check]:
    """The secret, the hosted-UI domain and the identity providers of the client."""
    has_secret, console_has = found.client_has_secret, provider.has_secret("client_secret")
    enabled = found.client.get("SupportedIdentityProviders", [])
    return [
        _verdict(
            "client.secret",
            has_secret == console_has,
            "The client secret matches: "
            + ("confidential client." if has_secret else "public client."),
            "The app client "
            + (
                "has a secret the console does not hold: enter it on the provider."
                if has_secret
                else "has no secret but the console holds one: clear it on the provider."
            ),
        ),
        _verdict(
            "domain.active",
            bool(found.domain) and found.domain_status == "ACTIVE",
            f"Hosted-UI domain {found.domain} is ACTIVE.",
            f"Hosted-UI domain: {found.domain or 'none'} ({found.domain_status or 'missing'}); "
            "create a Cognito or custom domain for the pool.",
        ),
        _verdict(
            "identity_providers",
            bool(enabled),
            f"Identity providers enabled: {', '.join(enabled)}.",
            "No identity provider is enabled on the client: enable at least COGNITO.",
        ),
    ]


def hosted_ui_url(domain, region) -> str:
    """The URL of a hosted-UI domain as describe_user_pool gives it (prefix or custom)."""
    if not domain:
        return ""
    if "." in domain:
        return f"https://{domain}"
    return f"https://{domain}.auth.{region}.amazoncognito.com"


# --- the one-click fix --------------------------------------------------------------------------


def writable_fields(client) -> set[str]:
    """The members UpdateUserPoolClient accepts, from botocore's own model of the API."""
    shape = client.meta.service_model.operation_model("UpdateUserPoolClient").input_shape
    return set(shape.members)


def _union(existing, wanted):
    return [*existing, *[item for item in wanted if item not in existing]]


def _writable(client, app):
    """The described app-client settings UpdateUserPoolClient accepts back."""
    writable = writable_fields(client)
    return {name: value for name, value in app.items() if name in writable}


def _update_client(provider, client, config):
    call(
        client, "update_user_pool_client", "cognito-idp:UpdateUserPoolClient",
        f"app client {provider.client_id}", **config,
    )  # fmt: skip


def fix_plan(
    provider, client=None, *, keep_implicit=False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(before, after) app-client settings that make every check about the client pass (the
    implicit grant removed unless `keep_implicit`).

    Real Cognito resets every field left out of UpdateUserPoolClient, so `after` is the
    complete described configuration with only the needed fields changed.
    """
    client = client or client_for(provider)
    app = describe(provider, client).client
    before = _writable(client, app)
    after = dict(before)
    bases = url_bases(provider)
    after["CallbackURLs"] = _union(
        app.get("CallbackURLs", []), [diffgram.oauth2_callback_url(b) for b in bases]
    )
    after["LogoutURLs"] = _union(
        app.get("LogoutURLs", []), [diffgram.signout_url(b) for b in bases]
    )
    after["AllowedOAuthFlows"] = [
        flow
        for flow in _union(app.get("AllowedOAuthFlows", []), ["code"])
        if keep_implicit or flow != "implicit"
    ]
    after["AllowedOAuthFlowsUserPoolClient"] = True
    after["AllowedOAuthScopes"] = _union(app.get("AllowedOAuthScopes", []), list(REQUIRED_SCOPES))
    after["ExplicitAuthFlows"] = _union(app.get("ExplicitAuthFlows", []), list(REQUIRED_AUTH_FLOWS))
    after["SupportedIdentityProviders"] = app.get("SupportedIdentityProviders") or ["COGNITO"]
    return before, after


def apply_fix(provider, *, keep_implicit=False, request=None, actor=None) -> dict[str, list[Any]]:
    """Send the complete configuration with the fixes; audited with the field diff."""
    client = client_for(provider)  # one client (and one assumed-role session) throughout
    before, after = fix_plan(provider, client, keep_implicit=keep_implicit)
    changes = audit.field_changes(before, after)
    if not changes:
        return changes
    _update_client(provider, client, after)
    audit.record(
        audit.Action.COGNITO_CLIENT_FIXED,
        request=request,
        actor=actor,
        target=provider,
        changes=changes,
        context={"user_pool": provider.user_pool_id, "client": provider.client_id},
    )
    return changes


def set_identity_provider_enabled(provider, client, name, enabled) -> tuple[list[str], list[str]]:
    """Add or remove `name` in the app client's SupportedIdentityProviders, sending the
    complete configuration. Returns the lists (before, after)."""
    app, _ = app_client(provider, client)
    before = app.get("SupportedIdentityProviders", [])
    after = _union(before, [name]) if enabled else [n for n in before if n != name]
    if after != before:
        config = _writable(client, app)
        config["SupportedIdentityProviders"] = after
        _update_client(provider, client, config)
    return before, after


def save_domain(provider, domain_url, *, request=None, actor=None) -> Provider:
    """Keep the hosted-UI domain read from AWS on the provider (audited as a change)."""
    with audit.change():
        stored = Provider.objects.select_for_update().get(pk=provider.pk)
        before = stored.cognito_domain
        stored.cognito_domain = domain_url
        stored.revision += 1
        stored.save(update_fields=["cognito_domain", "revision", "updated_at"])
        audit.record(
            audit.Action.PROVIDER_CHANGED,
            request=request,
            actor=actor,
            target=stored,
            changes={"cognito_domain": [before, domain_url]},
            context={"revision": stored.revision, "source": "read from AWS"},
        )
    return stored


# --- creating the app client (the guide's steps 1 to 3) -----------------------------------------


def new_app_client_config(client_name, url_bases) -> dict[str, Any]:
    """Everything Diffgram's guide asks of its app client (docs/COGNITO.md), public."""
    return {
        "ClientName": client_name,
        "GenerateSecret": False,
        "CallbackURLs": [diffgram.oauth2_callback_url(base) for base in url_bases],
        "LogoutURLs": [diffgram.signout_url(base) for base in url_bases],
        "AllowedOAuthFlows": ["code"],
        "AllowedOAuthFlowsUserPoolClient": True,
        "AllowedOAuthScopes": list(NEW_CLIENT_SCOPES),
        "ExplicitAuthFlows": list(REQUIRED_AUTH_FLOWS),
        "SupportedIdentityProviders": ["COGNITO"],
    }


# --- the test account of synthetic sign-ins (console/signin_accounts.py) -------------------------


def create_test_user(provider, username, email, password) -> None:
    """A confirmed user with a permanent password and a verified email, and no invitation
    message: what a synthetic sign-in needs (AdminCreateUser, then AdminSetUserPassword)."""
    client, pool = client_for(provider), provider.user_pool_id
    try:
        call(
            client, "admin_create_user", "cognito-idp:AdminCreateUser", f"user pool {pool}",
            UserPoolId=pool, Username=username, MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": email}, {"Name": "email_verified", "Value": "true"},
            ],
        )  # fmt: skip
    except AWSError as error:
        if error.code == "UsernameExistsException":
            raise AWSError(
                f"The user pool {pool} has a user {username} already: choose another username, "
                "or enter that account's password instead."
            ) from None
        raise
    set_test_user_password(provider, username, password, client=client)


def set_test_user_password(provider, username, password, *, client=None) -> None:
    call(
        client or client_for(provider), "admin_set_user_password",
        "cognito-idp:AdminSetUserPassword", f"user {username} of {provider.user_pool_id}",
        UserPoolId=provider.user_pool_id, Username=username, Password=password, Permanent=True,
    )  # fmt: skip


def delete_test_user(provider, username) -> None:
    """Remove the test user from the pool (already gone is fine)."""
    try:
        call(
            client_for(provider), "admin_delete_user", "cognito-idp:AdminDeleteUser",
            f"user {username} of {provider.user_pool_id}",
            UserPoolId=provider.user_pool_id, Username=username,
        )  # fmt: skip
    except AWSError as error:
        if error.code != "UserNotFoundException":
            raise
