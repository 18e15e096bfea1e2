"""The form for one identity provider federated into a Cognito pool, used by the Inspect page,
`manage.py federate` and the JSON API alike. The fields Cognito requires depend on the type
(ProviderDetails per ProviderType, docs/COGNITO.md)."""

import re

from django import forms
from django.core.exceptions import ValidationError

from console import kinds
from console.forms import WriteOnlySecretsForm, http_url
from console.models import FederatedIdentityProvider, Provider

Type = FederatedIdentityProvider.Type

# How the command line and the API name the types.
TYPES_BY_SHORT_NAME = {
    "oidc": Type.OIDC,
    "google": Type.GOOGLE,
    "facebook": Type.FACEBOOK,
    "amazon": Type.AMAZON,
    "apple": Type.APPLE,
    "saml": Type.SAML,
}
SHORT_NAMES = {value: key for key, value in TYPES_BY_SHORT_NAME.items()}
# Social providers have one fixed name in a pool: the type itself.
NAMED_BY_TYPE = (Type.GOOGLE, Type.FACEBOOK, Type.AMAZON, Type.APPLE)
FIELDS_BY_TYPE = {
    Type.OIDC: ["name", "upstream", "client_id", "authorize_scopes", "attributes_request_method"],
    Type.GOOGLE: ["client_id", "authorize_scopes"],
    Type.FACEBOOK: ["client_id", "authorize_scopes", "api_version"],
    Type.AMAZON: ["client_id", "authorize_scopes"],
    Type.APPLE: ["client_id", "team_id", "key_id", "authorize_scopes"],
    Type.SAML: ["name", "metadata_url", "email_attribute"],
}
SECRETS_BY_TYPE = {
    Type.OIDC: ("client_secret",),
    Type.GOOGLE: ("client_secret",),
    Type.FACEBOOK: ("client_secret",),
    Type.AMAZON: ("client_secret",),
    Type.APPLE: ("private_key",),
    Type.SAML: (),
}
DEFAULT_SCOPES = {
    Type.OIDC: "openid email profile",
    Type.GOOGLE: "openid email profile",
    Type.FACEBOOK: "public_profile,email",
    Type.AMAZON: "profile",
    Type.APPLE: "email name",
}
SAML_EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
NAME = re.compile(r"^[\w.-]{1,32}$")
RESERVED_NAMES = {"COGNITO", *NAMED_BY_TYPE}
MAX_METADATA_BYTES = 512 * 1024


def data_for(record, **given):
    """Form data for a FederationForm: the record's stored values when changing one (secrets
    stay as stored unless given), overlaid with every value given that is not empty."""
    data = {}
    if record is not None:
        data = {field: getattr(record, field) for field in FederationForm.Meta.fields}
        data["upstream"] = record.upstream_id
    data.update({name: value for name, value in given.items() if value not in ("", None)})
    return data


def name_for(upstream_name):
    """A Cognito identity-provider name derived from a stored provider's name."""
    return re.sub(r"[^\w.-]+", "-", upstream_name).strip("-_")[:32] or "OIDC"


def name_in_pool(kind, name="", upstream=None):
    """The name an identity provider of this type gets in the pool: fixed for social
    providers, else the one given, else (OIDC) derived from the stored provider."""
    if kind in NAMED_BY_TYPE:
        return kind.value
    if not name and upstream is not None:
        return name_for(upstream.name)
    return name


