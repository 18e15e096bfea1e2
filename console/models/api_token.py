"""Personal API tokens for admins and auditors (automation acts with its owner's role)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone

from console.models.tokens import HashedToken, hash_token


class ApiToken(HashedToken):
    TOKEN_PREFIX = "dgu_"

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. terraform-ci")
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, editable=False)
    revoked_at = models.DateTimeField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.user})"

    @property
    def active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    def sso_confirmation_overdue(self, hours) -> datetime | None:
        """For an SSO user, when the IdP last confirmed the account (a sign-in or a silent
        re-check) if that is more than `hours` ago, so the token must stop acting; None for a
        local user or a recent confirmation. A token must not outlive the account at the IdP."""
        identities = list(self.user.external_identities.all())
        if not identities:
            return None
        confirmed = max((i.last_login_at for i in identities if i.last_login_at), default=None)
        if confirmed is not None and confirmed > timezone.now() - timedelta(hours=hours):
            return None
        return confirmed or self.created_at

    @classmethod
    def find_active(cls, token) -> ApiToken | None:
        """The active token with this secret, or None (looked up by hash, an indexed column)."""
        if not token.startswith(cls.TOKEN_PREFIX):
            return None
        found = cls.objects.select_related("user").filter(token_hash=hash_token(token)).first()
        return found if found and found.active and found.user.is_active else None
