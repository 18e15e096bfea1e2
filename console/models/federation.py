"""Identity providers federated into a Cognito user pool by the console."""

from __future__ import annotations

from typing import Any

from django.db import models

from console.models.provider import Provider
from console.models.secrets import WriteOnlySecrets


class FederatedIdentityProvider(WriteOnlySecrets, models.Model):
    """What the console sent to Cognito for one identity provider of a pool (CreateIdentity-
    Provider / UpdateIdentityProvider), kept so that an update can send the complete details
    again without asking for the secrets. Cognito itself is the truth about what exists and
    what the app client enables; this is the console's side of it."""

    audit_target_type = "provider"  # events are about the Cognito provider, naming this one
    SECRET_NAMES = ("client_secret", "private_key")

    class Type(models.TextChoices):
        # Cognito's ProviderType values.
        OIDC = "OIDC", "OpenID Connect (Okta, Entra ID, Keycloak, Auth0…)"
        GOOGLE = "Google", "Google"
        FACEBOOK = "Facebook", "Facebook"
        AMAZON = "LoginWithAmazon", "Login with Amazon"
        APPLE = "SignInWithApple", "Sign in with Apple"
        SAML = "SAML", "SAML 2.0"

    cognito = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="federations")
    name = models.CharField(max_length=32)
    type = models.CharField(max_length=16, choices=Type.choices)
    # OIDC: a stored (and validated) generic OIDC or Keycloak provider is the upstream.
    upstream = models.ForeignKey(
        Provider, on_delete=models.PROTECT, null=True, blank=True, related_name="federated_into"
    )
    client_id = models.CharField(max_length=255, blank=True)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    # OIDC: the upstream's issuer when its own client secret was given. A secret is never sent
    # to another issuer: after the upstream or its issuer changes it must be typed again.
    secret_issuer = models.CharField(max_length=500, blank=True, editable=False)
    authorize_scopes = models.CharField(max_length=255, blank=True)
    attributes_request_method = models.CharField(
        max_length=4, choices=[("GET", "GET"), ("POST", "POST")], default="GET"
    )
    api_version = models.CharField("Facebook API version", max_length=16, blank=True)
    team_id = models.CharField("Apple team id", max_length=16, blank=True)
    key_id = models.CharField("Apple key id", max_length=16, blank=True)
    private_key_encrypted = models.TextField(blank=True, editable=False)
    metadata_url = models.CharField("SAML metadata URL", max_length=500, blank=True)
    metadata_file = models.TextField(blank=True, editable=False)
    email_attribute = models.CharField("SAML email attribute", max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cognito", "name"]
        constraints = [
            models.UniqueConstraint(fields=["cognito", "name"], name="federation_name_unique")
        ]

    def __str__(self):
        return f"{self.name} ({self.get_type_display()}) in {self.cognito.name}"

    def audit_fields(self) -> dict[str, Any]:
        """Plain fields as they are, secrets only as set / not set (audit.field_changes)."""
        return {
            "name": self.name,
            "type": self.type,
            "upstream": self.upstream.name if self.upstream else None,
            "client_id": self.client_id,
            "authorize_scopes": self.authorize_scopes,
            "attributes_request_method": self.attributes_request_method,
            "api_version": self.api_version,
            "team_id": self.team_id,
            "key_id": self.key_id,
            "metadata_url": self.metadata_url,
            "metadata_file": "[file]" if self.metadata_file else "",
            "email_attribute": self.email_attribute,
            "client_secret": self.client_secret_encrypted,
            "private_key": self.private_key_encrypted,
        }
