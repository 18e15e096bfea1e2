"""The test account a provider's synthetic sign-ins use (console/signin_accounts.py)."""

from __future__ import annotations

from typing import Any

from django.db import models

from console.models.provider import Provider
from console.models.secrets import WriteOnlySecrets


class SigninAccount(WriteOnlySecrets, models.Model):
    """An account at the identity provider that the console (or an agent) signs in to Diffgram
    with, the way a person does. Its password is generated or typed once, kept encrypted, and
    only ever sent to the identity provider's login form (and, for instances whose agent signs
    in, to that agent, which keeps it in memory)."""

    SECRET_NAMES = ("password",)

    provider = models.OneToOneField(
        Provider, on_delete=models.CASCADE, related_name="signin_account"
    )
    username = models.CharField(max_length=128)
    email = models.EmailField(max_length=254)
    password_encrypted = models.TextField(editable=False)
    # Made (and rotated, and removed) at the identity provider by the console; otherwise an
    # admin entered an existing account and types its new password when it changes.
    managed = models.BooleanField(default=False)
    # Bumped when the password changes, so that agents holding the old one fetch the new one.
    revision = models.PositiveIntegerField(default=1, editable=False)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, editable=False)

    def __str__(self):
        return f"{self.username} at {self.provider}"

    def audit_fields(self) -> dict[str, Any]:
        return {"username": self.username, "email": self.email, "managed": self.managed}

    def credentials(self) -> dict[str, str]:
        """What a synthetic sign-in types in: only for the console's own run and its agents."""
        return {"username": self.username, "password": self.secret("password"), "email": self.email}
