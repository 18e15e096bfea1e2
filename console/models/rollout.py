"""Diffgram instances, the immutable configuration versions assigned to them, and the outbox of
pushes that carries versions to them."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, NoReturn

from django.db import models

from console import diffgram, encryption
from console.models.provider import Provider
from console.models.tokens import HashedToken
from console.pull_state import pull_states

# What the console notes about an instance's pulls, applies and verifications: no pull answer
# depends on it, so writing it leaves the pull state be (the pull path writes it on the way).
PULL_BOOKKEEPING = frozenset(
    {
        "last_pull_at", "last_pulled_version_number", "applied_version_number", "applied_at",
        "applied_status", "applied_detail", "verified_version_number", "verify_ok",
        "verify_step", "verify_detail", "verified_at", "verified_by", "verify_kind",
        "verify_steps", "last_signin_ok", "last_signin_at", "last_signin_seconds",
    }
)  # fmt: skip


class InstanceQuerySet(models.QuerySet):
    """Instances whose changes always reach the pull state (console/pull_state.py), which
    answers pulls from memory. save() and delete() tell it through their signals (apps.py);
    update() sends none, so this update() announces the rows it changed itself."""

    def update(self, **fields: Any) -> int:
        if fields.keys() <= PULL_BOOKKEEPING:
            return super().update(**fields)
        changed_ids = list(self.values_list("pk", flat=True))
        count = super().update(**fields)
        pull_states.invalidate(changed_ids)  # once the transaction commits
        return count


class Instance(HashedToken):
    """A Diffgram installation that receives its SSO settings from the console."""

    objects = InstanceQuerySet.as_manager()

    audit_target_type = "instance"
    audit_actor_type = "instance"  # an instance calling the API acts in the history as itself
    TOKEN_PREFIX = "dgi_"
    SECRET_NAMES = ("signing_secret",)

    class Shape(models.TextChoices):
        COMPOSE = "compose", "docker-compose (.env)"
        HELM = "helm", "Helm chart (values.yaml)"

    class PushTarget(models.TextChoices):
        NONE = "none", "None (the instance pulls)"
        WEBHOOK = "webhook", "Agent webhook"
        SSM = "ssm", "AWS SSM Parameter Store"

    name = models.SlugField(max_length=63, unique=True, help_text="Letters, digits, - and _.")
    url_base = models.CharField(
        "URL_BASE",
        max_length=500,
        help_text="Diffgram's public base URL, ending with / (e.g. https://diffgram.example.com/).",
    )
    shape = models.CharField(max_length=16, choices=Shape.choices, default=Shape.COMPOSE)
    rollout_group = models.SlugField(
        max_length=50,
        default="default",
        help_text="Publish to one group first (e.g. canary), then to the rest.",
    )
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, related_name="instances", null=True, blank=True
    )
    push_target = models.CharField(
        max_length=16, choices=PushTarget.choices, default=PushTarget.NONE
    )
    webhook_url = models.CharField("agent webhook URL", max_length=500, blank=True)
    webhook_allow_http = models.BooleanField(
        "allow plain HTTP to this agent",
        default=False,
        help_text="Pushes carry secrets: only for an agent on a network you trust end to end. "
        "Otherwise serve the agent with --tls-cert/--tls-key and use https://.",
    )
    ssm_region = models.CharField("SSM region", max_length=32, blank=True)
    ssm_prefix = models.CharField(
        "SSM parameter prefix",
        max_length=500,
        blank=True,
        help_text="Default /diffgram/<instance name>/",
    )
    console_verifies = models.BooleanField(
        "the console verifies it too",
        default=False,
        help_text="After the instance reports a version applied, the console itself asks its "
        "Diffgram (at URL_BASE) and the identity provider whether sign-in works, as the agent "
        "does. For instances the console can reach, e.g. pulled by an older agent.",
    )

    class SigninRunner(models.TextChoices):
        CONSOLE = "console", "The console (it reaches this Diffgram at its URL_BASE)"
        AGENT = "agent", "The agent on the Diffgram host (run it with --signin)"

    signin_runner = models.CharField(
        "synthetic sign-ins run from",
        max_length=16,
        choices=SigninRunner.choices,
        default=SigninRunner.CONSOLE,
        help_text="Where the provider's test account signs in to this Diffgram, after each "
        "applied version and every SIGNIN_CHECK_MINUTES. Choose the agent for a Diffgram the "
        "console cannot reach: the test account's credentials then travel to that agent only, "
        "which keeps them in memory.",
    )
    token_rotated_at = models.DateTimeField(null=True, editable=False)
    signing_secret_encrypted = models.TextField(editable=False)
    # Grows with every assignment (publish, rollback, provider switch, repush): it orders what
    # the agent applies, since version numbers start again with each provider.
    assignment_sequence = models.PositiveBigIntegerField(default=0, editable=False)
    assigned_version = models.ForeignKey(
        "ConfigVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        editable=False,
    )  # fmt: skip
    assigned_at = models.DateTimeField(null=True, editable=False)  # the latest new assignment
    applied_version_number = models.PositiveIntegerField(null=True, editable=False)
    applied_status = models.CharField(max_length=8, blank=True, editable=False)
    applied_detail = models.CharField(max_length=2000, blank=True, editable=False)
    applied_at = models.DateTimeField(null=True, editable=False)
    # The newest verification: Diffgram offers single sign-on with the version and the
    # identity provider accepts its login request (agent.probe, by the agent or the console).
    verified_version_number = models.PositiveIntegerField(null=True, editable=False)
    verify_ok = models.BooleanField(null=True, editable=False)
    verify_step = models.CharField(max_length=32, blank=True, editable=False)
    verify_detail = models.CharField(max_length=2000, blank=True, editable=False)
    verified_at = models.DateTimeField(null=True, editable=False)
    verified_by = models.CharField(max_length=16, blank=True, editable=False)  # agent / console
    # "probe" (Diffgram offers sign-in; nobody signed in) or "signin" (a synthetic sign-in), and
    # each step's outcome: [{"name", "ok", "detail"}].
    verify_kind = models.CharField(max_length=8, blank=True, editable=False)
    verify_steps = models.JSONField(default=list, blank=True, editable=False)
    # The newest synthetic sign-in whatever the version (the beat's watch compares with it).
    last_signin_ok = models.BooleanField(null=True, editable=False)
    last_signin_at = models.DateTimeField(null=True, editable=False)
    last_signin_seconds = models.FloatField(null=True, editable=False)
    last_pull_at = models.DateTimeField(null=True, editable=False)
    last_pulled_version_number = models.PositiveIntegerField(null=True, editable=False)
    revision = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rollout_group", "name"]
        # The fleet page's order and its keyset paging (console/views/instances.py).
        indexes = [models.Index(fields=["rollout_group", "name"], name="fleet_order")]

    def __str__(self):
        return self.name

    # --- credentials --------------------------------------------------------------------------

    def new_signing_secret(self) -> str:
        secret = secrets.token_urlsafe(32)
        self.signing_secret_encrypted = encryption.encrypt(secret)
        return secret

    def signing_secret(self) -> str:
        return encryption.decrypt(self.signing_secret_encrypted)

    def effective_ssm_prefix(self) -> str:
        prefix = self.ssm_prefix or f"/diffgram/{self.name}/"
        return prefix if prefix.endswith("/") else prefix + "/"

    def audit_fields(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url_base": self.url_base,
            "shape": self.shape,
            "rollout_group": self.rollout_group,
            "provider": self.provider.name if self.provider else None,
            "push_target": self.push_target,
            "webhook_url": self.webhook_url,
            "webhook_allow_http": self.webhook_allow_http,
            "ssm_region": self.ssm_region,
            "ssm_prefix": self.ssm_prefix,
            "console_verifies": self.console_verifies,
            "signin_runner": self.signin_runner,
        }

    # --- fleet state --------------------------------------------------------------------------

    @property
    def assigned_number(self) -> int | None:
        return self.assigned_version.number if self.assigned_version else None

    @property
    def in_sync(self) -> bool:
        return (
            self.assigned_version_id is not None
            and self.applied_status == "ok"
            and self.applied_version_number == self.assigned_number
        )


class ConfigVersion(models.Model):
    """An immutable, numbered rendering of a provider's Diffgram settings.

    Secret values are kept encrypted apart from the plain settings; `content_hash` is an HMAC
    of the complete settings (so it identifies content without exposing weak secrets to
    offline guessing). Versions are never changed once written.
    """

    audit_target_type = "version"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    settings = models.JSONField(help_text="Non-secret Diffgram variables")
    secret_settings_encrypted = models.TextField(blank=True)
    secret_names = models.JSONField(default=list)
    # Cognito: COGNITO_LOGIN_URL without redirect_uri, completed per instance's URL_BASE.
    login_url_template = models.CharField(max_length=1000, blank=True)
    content_hash = models.CharField(max_length=64)
    note = models.CharField(max_length=500, blank=True)
    rollback_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["provider", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "number"], name="version_number_unique")
        ]

    def __str__(self):
        return f"{self.provider.name} v{self.number}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Configuration versions are immutable.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs) -> NoReturn:
        raise ValueError("Configuration versions are immutable and kept.")

    def settings_for(self, instance) -> dict[str, str]:
        """Every variable as `instance` receives it (its own COGNITO_LOGIN_URL and Keycloak
        client id), secrets decrypted."""
        return diffgram.instance_settings(
            self.all_settings(), self.login_url_template, instance.url_base, instance.name
        )

    def content_hash_for(self, instance) -> str:
        """The hash of what `instance` receives: the version's, or (when the settings differ
        per instance) the version's combined with what makes them differ."""
        parts = [self.content_hash]
        if self.login_url_template:
            parts.append(instance.url_base)
        if diffgram.is_per_instance(self.settings):
            parts.append(instance.name)
        if len(parts) == 1:
            return self.content_hash
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def all_settings(self) -> dict[str, str]:
        """Every variable, secrets decrypted: only for pushes and the owning instance's pull.
        Decrypted once per object (a version never changes), as a push batch shares it."""
        if getattr(self, "_all_settings", None) is None:
            secret_values = (
                json.loads(encryption.decrypt(self.secret_settings_encrypted))
                if self.secret_settings_encrypted
                else {}
            )
            self._all_settings = {**self.settings, **secret_values}
        return dict(self._all_settings)


