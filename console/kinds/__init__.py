"""The registry of identity-provider kinds: one module each (cognito.py, keycloak.py, oidc.py),
holding everything that differs by kind. Shared code asks here (`of(provider)`, `get(slug)`,
the capability lists) and never compares kinds itself; adding a kind is one module, one test
file and one line in KINDS (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from console.kinds.base import ProviderForm, ProviderKind, TestAccounts
from console.kinds.cognito import COGNITO, CognitoProviderForm, ProvisionCognitoForm
from console.kinds.keycloak import KEYCLOAK, KeycloakProviderForm
from console.kinds.oidc import OIDC, OIDCProviderForm
from console.models import Provider

__all__ = [
    "COGNITO", "KEYCLOAK", "KINDS", "OIDC", "CognitoProviderForm", "KeycloakProviderForm",
    "OIDCProviderForm", "ProviderForm", "ProviderKind", "ProvisionCognitoForm", "TestAccounts",
    "diffgram_slugs", "get", "of", "of_settings", "slugs_where",
]  # fmt: skip

# In the order the "Add a provider" page offers them.
KINDS: dict[str, ProviderKind] = {kind.slug: kind for kind in (COGNITO, KEYCLOAK, OIDC)}


def get(slug: object) -> ProviderKind | None:
    """The kind named `slug` (any input: None for an unknown one)."""
    return KINDS.get(slug) if isinstance(slug, str) else None


def of(provider: Provider) -> ProviderKind:
    return KINDS[provider.kind]


def of_settings(settings: dict[str, str]) -> ProviderKind | None:
    """The kind whose Diffgram settings these are (by OAUTH2_PROVIDER_NAME): what a published
    version is, without reading its provider."""
    name = settings.get("OAUTH2_PROVIDER_NAME")
    return next((kind for kind in KINDS.values() if name and kind.diffgram_name == name), None)


def slugs_where(wanted: str) -> list[str]:
    """The kinds with the capability `wanted` (a ProviderKind attribute that is true)."""
    return [kind.slug for kind in KINDS.values() if getattr(kind, wanted)]


def diffgram_slugs() -> list[str]:
    """The kinds Diffgram itself signs users in with: those an instance can use."""
    return slugs_where("signs_in_to_diffgram")
