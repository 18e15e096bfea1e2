"""Audit events: append-only and hash-chained; console/audit.py is the only writer."""

from __future__ import annotations

import hashlib
import json
from typing import Any, NoReturn

from django.db import models

GENESIS_HASH = "0" * 64


class AuditEvent(models.Model):
    """One recorded event. Written only by console.audit.record(); never updated or deleted.

    Events form a hash chain: `hash` is the SHA-256 of the canonical JSON of the event's own
    fields plus `prev_hash`, the hash of the event before it. `id` is assigned by the writer
    (previous id + 1, under a lock), so a gap means a removed event.
    """

    class Action(models.TextChoices):
        # admin changes
        PROVIDER_CREATED = "provider.created"
        PROVIDER_CHANGED = "provider.changed"
        PROVIDER_DISABLED = "provider.disabled"
        PROVIDER_ENABLED = "provider.enabled"
        PROVIDER_DELETED = "provider.deleted"
        PROVIDER_SECRET_SET = "provider.secret_set"
        PROVIDER_SECRET_CLEARED = "provider.secret_cleared"
        PROVIDER_VALIDATED = "provider.validated"
        PROVIDER_TEST_LOGIN = "provider.test_login"
        COGNITO_CLIENT_FIXED = "cognito.client_fixed"
        COGNITO_IDP_ADDED = "cognito.identity_provider_added"
        COGNITO_IDP_CHANGED = "cognito.identity_provider_changed"
        COGNITO_IDP_REMOVED = "cognito.identity_provider_removed"
        COGNITO_IDP_ENABLED = "cognito.identity_provider_enabled"
        COGNITO_IDP_DISABLED = "cognito.identity_provider_disabled"
        COGNITO_CLIENT_CREATED = "cognito.client_created"
        COGNITO_DOMAIN_CREATED = "cognito.domain_created"
        PROVIDER_CONSOLE_LOGIN_MARKED = "provider.console_login_marked"
        SIGNIN_ACCOUNT_SET = "provider.signin_account_set"
        SIGNIN_ACCOUNT_ROTATED = "provider.signin_account_rotated"
        SIGNIN_ACCOUNT_REMOVED = "provider.signin_account_removed"
        VERSION_PUBLISHED = "version.published"
        VERSION_ROLLED_BACK = "version.rolled_back"
        ROLLOUT_CONTINUED = "rollout.continued"
        ROLLOUT_HALTED = "rollout.halted"
        INSTANCE_CREATED = "instance.created"
        INSTANCE_CHANGED = "instance.changed"
        INSTANCE_DELETED = "instance.deleted"
        INSTANCE_TOKEN_ROTATED = "instance.token_rotated"
        INSTANCE_SIGNING_SECRET_ROTATED = "instance.signing_secret_rotated"
        # machine events
        PUSH_SUCCEEDED = "push.succeeded"
        PUSH_FAILED = "push.failed"
        INSTANCE_PULLED = "instance.pulled"
        INSTANCE_APPLIED = "instance.applied"
        INSTANCE_APPLY_FAILED = "instance.apply_failed"
        INSTANCE_VERIFIED = "instance.verified"
        INSTANCE_VERIFY_FAILED = "instance.verify_failed"
        INSTANCE_SIGNIN_FAILED = "instance.signin_failed"
        INSTANCE_SIGNIN_RECOVERED = "instance.signin_recovered"
        ENCRYPTION_KEYS_ROTATED = "keys.rotated"
        CONFIG_IMPORTED = "config.imported"
        # accounts and access
        USER_CREATED = "user.created"
        USER_ROLE_CHANGED = "user.role_changed"
        ROLE_GROUPS_CHANGED = "roles.groups_changed"
        USER_PASSWORD_RESET = "user.password_reset"
        USER_PASSWORD_CHANGED = "user.password_changed"
        USER_DISABLED = "user.disabled"
        USER_ENABLED = "user.enabled"
        LOGIN_SUCCEEDED = "login.succeeded"
        LOGIN_FAILED = "login.failed"
        LOGIN_BREAK_GLASS = "login.break_glass"
        LOGOUT = "logout"
        HISTORY_EXPORTED = "history.exported"
        API_TOKEN_CREATED = "api_token.created"
        API_TOKEN_REVOKED = "api_token.revoked"
        PROVIDER_VALIDATION_CHANGED = "provider.validation_changed"
        ALERT_DESTINATION_CREATED = "alert_destination.created"
        ALERT_DESTINATION_CHANGED = "alert_destination.changed"
        ALERT_DESTINATION_DELETED = "alert_destination.deleted"

    class ActorType(models.TextChoices):
        USER = "user"
        INSTANCE = "instance"
        SYSTEM = "system"
        ANONYMOUS = "anonymous"  # e.g. a failed login: the label is the name that was tried

    class TargetType(models.TextChoices):
        PROVIDER = "provider"
        INSTANCE = "instance"
        VERSION = "version"
        USER = "user"
        HISTORY = "history"
        CONFIG = "config"
        KEYS = "keys"
        ALERT = "alert"

    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    # The fixed vocabulary is Action, enforced by console.audit.record(); kept out of the
    # column definition so that a new action needs no migration.
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=16, choices=TargetType.choices, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
    # The request (or the task it queued) that made the change: the X-Request-ID of its log
    # lines (console/log_context.py). "" for commands and for events from before it existed.
    request_id = models.CharField(max_length=64, blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["action", "id"], name="audit_action_id"),
            models.Index(fields=["actor_label", "id"], name="audit_actor_id"),
            models.Index(fields=["target_type", "target_id", "id"], name="audit_target_id"),
            models.Index(fields=["created_at"], name="audit_created_at"),
        ]

    def __str__(self):
        return f"#{self.id} {self.action} {self.target_label}".strip()

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Audit events are append-only and cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs) -> NoReturn:
        raise ValueError("Audit events are append-only and cannot be deleted.")

    def hashed_fields(self) -> dict[str, Any]:
        """The fields covered by the hash, in the form used for exports too."""
        return event_fields(
            id=self.id,
            created_at=self.created_at.isoformat(timespec="microseconds"),
            actor_type=self.actor_type,
            actor_id=self.actor_id,
            actor_label=self.actor_label,
            source_ip=self.source_ip,
            action=self.action,
            target_type=self.target_type,
            target_id=self.target_id,
            target_label=self.target_label,
            changes=self.changes,
            context=self.context,
            prev_hash=self.prev_hash,
            request_id=self.request_id,
        )

    def compute_hash(self) -> str:
        return compute_event_hash(self.hashed_fields())


HASHED_FIELDS = (
    "id", "created_at", "actor_type", "actor_id", "actor_label", "source_ip", "action",
    "target_type", "target_id", "target_label", "changes", "context", "prev_hash", "request_id",
)  # fmt: skip
# Added to events later: hashed only when set, so events from before hash as they did.
HASHED_WHEN_SET = frozenset({"request_id"})


def event_fields(**values) -> dict[str, Any]:
    return {name: values[name] for name in HASHED_FIELDS}


# Canonical JSON: sorted keys, no whitespace, ASCII. One encoder for every event: json.dumps
# with these options builds a new one per call, paid once per event by a full verify_audit,
# which hashes every event in Python (ten million in docs/BENCHMARKS.md, P3).
CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def compute_event_hash(fields) -> str:
    """SHA-256 over the canonical JSON of the hashed fields."""
    canonical = CANONICAL_JSON.encode(
        {
            name: fields.get(name)
            for name in HASHED_FIELDS
            if name not in HASHED_WHEN_SET or fields.get(name)
        }
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class AuditChainHead(models.Model):
    """The single row writers lock to append to the chain one at a time.

    Holding it also tells verification where the chain must end, so removing the newest events
    is detected too.
    """

    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self):
        return f"audit chain head #{self.last_id}"
