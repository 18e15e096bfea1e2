"""Keycloak, which Diffgram talks to on its Keycloak path (OAUTH2_PROVIDER_NAME=keycloak). At
every start Diffgram sets Keycloak up itself (docs/DIFFGRAM.md): it logs in to the master realm,
creates its realm, its client (with the id given here) and a realm user, and reads the client's
secret from Keycloak. So there is no client secret to enter, and instances must not share one
client (Diffgram overwrites its redirect URIs)."""

from __future__ import annotations

from typing import ClassVar

from django.core.exceptions import ValidationError

from console import diffgram, diffgram_releases, discovery, keycloak_admin
from console.diffgram import INSTANCE_PLACEHOLDER
from console.diffgram_checks import (
    CLIENT_PER_INSTANCE,
    KEYCLOAK_ADMIN,
    KEYCLOAK_HOST,
    KEYCLOAK_REALM_USER,
    KEYCLOAK_TOKEN_AUTH,
    KEYCLOAK_URL_BASE,
    USERINFO_FOR_DIFFGRAM,
    known_issues_check,
)
from console.forms import http_url
from console.kinds.base import Options, ProviderForm, ProviderKind, Settings, TestAccounts
from console.models import Provider
from console.oidc_checks import OPENID_CHECKS, SCOPES

AREAS = (
    diffgram_releases.KEYCLOAK_SIGNIN,
    diffgram_releases.KEYCLOAK_STARTUP,
    diffgram_releases.SIGNOUT,
)


class KeycloakKind(ProviderKind):
    slug = Provider.Kind.KEYCLOAK
    label = "Keycloak"
    diffgram_name = "keycloak"
    diffgram_areas = AREAS
    federates_into_cognito = True
    client_for_cognito_hint = (
        "In Keycloak that is a client you create for Cognito (client authentication on, "
        "redirect URI https://<pool domain>/oauth2/idpresponse), not Diffgram's client "
        "{client_id}, which Diffgram makes itself."
    )
    test_accounts = TestAccounts(
        keycloak_admin.create_user,
        keycloak_admin.set_password,
        keycloak_admin.delete_user,
        keycloak_admin.KeycloakError,
    )
    registrations_heading = "Redirect URI Diffgram sets"
    instances_note_template = "console/kinds/keycloak_instances_note.html"
    location_help = "the Keycloak server URL (what Diffgram calls OAUTH2_PROVIDER_HOST)"
    checks: ClassVar[discovery.CheckPlan] = discovery.CheckPlan(
        documents=(
            *OPENID_CHECKS,
            USERINFO_FOR_DIFFGRAM,
            SCOPES,
            KEYCLOAK_TOKEN_AUTH,
            KEYCLOAK_HOST,
        ),
        configuration=(
            KEYCLOAK_URL_BASE,
            KEYCLOAK_ADMIN,
            KEYCLOAK_REALM_USER,
            CLIENT_PER_INSTANCE,
            known_issues_check(AREAS),
        ),
    )

    @property
    def form(self) -> type[ProviderForm]:
        return KeycloakProviderForm

    def issuer(self, provider: Provider) -> str:
        server = diffgram.with_trailing_slash(provider.keycloak_server_url)
        return f"{server}realms/{provider.keycloak_realm}"

    def sharing_problem(self, client_id: str, instance_names: tuple[str, ...]) -> str:
        spec = discovery.ProviderSpec(issuer="", client_id=client_id, instance_names=instance_names)
        status, message = discovery.client_per_instance_verdict(spec)
        return message if status == discovery.FAIL else ""

    # --- what Diffgram receives -------------------------------------------------------------------

    def diffgram_settings(self, config: diffgram.ProviderConfig, url_base: str = "") -> Settings:
        host = (
            diffgram.with_trailing_slash(config.keycloak_server_url)
            if config.keycloak_server_url
            else ""
        )
        # No client secret: Diffgram reads its client's from Keycloak's admin API.
        variables = diffgram.oauth2_settings(self.diffgram_name, host, config.client_id)
        variables["KEYCLOAK_REALM"] = config.keycloak_realm
        admin = {
            "KEY_CLOAK_MASTER_USER": config.keycloak_master_user,
            "KEY_CLOAK_MASTER_PASSWORD": config.keycloak_master_password,
            "KEY_CLOAK_DIFFGRAM_USER": config.keycloak_diffgram_user,
            "KEY_CLOAK_DIFFGRAM_PASSWORD": config.keycloak_diffgram_password,
        }
        variables.update({name: value for name, value in admin.items() if value})
        return variables

    def callback_url(self, url_base: str) -> str:
        return diffgram.keycloak_callback_url(url_base)

    def registrations(self, url_base: str) -> list[dict[str, str]]:
        """Diffgram sets its client's redirect URI itself at start-up: nothing to do by hand."""
        if not url_base:
            return []
        return [
            {
                "label": "Redirect URI (Diffgram sets it on its client at start-up)",
                "value": self.callback_url(url_base),
            }
        ]

    def login_expectations(self, settings: Settings, url_base: str) -> dict[str, str] | None:
        host = diffgram.with_trailing_slash(settings.get("OAUTH2_PROVIDER_HOST", ""))
        realm = f"{host}realms/{settings.get('KEYCLOAK_REALM', '')}/protocol/openid-connect"
        return diffgram.login_expectation(
            url_base,
            authorize_endpoint=f"{realm}/auth",
            client_id=settings.get("OAUTH2_PROVIDER_CLIENT_ID", ""),
            redirect_uri=self.callback_url(url_base),
            userinfo_endpoint=f"{realm}/userinfo",
        )

    # --- the command line -------------------------------------------------------------------------

    def command_fields(self, location: str, options: Options) -> dict[str, str]:
        if not options.get("realm"):
            raise ValueError("--realm is required for a Keycloak provider")
        return {
            "keycloak_server_url": location,
            "keycloak_realm": options["realm"],
            "keycloak_master_user": options.get("master_user") or "",
            "keycloak_diffgram_user": options.get("diffgram_user") or "",
            "diffgram_url_base": options.get("url_base") or "",
        }


