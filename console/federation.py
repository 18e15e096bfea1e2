"""Federating identity providers into a Cognito user pool: Diffgram keeps talking OIDC to
Cognito, and Cognito signs users in with SAML, social or other OIDC providers (docs/COGNITO.md).

Each change is made at AWS first (CreateIdentityProvider or UpdateIdentityProvider with the
complete details, then the app client's SupportedIdentityProviders), then recorded with its
audit event. AWS errors arrive as cognito.AWSError, whose message says what to do.
"""

from __future__ import annotations

from typing import Any

from console import audit, cognito, providers
from console.models import FederatedIdentityProvider

Type = FederatedIdentityProvider.Type
Action = audit.Action

# Which claim of each provider fills the pool's attributes.
ATTRIBUTE_MAPPINGS = {
    Type.OIDC: {"email": "email", "username": "sub"},
    Type.GOOGLE: {"email": "email", "username": "sub"},
    Type.FACEBOOK: {"email": "email", "username": "id"},
    Type.AMAZON: {"email": "email", "username": "user_id"},
    Type.APPLE: {"email": "email", "username": "sub"},
}


class FederationRefused(Exception):
    """Nothing was changed; the message says why."""


def redirect_uri(domain_url, idp_type=Type.OIDC) -> str:
    """What the upstream provider must allow as redirect URI (SAML: its assertion consumer
    service URL) on the pool's hosted-UI domain."""
    if not domain_url:
        return ""
    path = "/saml2/idpresponse" if idp_type == Type.SAML else "/oauth2/idpresponse"
    return domain_url.rstrip("/") + path


def redirect_uri_at_aws(provider, idp_type=Type.OIDC) -> str:
    """redirect_uri() for the pool's domain as AWS knows it now."""
    client = cognito.client_for(provider)
    domain = cognito.pool_domain(provider, client)
    return redirect_uri(cognito.hosted_ui_url(domain, provider.aws_region), idp_type)


def provider_details(record) -> dict[str, str]:
    """Cognito's ProviderDetails for the record, secrets decrypted (sent to AWS only)."""
    scopes = record.authorize_scopes
    if record.type == Type.OIDC:
        upstream = record.upstream
        own = record.client_id
        if own and record.secret_issuer != upstream.issuer:
            given_for = record.secret_issuer or "another issuer"
            raise FederationRefused(
                f"The client secret of {record.name} was given for {given_for}, not for "
                f"{upstream.issuer}: enter it again."
            )
        return {
            "client_id": own or upstream.client_id,
            "client_secret": record.secret("client_secret")
            if own
            else upstream.secret("client_secret"),
            "authorize_scopes": scopes,
            "oidc_issuer": upstream.issuer,
            "attributes_request_method": record.attributes_request_method,
        }
    if record.type == Type.SAML:
        if record.metadata_file:
            return {"MetadataFile": record.metadata_file}
        return {"MetadataURL": record.metadata_url}
    details = {"client_id": record.client_id, "authorize_scopes": scopes}
    if record.type == Type.APPLE:
        details |= {
            "team_id": record.team_id,
            "key_id": record.key_id,
            "private_key": record.secret("private_key"),
        }
    else:
        details["client_secret"] = record.secret("client_secret")
    if record.type == Type.FACEBOOK and record.api_version:
        details["api_version"] = record.api_version
    return details


def attribute_mapping(record) -> dict[str, str]:
    if record.type == Type.SAML:
        return {"email": record.email_attribute}
    return dict(ATTRIBUTE_MAPPINGS[record.type])


