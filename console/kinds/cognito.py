"""AWS Cognito: a user pool's app client, which Diffgram talks to on its OAuth2 path
(OAUTH2_PROVIDER_NAME=cognito, docs/DIFFGRAM.md). SAML and social logins reach Diffgram through
it, federated into the pool (console/federation.py)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import ngettext

from console import cognito, diffgram, diffgram_releases, discovery
from console.diffgram_checks import (
    OAUTH2_HOST,
    TOKEN_AUTH_POST,
    URL_BASE,
    USERINFO_FOR_DIFFGRAM,
    known_issues_check,
)
from console.forms import AWS_REGION, diffgram_url_base, http_url
from console.kinds.base import Options, ProviderForm, ProviderKind, Settings, TestAccounts
from console.models import Provider
from console.oidc_checks import OPENID_CHECKS, SCOPES

USER_POOL_ID = re.compile(r"^(?P<region>[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2})_[0-9A-Za-z]+$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
ISSUER = re.compile(
    r"^https://cognito-idp\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<pool>[\w-]+)/?$"
)
AREAS = (diffgram_releases.SIGNOUT, diffgram_releases.OAUTH2_TOKENS)


class CognitoKind(ProviderKind):
    slug = Provider.Kind.COGNITO
    label = "AWS Cognito"
    default_scopes = "openid email"
    diffgram_name = "cognito"
    diffgram_areas = AREAS
    aws_user_pool = True
    test_accounts = TestAccounts(
        cognito.create_test_user,
        cognito.set_test_user_password,
        cognito.delete_test_user,
        cognito.AWSError,
    )
    location_help = "the issuer, https://cognito-idp.<region>.amazonaws.com/<user-pool-id>"
    checks: ClassVar[discovery.CheckPlan] = discovery.CheckPlan(
        documents=(*OPENID_CHECKS, USERINFO_FOR_DIFFGRAM, SCOPES, TOKEN_AUTH_POST, OAUTH2_HOST),
        configuration=(URL_BASE, known_issues_check(AREAS)),
    )

    @property
    def form(self) -> type[ProviderForm]:
        return CognitoProviderForm

    def issuer(self, provider: Provider) -> str:
        return f"https://cognito-idp.{provider.aws_region}.amazonaws.com/{provider.user_pool_id}"

    def discovery_url(self, provider: Provider) -> str:
        """With AWS_ENDPOINT_URL (as boto3 reads it), a stand-in such as moto answers for the
        pool, under the real issuer."""
        endpoint = settings.AWS_ENDPOINT_URL_COGNITO_IDP or settings.AWS_ENDPOINT_URL
        if not endpoint:
            return ""
        return f"{endpoint.rstrip('/')}/{provider.user_pool_id}{discovery.DISCOVERY_PATH}"

    def reach_hint(self, issuer: str) -> str:
        host = re.sub(r"^https://|/.*$", "", issuer) or "cognito-idp.<region>.amazonaws.com"
        return (
            f" In production the console needs outbound HTTPS to {host} (port 443). "
            "AWS_ENDPOINT_URL points it at a stand-in such as a moto server: for tests only."
        )

    # --- what Diffgram receives -------------------------------------------------------------------

    def _host(self, config: diffgram.ProviderConfig) -> str:
        return diffgram.oauth2_provider_host(config.discovery, config.cognito_domain)

    def login_template(self, config: diffgram.ProviderConfig) -> str:
        """COGNITO_LOGIN_URL without its redirect_uri (each instance's own)."""
        authorize = diffgram.oauth2_authorize_endpoint(config.discovery, config.cognito_domain)
        return diffgram.login_url_template(authorize, config.client_id, config.scopes)

    def unknown_variables(self, config: diffgram.ProviderConfig, url_base: str = "") -> Settings:
        why = (
            "unknown until the discovery document is read (validate the provider) or the "
            "hosted-UI domain is set"
        )
        unknown = {}
        if not self._host(config):
            unknown["OAUTH2_PROVIDER_HOST"] = why
        if url_base and not self.login_template(config):
            unknown["COGNITO_LOGIN_URL"] = why
        return unknown

    def diffgram_settings(self, config: diffgram.ProviderConfig, url_base: str = "") -> Settings:
        variables = diffgram.oauth2_settings(
            self.diffgram_name, self._host(config), config.client_id
        )
        if config.client_secret:
            variables["OAUTH2_PROVIDER_CLIENT_SECRET"] = config.client_secret
        if url_base:
            variables["COGNITO_LOGIN_URL"] = diffgram.with_redirect(
                self.login_template(config), url_base
            )
        for name in self.unknown_variables(config, url_base):
            variables.pop(name, None)
        return variables

    def registrations(self, url_base: str) -> list[dict[str, str]]:
        if not url_base:
            return []
        return [
            {"label": "Allowed callback (redirect) URL", "value": self.callback_url(url_base)},
            {"label": "Allowed sign-out URL", "value": diffgram.signout_url(url_base)},
        ]

    def login_expectations(self, settings: Settings, url_base: str) -> dict[str, str] | None:
        host = diffgram.with_trailing_slash(settings.get("OAUTH2_PROVIDER_HOST", ""))
        return diffgram.login_expectation(
            url_base,
            authorize_endpoint=settings.get("COGNITO_LOGIN_URL", "").split("?", 1)[0],
            client_id=settings.get("OAUTH2_PROVIDER_CLIENT_ID", ""),
            redirect_uri=self.callback_url(url_base),
            userinfo_endpoint=host + diffgram.OAUTH2_USERINFO_PATH,
        )

    # --- the command line -------------------------------------------------------------------------

    def command_fields(self, location: str, options: Options) -> dict[str, str]:
        match = ISSUER.match(location)
        region = options.get("region") or (match["region"] if match else "")
        pool = options.get("user_pool_id") or (match["pool"] if match else "")
        if not (region and pool):
            raise ValueError(
                "For a Cognito provider, give the issuer "
                "https://cognito-idp.<region>.amazonaws.com/<user-pool-id> (or --region and "
                "--user-pool-id)"
            )
        return {
            "aws_region": region,
            "user_pool_id": pool,
            "cognito_domain": options.get("domain") or "",
            "scopes": options.get("scopes") or self.default_scopes,
            "diffgram_url_base": options.get("url_base") or "",
        }


COGNITO = CognitoKind()


class CognitoProviderForm(ProviderForm):
    kind = COGNITO
    destination_fields = ("aws_region", "user_pool_id", "cognito_domain")
    required_fields = ("aws_region", "user_pool_id")

    class Meta:
        model = Provider
        fields = [
            "name", "aws_region", "user_pool_id", "client_id", "cognito_domain", "scopes",
            "diffgram_url_base", "aws_role_arn",
        ]  # fmt: skip
        labels = {"client_id": "App client id"}
        help_texts = {
            "aws_region": "The user pool's region, e.g. eu-west-1.",
            "user_pool_id": "Cognito → User pools → your pool, e.g. eu-west-1_AbC123xyz. "
            "The issuer is computed from region and pool.",
            "client_id": "The pool's app client for Diffgram (App integration → App clients).",
            "cognito_domain": "The hosted-UI domain, e.g. https://my-prefix.auth.eu-west-1."
            "amazoncognito.com, or your custom domain. Read from discovery when blank.",
            "scopes": "Space-separated; must include openid and email. Enable the same scopes "
            "on the app client.",
        }

    def clean_aws_region(self) -> str:
        region: str = self.cleaned_data["aws_region"].strip()
        if not AWS_REGION.match(region):
            raise ValidationError("Enter an AWS region such as eu-west-1.")
        return region

    def clean_user_pool_id(self) -> str:
        pool: str = self.cleaned_data["user_pool_id"].strip()
        if not USER_POOL_ID.match(pool):
            raise ValidationError("A user pool id looks like eu-west-1_AbC123xyz.")
        return pool

    def clean_cognito_domain(self) -> str:
        domain: str = self.cleaned_data.get("cognito_domain", "").strip().rstrip("/")
        if domain and "://" not in domain:
            domain = "https://" + domain
        return http_url(domain, "hosted-UI domain") if domain else domain

    def clean_aws_role_arn(self) -> str:
        arn: str = self.cleaned_data.get("aws_role_arn", "").strip()
        if arn and not ROLE_ARN.match(arn):
            raise ValidationError("Enter a role ARN such as arn:aws:iam::123456789012:role/sso.")
        return arn

    def clean_scopes(self) -> str:
        scopes: list[str] = self.cleaned_data["scopes"].split()
        missing = [scope for scope in ("openid", "email") if scope not in scopes]
        if missing:
            raise ValidationError(
                ngettext(
                    "Diffgram needs the scope %s.", "Diffgram needs the scopes %s.", len(missing)
                )
                % " and ".join(missing)
            )
        return " ".join(scopes)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        region, pool = cleaned.get("aws_region"), cleaned.get("user_pool_id")
        if region and pool and not pool.startswith(region + "_"):
            self.add_error("user_pool_id", f"This pool id is not in region {region}.")
        return cleaned


class ProvisionCognitoForm(CognitoProviderForm):
    """Diffgram's Cognito guide, steps 1 to 3 in one: create the app client (public, with what
    Diffgram needs) in an existing pool, and a hosted-UI domain when the pool has none
    (console/cognito_provisioning.py)."""

    secret_names = ()  # a public client: what works with Diffgram end to end
    client_name = forms.CharField(
        label="App client name", initial="diffgram", max_length=128,
        help_text="The name the new app client gets in the pool.",
    )  # fmt: skip
    url_bases = forms.CharField(
        label="Diffgram URL_BASEs",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, each ending with /: their callback and sign-out URLs are "
        "registered on the client. Instances added later are added with Fix in AWS.",
    )
    domain_prefix = forms.CharField(
        required=False,
        max_length=63,
        help_text="Only if the pool has no hosted-UI domain yet: the prefix of the one to "
        "create, https://<prefix>.auth.<region>.amazoncognito.com.",
    )

    class Meta(CognitoProviderForm.Meta):
        fields = ["name", "aws_region", "user_pool_id", "aws_role_arn"]

    def clean_url_bases(self) -> list[str]:
        bases = [diffgram_url_base(line) for line in self.cleaned_data["url_bases"].split()]
        if not bases:
            raise ValidationError("Give at least one Diffgram URL_BASE.")
        return list(dict.fromkeys(bases))

    def clean_domain_prefix(self) -> str:
        prefix: str = self.cleaned_data.get("domain_prefix", "").strip()
        if prefix and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", prefix):
            raise ValidationError("Lower-case letters, digits and hyphens, e.g. diffgram-lab.")
        if any(word in prefix for word in ("aws", "amazon", "cognito")):
            raise ValidationError("Cognito refuses prefixes containing aws, amazon or cognito.")
        return prefix
