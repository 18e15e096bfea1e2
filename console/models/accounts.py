"""Local accounts handed out by an admin: the one-time password they sign in with first."""

from __future__ import annotations

from django.db import models


class OneTimePassword(models.Model):
    """The user's current password was set by an admin (or the bootstrap) and shown once: it
    signs in only until `expires_at`, and the user must choose their own right after."""

    user = models.OneToOneField(
        "auth.User", on_delete=models.CASCADE, related_name="one_time_password"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # Its first successful sign-in: that session may only choose a password, and the one-time
    # password signs nobody in again.
    used_at = models.DateTimeField(null=True)

    def __str__(self):
        return f"one-time password of {self.user}"
