"""Identity providers."""

from __future__ import annotations

from django.db import models

from console import diffgram
from console.models.secrets import WriteOnlySecrets


class Provider(WriteOnlySecrets, models.Model):
    """An identity provider the console validates and rolls out to Diffgram instances."""

    audit_target_type = "provider"

    # What each kind is and does lives in console/kinds/ (the registry); the model only names them.
    class Kind(models.TextChoices):
        COGNITO = "cognito", "AWS Cognito"
        KEYCLOAK = "keycloak", "Keycloak"
        OIDC = "oidc", "Generic OIDC"

    # Stored encrypted; the attribute names are the secret's name + "_encrypted".
    SECRET_NAMES = ("client_secret", "keycloak_master_password", "keycloak_diffgram_password")

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    # The console's own admins sign in through this provider (at most one; set only after a
    # successful test login by the admin who marks it).
    console_login = models.BooleanField(default=False, editable=False)
    issuer = models.CharField(max_length=500)  # derived by its kind on save (console/kinds/)
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
    aws_role_arn = models.CharField(
        "IAM role to assume",
        max_length=255,
        blank=True,
        help_text="Optional: arn:aws:iam::<account>:role/<name> for Inspect/Fix in AWS; "
        "otherwise the console's own AWS credentials are used.",
    )
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
    last_passed_at = models.DateTimeField(null=True, blank=True, editable=False)
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

    # --- derived --------------------------------------------------------------------------------

    def diffgram_config(self) -> diffgram.ProviderConfig:
        """The provider as console.diffgram needs it, with secrets decrypted."""
        return diffgram.ProviderConfig(
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

    @property
    def validation_counts(self) -> dict[str, int]:
        counts = {"pass": 0, "warn": 0, "fail": 0, "skip": 0}
        for check in self.validation_checks or []:
            counts[check.get("status", "skip")] = counts.get(check.get("status", "skip"), 0) + 1
        return counts


class ExternalIdentity(models.Model):
    """Links a console user to an account at an identity provider: (issuer, sub), never email."""

    user = models.ForeignKey(
        "auth.User", on_delete=models.CASCADE, related_name="external_identities"
    )
    issuer = models.CharField(max_length=500)  # derived by its kind on save (console/kinds/)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True)
    # The IdP groups that gave the role at the last sign-in (those named in
    # CONSOLE_ADMIN_GROUPS / CONSOLE_AUDITOR_GROUPS), shown on the users page.
    role_groups = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="identity_unique")
        ]

    def __str__(self):
        return f"{self.subject} at {self.issuer}"
