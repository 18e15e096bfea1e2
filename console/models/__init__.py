"""The console's data. Audit events and configuration versions are append-only."""

from __future__ import annotations

from console.models.accounts import OneTimePassword, RoleGroups
from console.models.alerts import Alert, AlertDestination, AlertEvent
from console.models.api_token import ApiToken
from console.models.audit import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditChainHead,
    AuditEvent,
    compute_event_hash,
    event_fields,
)
from console.models.federation import FederatedIdentityProvider
from console.models.provider import ExternalIdentity, Provider
from console.models.rollout import ConfigVersion, Instance, PushAttempt, PushRequest, Rollout
from console.models.signin import SigninAccount
from console.models.tokens import hash_token

__all__ = [
    "Alert",
    "AlertDestination",
    "AlertEvent",
    "ApiToken",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "AuditChainHead",
    "AuditEvent",
    "ConfigVersion",
    "ExternalIdentity",
    "FederatedIdentityProvider",
    "Instance",
    "OneTimePassword",
    "Provider",
    "PushAttempt",
    "PushRequest",
    "RoleGroups",
    "Rollout",
    "SigninAccount",
    "compute_event_hash",
    "encrypted_fields",
    "event_fields",
    "hash_token",
]


def encrypted_fields() -> list[tuple[type, list[str]]]:
    """(model, [field names]) for every column holding an encrypted secret."""
    return [
        (Provider, [f"{name}_encrypted" for name in Provider.SECRET_NAMES]),
        (
            FederatedIdentityProvider,
            [f"{name}_encrypted" for name in FederatedIdentityProvider.SECRET_NAMES],
        ),
        (Instance, ["signing_secret_encrypted"]),
        (AlertDestination, ["webhook_secret_encrypted"]),
        (ConfigVersion, ["secret_settings_encrypted"]),
        (SigninAccount, ["password_encrypted"]),
    ]
