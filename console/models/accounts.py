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


class RoleGroups(models.Model):
    """Which identity-provider groups give the console's roles, as an admin set them on the
    Users page. At most one row: until it exists, CONSOLE_ADMIN_GROUPS and
    CONSOLE_AUDITOR_GROUPS (the bootstrap defaults) decide; once it does, they are not read."""

    admin_groups = models.JSONField(default=list, blank=True)
    auditor_groups = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150)

    def __str__(self):
        return "role groups"
