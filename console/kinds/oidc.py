"""A generic OpenID Provider (Okta, Entra ID, Google, Auth0, …). Diffgram's code talks only to
Cognito and Keycloak, so such a provider signs admins in to this console, or signs users in to
Diffgram federated into a Cognito user pool (console/federation.py)."""

from __future__ import annotations

from typing import ClassVar

from django.core.exceptions import ValidationError

from console import discovery
from console.diffgram_checks import NOT_FOR_DIFFGRAM, URL_BASE
from console.forms import http_url
from console.kinds.base import ProviderForm, ProviderKind
from console.models import Provider
from console.oidc_checks import OPENID_CHECKS, SCOPES, TOKEN_AUTH, USERINFO


class OIDCKind(ProviderKind):
    slug = Provider.Kind.OIDC
    label = "Generic OIDC"
    federates_into_cognito = True
    checks: ClassVar[discovery.CheckPlan] = discovery.CheckPlan(
        documents=(*OPENID_CHECKS, USERINFO, SCOPES, TOKEN_AUTH, NOT_FOR_DIFFGRAM),
        configuration=(URL_BASE,),
    )

    @property
    def form(self) -> type[ProviderForm]:
        return OIDCProviderForm


OIDC = OIDCKind()


class OIDCProviderForm(ProviderForm):
    kind = OIDC
    destination_fields = ("issuer",)
    required_fields = ("issuer",)

    class Meta:
        model = Provider
        fields = ["name", "issuer", "client_id", "scopes"]
        labels = {"issuer": "Issuer URL"}
        help_texts = {
            "issuer": "Okta: https://<org>.okta.com/oauth2/default · Entra ID: "
            "https://login.microsoftonline.com/<tenant>/v2.0 · Google: "
            "https://accounts.google.com · Auth0: https://<tenant>.auth0.com/",
            "scopes": "Space-separated, e.g. openid email profile groups.",
        }

    def clean_issuer(self) -> str:
        return http_url(self.cleaned_data["issuer"].strip(), "issuer")

    def clean_scopes(self) -> str:
        scopes: list[str] = self.cleaned_data["scopes"].split()
        if "openid" not in scopes:
            raise ValidationError("OpenID Connect needs the openid scope.")
        return " ".join(scopes)
