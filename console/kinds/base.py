"""What every kind of identity provider is, and the form all their forms start from.

A kind (console/kinds/cognito.py, keycloak.py, oidc.py) subclasses ProviderKind and fills in what
differs: its form and fields, its issuer rule, its checks, the Diffgram settings it renders and
what to register at the provider, the defects of Diffgram's code it meets, how it is given on the
command line and which page sections it shows. Shared code asks console/kinds/__init__.py for a
provider's kind and never compares kinds itself.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from pydantic import BaseModel, create_model

from console import diffgram, diffgram_releases, discovery
from console.diffgram import INSTANCE_PLACEHOLDER
from console.form_schemas import form_model
from console.forms import WriteOnlySecretsForm, diffgram_url_base
from console.models import Provider

Settings = dict[str, str]
Options = dict[str, Any]


class ProviderForm(WriteOnlySecretsForm):
    """Common to every kind: write-only secrets and optimistic concurrency.

    A stored secret never follows the provider to another host: changing where secrets are
    sent (`destination_fields`) requires every stored secret again, or clearing it."""

    kind: ClassVar[ProviderKind]
    secret_names: tuple[str, ...] = ("client_secret",)
    secret_after = {"client_id": ("client_secret",)}
    secret_help = {"client_secret": "Leave blank for a public client (no secret)."}
    destination_fields: tuple[str, ...] = ()
    required_fields: tuple[str, ...] = ()  # needed for this kind, though optional in the model
    revision = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.required_fields:
            self.fields[name].required = True
        editing = not self.instance._state.adding
        self.stored_destination = (
            {name: getattr(self.instance, name) for name in self.destination_fields}
            if editing
            else {}
        )
        if editing:
            self.fields["revision"].initial = self.instance.revision

    def destination_changed(self) -> list[str]:
        """The fields naming where secrets go that this (valid) submission changes."""
        return [
            name
            for name, before in self.stored_destination.items()
            if self.cleaned_data.get(name, before) != before
        ]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean()
        moved = self.destination_changed() if self.stored_destination else []
        if moved:
            for name in self.secret_names:
                kept = not cleaned.get(name) and not cleaned.get(f"clear_{name}")
                if kept and self.instance.has_secret(name):
                    self.add_error(
                        name,
                        f"You changed {', '.join(moved)}: the stored secret is not sent to a "
                        "new place. Enter it again, or clear it.",
                    )
        return cleaned

    def save(self, commit: bool = True) -> Provider:
        provider: Provider = super().save(commit=False)
        provider.kind = self.kind.slug
        provider.issuer = self.kind.issuer(provider)
        if commit:
            provider.save()
        return provider

    def clean_diffgram_url_base(self) -> str:
        value: str = self.cleaned_data.get("diffgram_url_base", "").strip()
        return diffgram_url_base(value) if value else value

    def clean_client_id(self) -> str:
        client_id: str = self.cleaned_data["client_id"].strip()
        if INSTANCE_PLACEHOLDER in client_id:
            raise ValidationError(
                f"Only a Keycloak client id can contain {INSTANCE_PLACEHOLDER}: this provider "
                "issued one client id, which every instance uses."
            )
        return client_id


class CheckOut(BaseModel):
    id: str
    status: Literal["pass", "warn", "fail", "skip"]
    message: str


class ValidationOut(BaseModel):
    """The provider's last validation against its discovery document and JWKS."""

    passed: bool | None
    validated_at: datetime.datetime | None
    checks: list[CheckOut]


@dataclass(frozen=True)
class TestAccounts:
    """How the console makes, re-passwords and removes the test account of synthetic sign-ins
    at a provider (console/signin_accounts.py); `refusal` is what the provider's client raises
    with a message an admin can act on."""

    create: Callable[[Provider, str, str, str], None]  # (provider, username, email, password)
    set_password: Callable[[Provider, str, str], None]  # (provider, username, password)
    delete: Callable[[Provider, str], None]  # (provider, username)
    refusal: type[Exception]