class Rollout(models.Model):
    """The progress of publishing one version: first group, then the rest, or halted."""

    class State(models.TextChoices):
        STAGED = "staged", "Published to the first group"
        COMPLETE = "complete", "Published to every instance"
        HALTED = "halted", "Halted"

    version = models.OneToOneField(ConfigVersion, on_delete=models.PROTECT, related_name="rollout")
    first_group = models.CharField(max_length=50, blank=True)
    state = models.CharField(max_length=16, choices=State.choices)
    # Halt by itself when the first group fails to apply or verify the version, or has not
    # verified it by `verify_deadline`; then optionally publish the previous version to it.
    auto_halt = models.BooleanField(default=False)
    auto_rollback = models.BooleanField(default=False)
    verify_deadline = models.DateTimeField(null=True)
    halt_reason = models.CharField(max_length=2000, blank=True)
    halted_automatically = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.version}: {self.state}"


class PushRequest(models.Model):
    """Outbox row: deliver `version` to `instance`. Written in the publishing transaction, so a
    broker outage loses nothing; the sweeper re-dispatches what is still pending."""

    class State(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SUPERSEDED = "superseded"  # a newer version was assigned before this one went out

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="pushes")
    version = models.ForeignKey(ConfigVersion, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # By when something must happen to it (be started, be recorded, or its retry be due);
    # a pending request past it is sent again by the sweeper (tasks.sweep_outbox).
    due_at = models.DateTimeField(null=True)
    completed_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["state", "due_at"], name="push_due"),
            # An instance's newest push (instances.with_state, for every row of the fleet).
            models.Index(fields=["instance", "-id"], name="push_newest"),
        ]

    def __str__(self):
        return f"push {self.version} to {self.instance}: {self.state}"


class PushAttempt(models.Model):
    request = models.ForeignKey(PushRequest, on_delete=models.CASCADE, related_name="attempt_log")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    http_status = models.PositiveIntegerField(null=True)
    error = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"attempt on {self.request}: {'ok' if self.ok else self.error}"