KEYCLOAK = KeycloakKind()


class KeycloakProviderForm(ProviderForm):
    kind = KEYCLOAK
    destination_fields = ("keycloak_server_url",)
    required_fields = ("keycloak_server_url", "keycloak_realm")
    secret_names = ("keycloak_master_password", "keycloak_diffgram_password")
    secret_after = {
        "keycloak_master_user": ("keycloak_master_password",),
        "keycloak_diffgram_user": ("keycloak_diffgram_password",),
    }
    secret_help = {
        "keycloak_master_password": "The master admin's password (without it Diffgram tries "
        "admin).",
        "keycloak_diffgram_password": "A strong password: Diffgram sets it on that user at every "
        "start (without it, the password is diffgram).",
    }

    class Meta:
        model = Provider
        fields = [
            "name", "keycloak_server_url", "keycloak_realm", "client_id",
            "keycloak_master_user", "keycloak_diffgram_user", "diffgram_url_base",
        ]  # fmt: skip
        help_texts = {
            "keycloak_server_url": "What Diffgram calls OAUTH2_PROVIDER_HOST, e.g. "
            "https://keycloak.example.com/auth/ (older Keycloak) or https://keycloak.example.com/.",
            "keycloak_realm": "The realm Diffgram's users live in (Diffgram's default: "
            "diffgram-realm); Diffgram creates it if missing. The issuer is server URL + realms/ "
            "+ realm.",
            "client_id": "The client Diffgram creates in the realm at start-up. Do not create it "
            "in Keycloak yourself: Diffgram finds its client by Keycloak's internal id, which "
            "matches only for clients it created (start-up fails with 404 otherwise). With more "
            "than one instance, put {instance} in it (e.g. diffgram-{instance}) so that each "
            "instance gets its own client, named after the instance.",
            "keycloak_master_user": "A master-realm admin Diffgram logs in as at every start, to "
            "create its realm, client and roles (without one, Diffgram tries admin/admin).",
            "keycloak_diffgram_user": "A realm user Diffgram creates, or resets, at every start "
            "(without one, Diffgram uses diffgram with the password diffgram).",
        }

    def clean_keycloak_server_url(self) -> str:
        return http_url(self.cleaned_data["keycloak_server_url"].strip(), "Keycloak server URL")

    def clean_keycloak_realm(self) -> str:
        realm: str = self.cleaned_data["keycloak_realm"].strip()
        if not realm or "/" in realm:
            raise ValidationError("Enter the realm name (no slashes).")
        return realm

    def clean_client_id(self) -> str:
        client_id: str = self.cleaned_data["client_id"].strip()
        rest = client_id.replace(INSTANCE_PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise ValidationError(
                f"The only placeholder a client id can hold is {INSTANCE_PLACEHOLDER} "
                "(each instance's name)."
            )
        return client_id