class ProviderKind:
    """One kind of identity provider. The defaults are those of a provider Diffgram never
    talks to; the Diffgram kinds override what they render and check."""

    slug: ClassVar[str]  # stored in Provider.kind
    label: ClassVar[str]
    checks: ClassVar[discovery.CheckPlan]
    default_scopes: ClassVar[str] = "openid email profile"
    # OAUTH2_PROVIDER_NAME, the provider Diffgram's code talks to; "" when it never does.
    diffgram_name: ClassVar[str] = ""
    # The parts of Diffgram's code its sign-in goes through (console/diffgram_releases.py).
    diffgram_areas: ClassVar[tuple[str, ...]] = ()
    # It is an AWS user pool: Inspect and Fix in AWS, federation into it.
    aws_user_pool: ClassVar[bool] = False
    # It can sign users in to a Cognito pool through OIDC federation.
    federates_into_cognito: ClassVar[bool] = False
    # Which client at this provider Cognito signs in with, when the admin must make it.
    client_for_cognito_hint: ClassVar[str] = ""
    test_accounts: ClassVar[TestAccounts | None] = None
    # The page sections of this kind: templates/console/kinds/<slug>_*.html.
    registrations_heading: ClassVar[str] = "Register on the app client"
    instances_note_template: ClassVar[str] = ""  # under the provider's per-instance table
    location_help: ClassVar[str] = "the issuer URL"  # the commands' ISSUER-or-SERVER argument

    @property
    def form(self) -> type[ProviderForm]:
        raise NotImplementedError

    @property
    def howto_template(self) -> str:
        return f"console/kinds/{self.slug}_howto.html"

    @property
    def cards_template(self) -> str:
        """Its choices on the "Add an identity provider" page."""
        return f"console/kinds/{self.slug}_cards.html"

    @property
    def facts_template(self) -> str:
        return f"console/kinds/{self.slug}_facts.html"

    @property
    def editable_fields(self) -> tuple[str, ...]:
        """What an admin sets, in the order the form shows them; the audit records and
        configuration as code follow this list."""
        return tuple(self.form._meta.fields or ())

    @property
    def secret_names(self) -> tuple[str, ...]:
        return self.form.secret_names

    # --- the JSON API's schemas: the form's fields, checked again by the form ------------------

    @functools.cached_property
    def api_fields(self) -> dict[str, forms.Field]:
        """What an API client sets: the form's fields, without its hidden revision and its
        "clear" boxes (null clears a secret)."""
        return {
            name: field
            for name, field in self.form().fields.items()
            if name != "revision" and not name.startswith("clear_")
        }

    @functools.cached_property
    def api_create(self) -> type[BaseModel]:
        """The body that creates a provider of this kind (POST /api/v1/providers)."""
        return form_model(
            f"{self.schema_name}Create",
            self.api_fields,
            required={name for name, field in self.api_fields.items() if field.required},
            nullable=set(self.secret_names),
            extra={"kind": (Literal[self.slug], ...)},
            strict=True,
        )

    @functools.cached_property
    def api_read(self) -> type[BaseModel]:
        """A provider of this kind as the API shows it; secrets masked."""
        fields: dict[str, Any] = {
            "id": (int, ...),
            "kind": (Literal[self.slug], ...),
            "enabled": (bool, ...),
            "issuer": (str, ...),
            **{
                name: (bool if isinstance(field, forms.BooleanField) else str, ...)
                for name, field in self.api_fields.items()
                if name not in self.secret_names
            },
            **{name: (Literal["********"] | None, ...) for name in self.secret_names},
            "console_login": (bool, ...),
            "revision": (int, ...),
            "validation": (ValidationOut, ...),
        }
        model: type[BaseModel] = create_model(f"{self.schema_name}Provider", **fields)
        return model

    @property
    def schema_name(self) -> str:
        return "".join(part.capitalize() for part in self.slug.split("_"))

    @property
    def signs_in_to_diffgram(self) -> bool:
        return bool(self.diffgram_name)

    # --- the issuer and its checks ----------------------------------------------------------------

    def issuer(self, provider: Provider) -> str:
        return provider.issuer

    def discovery_url(self, provider: Provider) -> str:
        """Where the discovery document is read, when not under the issuer ("")."""
        return ""

    def reach_hint(self, issuer: str) -> str:
        """What the console needs to reach this issuer, said when it could not."""
        return ""

    def spec(self, provider: Provider, url_base: str | None = None) -> discovery.ProviderSpec:
        issuer = self.issuer(provider)
        return discovery.ProviderSpec(
            issuer=issuer,
            discovery_url=self.discovery_url(provider),
            client_id=provider.client_id,
            confidential=provider.has_secret("client_secret"),
            keycloak_server_url=provider.keycloak_server_url,
            keycloak_realm=provider.keycloak_realm,
            cognito_domain=provider.cognito_domain,
            url_base=provider.diffgram_url_base if url_base is None else url_base,
            keycloak_master_user=provider.keycloak_master_user,
            keycloak_master_password_set=provider.has_secret("keycloak_master_password"),
            keycloak_diffgram_user=provider.keycloak_diffgram_user,
            keycloak_diffgram_password_set=provider.has_secret("keycloak_diffgram_password"),
            instance_names=(
                tuple(provider.instances.values_list("name", flat=True)) if provider.pk else ()
            ),
            diffgram_version=settings.DIFFGRAM_VERSION,
            reach_hint=self.reach_hint(issuer),
        )

    def validate(
        self, spec: discovery.ProviderSpec, fetch: Callable[[str], discovery.Fetched] | None = None
    ) -> discovery.Report:
        """Read the issuer's documents (through console/outbound.py) and run this kind's checks."""
        return discovery.validate(
            spec,
            self.checks,
            allow_loopback_http=settings.SSO_ADMIN_ALLOW_PRIVATE_URLS,
            fetch=fetch or discovery.fetch_json,
        )

    def known_issues(
        self, *, client_secret: bool, version: str = ""
    ) -> list[diffgram_releases.KnownIssue] | None:
        """The known defects of Diffgram `version` (DIFFGRAM_VERSION by default) this kind
        meets; None when the console has no record of that release."""
        return diffgram_releases.known_issues(
            version or settings.DIFFGRAM_VERSION, self.diffgram_areas, client_secret=client_secret
        )

    def blocking_issues(self, *, client_secret: bool) -> list[diffgram_releases.KnownIssue]:
        """The known defects that keep everyone from signing in to DIFFGRAM_VERSION."""
        return diffgram_releases.blocking_issues(
            settings.DIFFGRAM_VERSION, self.diffgram_areas, client_secret=client_secret
        )

    def sharing_problem(self, client_id: str, instance_names: tuple[str, ...]) -> str:
        """Why these instances cannot all use this client id ("" when they can)."""
        return ""

    # --- what Diffgram receives -------------------------------------------------------------------

    def diffgram_settings(self, config: diffgram.ProviderConfig, url_base: str = "") -> Settings:
        """Diffgram's environment variables for this provider ({} when Diffgram does not talk
        to it). A variable that needs url_base is left out without one."""
        return {}

    def unknown_variables(self, config: diffgram.ProviderConfig, url_base: str = "") -> Settings:
        """The variables Diffgram needs that cannot be derived yet, each with why; they are
        left out of diffgram_settings() rather than shown empty as if they were valid."""
        return {}

    def login_template(self, config: diffgram.ProviderConfig) -> str:
        """The login URL a version keeps without its redirect_uri ("" for none)."""
        return ""

    def callback_url(self, url_base: str) -> str:
        """The redirect URI Diffgram sends, to be registered at the provider verbatim."""
        return diffgram.oauth2_callback_url(url_base)

    def registrations(self, url_base: str) -> list[dict[str, str]]:
        """What must be registered at the provider for a Diffgram at url_base."""
        return []

    def login_expectations(self, settings: Settings, url_base: str) -> dict[str, str] | None:
        """What Diffgram's is-oauth2-set must answer once it runs `settings` (as one instance
        receives them) at url_base (docs/DIFFGRAM.md); None when it is no Diffgram sign-in."""
        return None

    # --- records, files and the command line ------------------------------------------------------

    def audit_fields(self, provider: Provider) -> dict[str, Any]:
        """Field values for audit diffs: those of this kind (a Keycloak provider has no AWS
        region to record); secrets are never among them."""
        names = ("kind", "enabled", "issuer", *self.editable_fields)
        return {name: getattr(provider, name) for name in dict.fromkeys(names)}

    def command_fields(self, location: str, options: Options) -> dict[str, str]:
        """The form data add_provider and check_issuer build from their arguments; ValueError
        says what is missing."""
        return {"issuer": location, "scopes": options.get("scopes") or self.default_scopes}

    def draft(self, fields: dict[str, str]) -> Provider:
        """An unsaved provider of this kind with these fields, its issuer derived."""
        names = {field.name for field in Provider._meta.get_fields()}  # not the secrets
        provider = Provider(kind=self.slug, **{k: v for k, v in fields.items() if k in names})
        provider.issuer = self.issuer(provider)
        return provider
