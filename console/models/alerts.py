"""Where alerts go (by email or webhook, for the events each destination chooses) and the
alerts sent (console/alerts.py)."""

from __future__ import annotations

from django.db import models

from console.models.secrets import WriteOnlySecrets


class AlertEvent(models.TextChoices):
    PROVIDER_VALIDATION = "provider_validation", "A provider's validation starts or stops failing"
    JWKS_ROTATED = "jwks_rotated", "A provider's signing keys (JWKS) change"
    PUSH_FAILED = "push_failed", "A push fails for good"
    INSTANCE_DRIFTING = "instance_drifting", "An instance drifts or stops pulling"
    ROLLOUT_HALTED = "rollout_halted", "A staged rollout halts"
    SIGNIN_FAILED = "signin_failed", "A synthetic sign-in fails after one passed"
    SIGNIN_RECOVERED = "signin_recovered", "A synthetic sign-in passes again after failing"
    AUDIT_BROKEN = "audit_broken", "The audit chain stops verifying"
    BREAK_GLASS = "break_glass", "A local admin signs in while SSO is set up (break-glass)"
    TEST = "test", "A test alert, sent on request"


class AlertDestination(WriteOnlySecrets, models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        WEBHOOK = "webhook", "Webhook (JSON POST, Slack-compatible)"

    SECRET_NAMES = ("webhook_secret",)
    audit_target_type = "alert"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    email_to = models.CharField(
        "email addresses", max_length=500, blank=True, help_text="Comma-separated."
    )
    webhook_url = models.URLField("webhook URL", max_length=500, blank=True)
    # Signs each POST as pushes to agents are signed (X-Diffgram-SSO-Signature).
    webhook_secret_encrypted = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [address.strip() for address in self.email_to.split(",") if address.strip()]

    def audit_fields(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "email_to": self.email_to,
            "webhook_url": self.webhook_url,
            "events": sorted(self.events),
            "enabled": self.enabled,
        }


class Alert(models.Model):
    """One alert to one destination. The same condition (event and `condition` key) is sent at
    most once an hour per destination; repeats within the hour are only counted."""

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    destination = models.ForeignKey(
        AlertDestination, null=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    destination_name = models.CharField(max_length=100)  # kept when the destination goes
    event = models.CharField(max_length=32, choices=AlertEvent.choices)
    condition = models.CharField(max_length=200)
    subject = models.CharField(max_length=255)
    text = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=1000, blank=True)
    repeats = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["destination", "event", "condition", "created_at"],
                name="alert_condition",
            )
        ]

    def __str__(self):
        return f"{self.event}: {self.subject}"
