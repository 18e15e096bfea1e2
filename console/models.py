"""Data of the console. Audit events are append-only; see console/audit.py for the writer."""

import hashlib
import json

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
        PROVIDER_CONSOLE_LOGIN_MARKED = "provider.console_login_marked"
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
        ENCRYPTION_KEYS_ROTATED = "keys.rotated"
        CONFIG_IMPORTED = "config.imported"
        # accounts and access
        USER_CREATED = "user.created"
        USER_ROLE_CHANGED = "user.role_changed"
        LOGIN_SUCCEEDED = "login.succeeded"
        LOGIN_FAILED = "login.failed"
        LOGIN_BREAK_GLASS = "login.break_glass"
        LOGOUT = "logout"
        HISTORY_EXPORTED = "history.exported"

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

    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, choices=Action.choices)
    target_type = models.CharField(max_length=16, choices=TargetType.choices, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    context = models.JSONField(default=dict, blank=True)
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

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ValueError("Audit events are append-only and cannot be changed.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only and cannot be deleted.")

    def hashed_fields(self):
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
        )

    def compute_hash(self):
        return compute_event_hash(self.hashed_fields())


HASHED_FIELDS = (
    "id", "created_at", "actor_type", "actor_id", "actor_label", "source_ip", "action",
    "target_type", "target_id", "target_label", "changes", "context", "prev_hash",
)  # fmt: skip


def event_fields(**values):
    return {name: values[name] for name in HASHED_FIELDS}


def compute_event_hash(fields):
    """SHA-256 over canonical JSON (sorted keys, no whitespace, ASCII) of the hashed fields."""
    canonical = json.dumps(
        {name: fields[name] for name in HASHED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
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


class Provider(models.Model):
    """An identity provider the console validates and rolls out to Diffgram instances."""

    audit_target_type = "provider"

    class Kind(models.TextChoices):
        COGNITO = "cognito", "AWS Cognito"
        KEYCLOAK = "keycloak", "Keycloak"
        OIDC = "oidc", "Generic OIDC"

    # Stored encrypted; the attribute names are the secret's name + "_encrypted".
    SECRET_NAMES = ("client_secret", "keycloak_master_password", "keycloak_diffgram_password")

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    issuer = models.CharField(max_length=500)
    client_id = models.CharField(max_length=255)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    scopes = models.CharField(max_length=500, default="openid email profile")
    diffgram_url_base = models.CharField(
        "Diffgram URL_BASE",
        max_length=500,
        blank=True,
        help_text="Your Diffgram's public base URL, e.g. https://diffgram.example.com/ — used for "
        "the checks and the URLs to register. Each instance can have its own.",
    )
    # AWS Cognito
    aws_region = models.CharField("AWS region", max_length=32, blank=True)
    user_pool_id = models.CharField(max_length=64, blank=True)
    cognito_domain = models.CharField("hosted-UI domain", max_length=255, blank=True)
    # Keycloak
    keycloak_server_url = models.CharField("server URL", max_length=500, blank=True)
    keycloak_realm = models.CharField("realm", max_length=100, blank=True)
    keycloak_master_user = models.CharField("master admin user", max_length=150, blank=True)
    keycloak_master_password_encrypted = models.TextField(blank=True, editable=False)
    keycloak_diffgram_user = models.CharField("Diffgram admin user", max_length=150, blank=True)
    keycloak_diffgram_password_encrypted = models.TextField(blank=True, editable=False)
    # The latest validation, and what was fetched at the last one that read both documents.
    validated_at = models.DateTimeField(null=True, blank=True, editable=False)
    validation_checks = models.JSONField(default=list, blank=True, editable=False)
    validation_passed = models.BooleanField(null=True, editable=False)
    discovery_snapshot = models.JSONField(null=True, blank=True, editable=False)
    jwks_snapshot = models.JSONField(null=True, blank=True, editable=False)
    snapshot_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Bumped on every change; an edit based on an older revision is refused as a conflict.
    revision = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    # --- secrets ------------------------------------------------------------------------------

    def secret(self, name):
        from console import encryption

        return encryption.decrypt(getattr(self, f"{name}_encrypted"))

    def set_secret(self, name, value):
        from console import encryption

        setattr(self, f"{name}_encrypted", encryption.encrypt(value))

    def has_secret(self, name):
        return bool(getattr(self, f"{name}_encrypted"))

    # --- derived --------------------------------------------------------------------------------

    def computed_issuer(self):
        from console import diffgram

        if self.kind == self.Kind.COGNITO:
            return f"https://cognito-idp.{self.aws_region}.amazonaws.com/{self.user_pool_id}"
        if self.kind == self.Kind.KEYCLOAK:
            server = diffgram.with_trailing_slash(self.keycloak_server_url)
            return f"{server}realms/{self.keycloak_realm}"
        return self.issuer

    def discovery_url(self):
        """Where the discovery document is read. For Cognito, AWS_ENDPOINT_URL (as boto3 reads
        it) redirects the request to a stand-in such as moto, keeping the real issuer."""
        from django.conf import settings

        endpoint = settings.AWS_ENDPOINT_URL_COGNITO_IDP or settings.AWS_ENDPOINT_URL
        if self.kind == self.Kind.COGNITO and endpoint:
            return f"{endpoint.rstrip('/')}/{self.user_pool_id}/.well-known/openid-configuration"
        return ""

    def spec(self, url_base=None):
        from console.discovery import ProviderSpec

        return ProviderSpec(
            kind=self.kind,
            issuer=self.computed_issuer(),
            discovery_url=self.discovery_url(),
            client_id=self.client_id,
            confidential=self.has_secret("client_secret"),
            keycloak_server_url=self.keycloak_server_url,
            keycloak_realm=self.keycloak_realm,
            cognito_domain=self.cognito_domain,
            url_base=self.diffgram_url_base if url_base is None else url_base,
        )

    def diffgram_config(self):
        """The provider as console.diffgram needs it, with secrets decrypted."""
        from console.diffgram import ProviderConfig

        return ProviderConfig(
            kind=self.kind,
            client_id=self.client_id,
            client_secret=self.secret("client_secret"),
            scopes=self.scopes,
            cognito_domain=self.cognito_domain,
            keycloak_server_url=self.keycloak_server_url,
            keycloak_realm=self.keycloak_realm,
            keycloak_master_user=self.keycloak_master_user,
            keycloak_master_password=self.secret("keycloak_master_password"),
            keycloak_diffgram_user=self.keycloak_diffgram_user,
            keycloak_diffgram_password=self.secret("keycloak_diffgram_password"),
            discovery=self.discovery_snapshot or {},
        )

    def audit_fields(self):
        """Field values for audit diffs: plain fields as they are, secrets only as set / not."""
        values = {
            name: getattr(self, name)
            for name in (
                "name", "kind", "enabled", "issuer", "client_id", "scopes", "diffgram_url_base",
                "aws_region", "user_pool_id", "cognito_domain", "keycloak_server_url",
                "keycloak_realm", "keycloak_master_user", "keycloak_diffgram_user",
            )
        }  # fmt: skip
        return values

    @property
    def validation_counts(self):
        counts = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
        for check in self.validation_checks or []:
            counts[check.get("status", "skip")] = counts.get(check.get("status", "skip"), 0) + 1
        return counts


def encrypted_fields():
    """(model, [field names]) for every column holding an encrypted secret."""
    return [
        (Provider, [f"{name}_encrypted" for name in Provider.SECRET_NAMES]),
    ]