def federate(form, *, request=None, actor=None) -> FederatedIdentityProvider:
    """Create or update the identity provider of a valid FederationForm at AWS, enable or
    disable it on the Diffgram app client, and record it. An OIDC upstream must pass the
    console's discovery checks first. Returns the record."""
    record = form.save(commit=False)
    provider = record.cognito
    if record.type == Type.OIDC:
        upstream, report = providers.run_validation(record.upstream, request=request, actor=actor)
        if not report.ok:
            failing = [check.id for check in report.checks if check.status == "fail"]
            raise FederationRefused(
                f"{upstream} failed validation ({', '.join(failing)}): Cognito would not be "
                "able to sign users in with it. Fix it and try again."
            )
    client = cognito.client_for(provider)
    pool = provider.user_pool_id
    arguments = {
        "UserPoolId": pool,
        "ProviderName": record.name,
        "ProviderDetails": provider_details(record),
        "AttributeMapping": attribute_mapping(record),
    }
    existing = {idp["name"] for idp in cognito.identity_providers(provider, client)}
    if record.name in existing:
        cognito.call(
            client, "update_identity_provider", "cognito-idp:UpdateIdentityProvider",
            f"identity provider {record.name} of {pool}", **arguments,
        )  # fmt: skip
        action = Action.COGNITO_IDP_CHANGED
    else:
        cognito.call(
            client, "create_identity_provider", "cognito-idp:CreateIdentityProvider",
            f"user pool {pool}", ProviderType=record.type, **arguments,
        )  # fmt: skip
        action = Action.COGNITO_IDP_ADDED
    enabled_before, enabled_after = cognito.set_identity_provider_enabled(
        provider, client, record.name, form.cleaned_data.get("enabled", False)
    )
    changes = audit.field_changes(
        form.before, record.audit_fields(), secret_fields=FederatedIdentityProvider.SECRET_NAMES
    )
    if enabled_before != enabled_after:
        changes["SupportedIdentityProviders"] = [enabled_before, enabled_after]
    with audit.change():
        record.save()
        audit.record(
            action,
            request=request,
            actor=actor,
            target=provider,
            changes=changes,
            context={
                "identity_provider": record.name,
                "type": record.type,
                "user_pool": pool,
                "enabled": record.name in enabled_after,
            },
        )
    return record


def set_enabled(provider, name, enabled, *, request=None, actor=None) -> list[str]:
    """Enable or disable an identity provider of the pool on the Diffgram app client."""
    client = cognito.client_for(provider)
    before, after = cognito.set_identity_provider_enabled(provider, client, name, enabled)
    if before != after:
        audit.record(
            Action.COGNITO_IDP_ENABLED if enabled else Action.COGNITO_IDP_DISABLED,
            request=request,
            actor=actor,
            target=provider,
            changes={"SupportedIdentityProviders": [before, after]},
            context={"identity_provider": name, "user_pool": provider.user_pool_id},
        )
    return after


def remove(provider, name, *, request=None, actor=None) -> None:
    """Take the identity provider off the app client, delete it from the pool, forget it."""
    if name == "COGNITO":
        raise FederationRefused("COGNITO is the pool's own user directory, not a federation.")
    client = cognito.client_for(provider)
    if name not in {idp["name"] for idp in cognito.identity_providers(provider, client)}:
        raise FederationRefused(
            f"The pool {provider.user_pool_id} has no identity provider {name}."
        )
    before, after = cognito.set_identity_provider_enabled(provider, client, name, False)
    cognito.call(
        client, "delete_identity_provider", "cognito-idp:DeleteIdentityProvider",
        f"identity provider {name} of {provider.user_pool_id}",
        UserPoolId=provider.user_pool_id, ProviderName=name,
    )  # fmt: skip
    with audit.change():
        record = provider.federations.filter(name=name).first()
        audit.record(
            Action.COGNITO_IDP_REMOVED,
            request=request,
            actor=actor,
            target=provider,
            changes={
                **_removal_changes(record),
                **({"SupportedIdentityProviders": [before, after]} if before != after else {}),
            },
            context={"identity_provider": name, "user_pool": provider.user_pool_id},
        )
        if record is not None:
            record.delete()


def _removal_changes(record):
    """{field: [value, None]} for a removed record, secrets only as set."""
    if record is None:
        return {}
    secrets = FederatedIdentityProvider.SECRET_NAMES
    return {
        name: [audit.SECRET_SET if name in secrets else value, None]
        for name, value in record.audit_fields().items()
        if value
    }


def overview(provider, inspection) -> list[dict[str, Any]]:
    """The pool's identity providers with what the console knows of each, for the page and
    the API: [{"name", "type", "enabled", "record"}]."""
    records = {r.name: r for r in provider.federations.select_related("upstream")}
    enabled = set(inspection.client.get("SupportedIdentityProviders", []))
    return [
        {
            "name": idp["name"],
            "type": idp["type"],
            "enabled": idp["name"] in enabled,
            "record": records.get(idp["name"]),
        }
        for idp in inspection.identity_providers
    ]