class FederationForm(WriteOnlySecretsForm):
    """Create (no instance) or change (instance) one federated identity provider of `cognito`.
    `before` holds the audited values as they were, read before validation changes them."""

    metadata_upload = forms.FileField(required=False, label="or SAML metadata XML file")
    enabled = forms.BooleanField(
        required=False, initial=True, label="Enable it on the Diffgram app client"
    )

    secret_after = {"client_id": ("client_secret",), "key_id": ("private_key",)}
    secret_widgets = {
        "private_key": forms.Textarea(attrs={"autocomplete": "off", "rows": 4, "cols": 64})
    }

    class Meta:
        model = FederatedIdentityProvider
        fields = [
            "name", "upstream", "client_id", "team_id", "key_id", "authorize_scopes",
            "attributes_request_method", "api_version", "metadata_url", "email_attribute",
        ]  # fmt: skip
        labels = {
            "name": "Name",
            "upstream": "Stored provider",
            "client_id": "Client id",
            "authorize_scopes": "Scopes",
            "attributes_request_method": "Attributes request method",
        }
        help_texts = {
            "name": "As users see it on Cognito's hosted UI (letters, digits, . - _; up to 32).",
            "authorize_scopes": "The scopes Cognito asks the provider for.",
        }

    def __init__(self, *args, idp_type, cognito, **kwargs):
        self.idp_type = Type(idp_type)
        self.cognito = cognito
        self.secret_names = SECRETS_BY_TYPE[self.idp_type]
        super().__init__(*args, **kwargs)
        self.editing = not self.instance._state.adding
        self.before = self.instance.audit_fields() if self.editing else {}
        keep = {*FIELDS_BY_TYPE[self.idp_type], *self.secret_names, "enabled"}
        if self.idp_type == Type.SAML:
            keep.add("metadata_upload")
        for name in list(self.fields):
            if name not in keep:
                del self.fields[name]  # also the "clear" boxes: Cognito needs every secret
        if self.editing and "name" in self.fields:
            self.fields["name"].disabled = True  # another name is another identity provider
        self._explain_fields()

    def _explain_fields(self):
        fields = self.fields
        if "authorize_scopes" in fields:
            fields["authorize_scopes"].initial = DEFAULT_SCOPES[self.idp_type]
            fields[
                "authorize_scopes"
            ].help_text = (
                f"Default: {DEFAULT_SCOPES[self.idp_type]}. Cognito asks the provider for these."
            )
        if self.idp_type == Type.OIDC:
            fields["upstream"].queryset = Provider.objects.filter(
                kind__in=kinds.slugs_where("federates_into_cognito")
            )
            fields["upstream"].required = True
            fields["attributes_request_method"].required = False  # GET unless said otherwise
            fields["upstream"].help_text = (
                "A generic OIDC or Keycloak provider stored here: its issuer is validated with "
                "the console's discovery checks before Cognito is told about it."
            )
            fields["name"].required = False
            fields["name"].help_text += " Default: the stored provider's name."
            fields["client_id"].help_text = (
                "Cognito's client at that provider, made for Cognito (for Keycloak: by you, in "
                "the realm; not Diffgram's client). Leave blank to use the stored provider's "
                "client id and secret, when it holds them."
            )
        if self.idp_type == Type.SAML:
            fields["email_attribute"].initial = SAML_EMAIL
            fields["email_attribute"].help_text = "The SAML attribute that carries the email."
            fields["metadata_url"].help_text = "Your SAML provider's federation metadata URL."

    def clean_name(self):
        name = self.cleaned_data.get("name", "").strip()
        if not name:
            return name  # OIDC: derived from the stored provider in clean()
        if not NAME.match(name) or name in RESERVED_NAMES:
            raise ValidationError(
                "Use up to 32 letters, digits, . - or _ (and not COGNITO or a social "
                "provider's name)."
            )
        return name

    def clean_metadata_url(self):
        url = self.cleaned_data.get("metadata_url", "").strip()
        return http_url(url, "metadata URL") if url else url

    def clean(self):
        cleaned = super().clean()
        kind = self.idp_type
        if kind in NAMED_BY_TYPE:
            cleaned["name"] = kind.value
        if kind == Type.OIDC:
            self._clean_oidc(cleaned)
        if kind == Type.SAML:
            self._clean_saml(cleaned)
        if kind in (Type.GOOGLE, Type.FACEBOOK, Type.AMAZON, Type.APPLE):
            if not cleaned.get("client_id"):
                self.add_error("client_id", f"{kind.label} needs the client id of your app.")
            for secret in self.secret_names:
                if not cleaned.get(secret) and not self.instance.has_secret(secret):
                    self.add_error(secret, f"{kind.label} needs it.")
        if kind == Type.APPLE:
            for name in ("team_id", "key_id"):
                if not re.fullmatch(r"[A-Z0-9]{10}", cleaned.get(name, "")):
                    self.add_error(name, "Ten letters and digits, as in Apple's developer account.")
            key = cleaned.get("private_key", "")
            if key and "PRIVATE KEY-----" not in key:
                self.add_error("private_key", "Paste the .p8 key file as it is (PEM).")
        if "authorize_scopes" in self.fields and not cleaned.get("authorize_scopes"):
            cleaned["authorize_scopes"] = DEFAULT_SCOPES[kind]
        if kind == Type.OIDC and not cleaned.get("attributes_request_method"):
            cleaned["attributes_request_method"] = "GET"
        if kind == Type.OIDC and "openid" not in cleaned.get("authorize_scopes", "").split():
            self.add_error("authorize_scopes", "An OIDC provider needs the openid scope.")
        self._clean_unique_name(cleaned.get("name"))
        return cleaned

    def _clean_oidc(self, cleaned):
        upstream = cleaned.get("upstream")
        if upstream is None:
            return
        cleaned["name"] = name_in_pool(Type.OIDC, cleaned.get("name"), upstream)
        typed = cleaned.get("client_secret")
        stored = self.instance.has_secret("client_secret") and not self.secret_moved(upstream)
        if cleaned.get("client_id"):
            if typed or stored:
                return
            if self.instance.has_secret("client_secret"):
                self.add_error("client_secret", (
                    f"The stored secret was given for the client at "
                    f"{self.instance.secret_issuer or 'another provider'}; {upstream} is at "
                    f"{upstream.issuer}. A secret never follows to another issuer: "
                    "enter the secret of the client Cognito uses there."
                ))  # fmt: skip
            else:
                self.add_error("client_secret", "Enter the secret of that client too.")
        elif not upstream.has_secret("client_secret") or "{" in upstream.client_id:
            message = (
                f"Cognito needs a client id and secret at {upstream}, and {upstream} holds no "
                "secret: enter the client Cognito should use there."
            )
            hint = kinds.of(upstream).client_for_cognito_hint
            if hint:
                message += " " + hint.format(client_id=upstream.client_id)
            self.add_error("client_id", message)

    def secret_moved(self, upstream) -> bool:
        """Whether the stored client secret would now go to another place than the one it was
        given for: another stored provider, or the same one at another issuer."""
        if not self.editing:
            return False
        record = self.instance
        return upstream.pk != record.upstream_id or (record.secret_issuer != upstream.issuer)

    def _clean_saml(self, cleaned):
        upload = cleaned.get("metadata_upload")
        if cleaned.get("metadata_url") and upload:
            self.add_error("metadata_url", "Give either a metadata URL or a metadata file.")
        elif upload:
            if upload.size > MAX_METADATA_BYTES:
                self.add_error("metadata_upload", "The metadata file is larger than 512 KiB.")
            else:
                cleaned["metadata_xml"] = upload.read().decode("utf-8", "replace")
        elif not cleaned.get("metadata_url") and not self.instance.metadata_file:
            self.add_error("metadata_url", "Give a metadata URL or a metadata file.")
        if not cleaned.get("email_attribute"):
            self.add_error("email_attribute", "Name the attribute that carries the email.")

    def _clean_unique_name(self, name):
        if not name:
            return
        taken = FederatedIdentityProvider.objects.filter(cognito=self.cognito, name=name)
        if self.editing:
            taken = taken.exclude(pk=self.instance.pk)
        if taken.exists():
            self.add_error(
                "name" if "name" in self.fields else None,
                f"{name} is already federated into {self.cognito}: change that one instead.",
            )

    def save(self, commit=True):
        record = super().save(commit=False)
        record.cognito = self.cognito
        record.type = self.idp_type
        record.name = self.cleaned_data["name"]
        if self.idp_type == Type.OIDC and self.cleaned_data.get("client_secret"):
            record.secret_issuer = record.upstream.issuer
        if "metadata_xml" in self.cleaned_data:
            record.metadata_file, record.metadata_url = self.cleaned_data["metadata_xml"], ""
        elif record.metadata_url:
            record.metadata_file = ""
        if commit:
            record.save()
        return record
