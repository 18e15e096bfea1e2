import re
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import ngettext

from console import outbound
from console.diffgram import INSTANCE_PLACEHOLDER
from console.models import AuditEvent, Instance, Provider


class HistoryFilterForm(forms.Form):
    """The History page's filters; every one lives in the URL so a view can be shared."""

    actor = forms.CharField(required=False, max_length=150, help_text="Exact username or instance")
    action = forms.ChoiceField(
        required=False, choices=[("", "any action"), *AuditEvent.Action.choices]
    )
    target_type = forms.ChoiceField(
        required=False, choices=[("", "any target"), *AuditEvent.TargetType.choices]
    )
    target_id = forms.CharField(required=False, max_length=64)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(required=False, max_length=100, label="Target name contains")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("target_id") and not cleaned.get("target_type"):
            self.add_error("target_id", "Choose a target type to filter by target id.")
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def filter(self, events):
        """Apply the (valid) filters to a queryset of events."""
        data = self.cleaned_data
        if data.get("actor"):
            events = events.filter(actor_label=data["actor"])
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("target_type"):
            events = events.filter(target_type=data["target_type"])
        if data.get("target_id"):
            events = events.filter(target_id=data["target_id"])
        if data.get("date_from"):
            events = events.filter(created_at__gte=_start_of_day(data["date_from"]))
        if data.get("date_to"):
            events = events.filter(created_at__lt=_start_of_day(data["date_to"] + timedelta(1)))
        if data.get("q"):
            events = events.filter(target_label__icontains=data["q"])
        return events

    def active_filters(self):
        return {name: str(value) for name, value in self.cleaned_data.items() if value}


def _start_of_day(day):
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- identity providers -------------------------------------------------------------------------

AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
USER_POOL_ID = re.compile(r"^(?P<region>[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2})_[0-9A-Za-z]+$")
SECRET_LABELS = {
    "client_secret": "Client secret",
    "private_key": "Private key",
    "keycloak_master_password": "Master admin password",
    "keycloak_diffgram_password": "Diffgram admin password",
}


def http_url(value, what):
    """An http(s) URL with a host and nothing after the path, or a field error."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"Enter the {what} as a full URL starting with https://")
    if parts.query or parts.fragment or parts.username:
        raise ValidationError(f"The {what} must not contain a query, fragment or credentials.")
    if problem := outbound.numeric_host_problem(parts.hostname):
        raise ValidationError(problem)
    return value


class WriteOnlySecretsForm(forms.ModelForm):
    """A model form whose secrets (`secret_names`, on a model with WriteOnlySecrets) are
    write-only: never rendered with their value; the edit form says whether one is set;
    leaving it blank keeps the stored value, ticking "clear" removes it."""

    secret_names = ()
    secret_help = {}
    secret_after = {}  # {field: (secrets shown right after it)}
    secret_widgets = {}  # {secret: widget}, a password input by default

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        editing = not self.instance._state.adding
        for name in self.secret_names:
            is_set = editing and self.instance.has_secret(name)
            self.fields[name] = forms.CharField(
                label=SECRET_LABELS[name],
                required=False,
                strip=False,
                widget=self.secret_widgets.get(name)
                or forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                help_text=(
                    ("Currently set. Leave blank to keep it." if is_set else "Currently not set.")
                    if editing
                    else self.secret_help.get(name, "")
                ),
            )
            if is_set:
                self.fields[f"clear_{name}"] = forms.BooleanField(
                    label=f"Clear the stored {SECRET_LABELS[name].lower()}", required=False
                )
        self.order_fields(self._ordered_with_secrets())

    def _ordered_with_secrets(self):
        """The Meta fields with each secret (and its clear box) after the field it belongs to."""
        order = []
        for name in self._meta.fields:
            order.append(name)
            for secret in self.secret_after.get(name, ()):
                order += [secret, f"clear_{secret}"]
        return order

    def clean(self):
        cleaned = super().clean()
        for name in self.secret_names:
            if cleaned.get(name) and cleaned.get(f"clear_{name}"):
                self.add_error(name, "Either enter a new value or clear it, not both.")
        return cleaned

    def secret_updates(self):
        """{name: new value, or "" to clear} for the secrets this submission changes."""
        updates = {}
        for name in self.secret_names:
            if self.cleaned_data.get(f"clear_{name}"):
                updates[name] = ""
            elif self.cleaned_data.get(name):
                updates[name] = self.cleaned_data[name]
        return updates

    def save(self, commit=True):
        saved = super().save(commit=False)
        for name, value in self.secret_updates().items():
            saved.set_secret(name, value)
        if commit:
            saved.save()
        return saved


class ProviderForm(WriteOnlySecretsForm):
    """Common to every kind: write-only secrets and optimistic concurrency.

    A stored secret never follows the provider to another host: changing where secrets are
    sent (`destination_fields`) requires every stored secret again, or clearing it."""

    kind = None
    secret_names = ("client_secret",)
    secret_after = {"client_id": ("client_secret",)}
    secret_help = {"client_secret": "Leave blank for a public client (no secret)."}
    destination_fields = ()
    required_fields = ()  # needed for this kind, though optional in the model
    revision = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, **kwargs):
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

    def destination_changed(self):
        """The fields naming where secrets go that this (valid) submission changes."""
        return [
            name
            for name, before in self.stored_destination.items()
            if self.cleaned_data.get(name, before) != before
        ]

    def clean(self):
        cleaned = super().clean()
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

    def save(self, commit=True):
        provider = super().save(commit=False)
        provider.kind = self.kind
        provider.issuer = provider.computed_issuer()
        if commit:
            provider.save()
        return provider

    def clean_diffgram_url_base(self):
        value = self.cleaned_data.get("diffgram_url_base", "").strip()
        return http_url(value, "Diffgram URL_BASE") if value else value

    def clean_client_id(self):
        client_id = self.cleaned_data["client_id"].strip()
        if INSTANCE_PLACEHOLDER in client_id:
            raise ValidationError(
                f"Only a Keycloak client id can contain {INSTANCE_PLACEHOLDER}: this provider "
                "issued one client id, which every instance uses."
            )
        return client_id


class CognitoProviderForm(ProviderForm):
    kind = Provider.Kind.COGNITO
    destination_fields = ("aws_region", "user_pool_id", "cognito_domain")
    required_fields = ("aws_region", "user_pool_id")

    class Meta:
        model = Provider
        fields = list(Provider.EDITABLE_FIELDS[Provider.Kind.COGNITO])
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

    def clean_aws_region(self):
        region = self.cleaned_data["aws_region"].strip()
        if not AWS_REGION.match(region):
            raise ValidationError("Enter an AWS region such as eu-west-1.")
        return region

    def clean_user_pool_id(self):
        pool = self.cleaned_data["user_pool_id"].strip()
        if not USER_POOL_ID.match(pool):
            raise ValidationError("A user pool id looks like eu-west-1_AbC123xyz.")
        return pool

    def clean_cognito_domain(self):
        domain = self.cleaned_data.get("cognito_domain", "").strip().rstrip("/")
        if domain and "://" not in domain:
            domain = "https://" + domain
        return http_url(domain, "hosted-UI domain") if domain else domain

    def clean_aws_role_arn(self):
        arn = self.cleaned_data.get("aws_role_arn", "").strip()
        if arn and not re.match(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$", arn):
            raise ValidationError("Enter a role ARN such as arn:aws:iam::123456789012:role/sso.")
        return arn

    def clean_scopes(self):
        scopes = self.cleaned_data["scopes"].split()
        missing = [scope for scope in ("openid", "email") if scope not in scopes]
        if missing:
            raise ValidationError(
                ngettext(
                    "Diffgram needs the scope %s.", "Diffgram needs the scopes %s.", len(missing)
                )
                % " and ".join(missing)
            )
        return " ".join(scopes)

    def clean(self):
        cleaned = super().clean()
        region, pool = cleaned.get("aws_region"), cleaned.get("user_pool_id")
        if region and pool and not pool.startswith(region + "_"):
            self.add_error("user_pool_id", f"This pool id is not in region {region}.")
        return cleaned


class KeycloakProviderForm(ProviderForm):
    """Diffgram sets its Keycloak client up itself at every start (docs/DIFFGRAM.md): it logs in
    to the master realm, creates the realm, its client (with the id given here) and a realm
    user, and reads the client's secret from Keycloak. So there is no client secret to enter."""

    kind = Provider.Kind.KEYCLOAK
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
        fields = list(Provider.EDITABLE_FIELDS[Provider.Kind.KEYCLOAK])
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

    def clean_keycloak_server_url(self):
        return http_url(self.cleaned_data["keycloak_server_url"].strip(), "Keycloak server URL")

    def clean_keycloak_realm(self):
        realm = self.cleaned_data["keycloak_realm"].strip()
        if not realm or "/" in realm:
            raise ValidationError("Enter the realm name (no slashes).")
        return realm

    def clean_client_id(self):
        client_id = self.cleaned_data["client_id"].strip()
        rest = client_id.replace(INSTANCE_PLACEHOLDER, "")
        if "{" in rest or "}" in rest:
            raise ValidationError(
                f"The only placeholder a client id can hold is {INSTANCE_PLACEHOLDER} "
                "(each instance's name)."
            )
        return client_id


class OIDCProviderForm(ProviderForm):
    kind = Provider.Kind.OIDC
    destination_fields = ("issuer",)
    required_fields = ("issuer",)

    class Meta:
        model = Provider
        fields = list(Provider.EDITABLE_FIELDS[Provider.Kind.OIDC])
        labels = {"issuer": "Issuer URL"}
        help_texts = {
            "issuer": "Okta: https://<org>.okta.com/oauth2/default · Entra ID: "
            "https://login.microsoftonline.com/<tenant>/v2.0 · Google: "
            "https://accounts.google.com · Auth0: https://<tenant>.auth0.com/",
            "scopes": "Space-separated, e.g. openid email profile groups.",
        }

    def clean_issuer(self):
        return http_url(self.cleaned_data["issuer"].strip(), "issuer")

    def clean_scopes(self):
        scopes = self.cleaned_data["scopes"].split()
        if "openid" not in scopes:
            raise ValidationError("OpenID Connect needs the openid scope.")
        return " ".join(scopes)


class ProvisionCognitoForm(CognitoProviderForm):
    """Diffgram's Cognito guide, steps 1 to 3 in one: create the app client (public, with what
    Diffgram needs) in an existing pool, and a hosted-UI domain when the pool has none
    (console/cognito.py, provision)."""

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

    def clean_url_bases(self):
        bases = []
        for line in self.cleaned_data["url_bases"].split():
            base = http_url(line, "URL_BASE")
            if not base.endswith("/"):
                raise ValidationError(f"End each URL_BASE with / (e.g. {base}/).")
            bases.append(base)
        if not bases:
            raise ValidationError("Give at least one Diffgram URL_BASE.")
        return list(dict.fromkeys(bases))

    def clean_domain_prefix(self):
        prefix = self.cleaned_data.get("domain_prefix", "").strip()
        if prefix and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", prefix):
            raise ValidationError("Lower-case letters, digits and hyphens, e.g. diffgram-lab.")
        if any(word in prefix for word in ("aws", "amazon", "cognito")):
            raise ValidationError("Cognito refuses prefixes containing aws, amazon or cognito.")
        return prefix


def model_form_fields(form_class) -> list[str]:
    """The model fields a ModelForm class edits (its Meta.fields), in their order."""
    return list(form_class.Meta.fields)


FORMS_BY_KIND: dict[str, type[ProviderForm]] = {
    Provider.Kind.COGNITO: CognitoProviderForm,
    Provider.Kind.KEYCLOAK: KeycloakProviderForm,
    Provider.Kind.OIDC: OIDCProviderForm,
}


# --- Diffgram instances ---------------------------------------------------------------------------


class InstanceForm(forms.ModelForm):
    class Meta:
        model = Instance
        fields = [
            "name", "url_base", "shape", "rollout_group", "provider", "push_target",
            "webhook_url", "webhook_allow_http", "ssm_region", "ssm_prefix", "console_verifies",
            "signin_runner",
        ]  # fmt: skip
        help_texts = {
            "provider": "The identity provider whose published versions this instance runs "
            "(Cognito or Keycloak).",
            "push_target": "Pull only: the agent polls. Webhook: the console POSTs each version "
            "to the agent (signed). SSM: the console writes parameters under the prefix.",
            "webhook_url": "Where the agent's `serve` listens, e.g. https://diffgram-host:8765/.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider"].queryset = Provider.objects.filter(
            kind__in=[Provider.Kind.COGNITO, Provider.Kind.KEYCLOAK]
        )
        # Left out (configuration files and API clients older than it), the default holds.
        self.fields["signin_runner"].required = False

    def clean_signin_runner(self):
        return self.cleaned_data.get("signin_runner") or Instance.SigninRunner.CONSOLE

    def clean_url_base(self):
        value = http_url(self.cleaned_data["url_base"].strip(), "URL_BASE")
        if not value.endswith("/"):
            raise ValidationError(
                f"End URL_BASE with / — Diffgram concatenates paths to it (e.g. {value}/)."
            )
        return value

    def clean(self):
        cleaned = super().clean()
        self._refuse_a_shared_keycloak_client(cleaned.get("provider"))
        target = cleaned.get("push_target")
        if target == Instance.PushTarget.WEBHOOK:
            url = cleaned.get("webhook_url", "").strip()
            if not url:
                self.add_error("webhook_url", "Enter the agent's webhook URL.")
            else:
                try:
                    cleaned["webhook_url"] = http_url(url, "webhook URL")
                    problem = outbound.webhook_url_problem(
                        cleaned["webhook_url"], allow_http=cleaned.get("webhook_allow_http")
                    )
                    if problem:
                        raise ValidationError(problem)
                except ValidationError as error:
                    self.add_error("webhook_url", error)
        if target == Instance.PushTarget.SSM:
            region = cleaned.get("ssm_region", "").strip()
            if not AWS_REGION.match(region):
                self.add_error(
                    "ssm_region", "Enter the AWS region of the parameters, e.g. eu-west-1."
                )
            prefix = cleaned.get("ssm_prefix", "").strip()
            if prefix and not prefix.startswith("/"):
                self.add_error("ssm_prefix", "SSM parameter paths start with /.")
        return cleaned

    def _refuse_a_shared_keycloak_client(self, provider):
        """Diffgram overwrites its Keycloak client's redirect URIs at every start: a second
        instance on the same client id would break the first one's sign-in."""
        if provider is None or provider.kind != Provider.Kind.KEYCLOAK:
            return
        if INSTANCE_PLACEHOLDER in provider.client_id:
            return
        other = provider.instances.exclude(pk=self.instance.pk).first()
        if other is not None:
            self.add_error(
                "provider",
                f"{provider} gives every instance the Keycloak client id {provider.client_id!r}, "
                f"which {other} already uses. Diffgram replaces that client's redirect URIs at "
                "every start, so two instances would break each other's sign-in. Put "
                f"{INSTANCE_PLACEHOLDER} in {provider}'s client id first (e.g. "
                f"{provider.client_id}-{INSTANCE_PLACEHOLDER}).",
            )


class PublishForm(forms.Form):
    group = forms.ChoiceField(required=False, label="Publish to")
    note = forms.CharField(required=False, max_length=500, label="Why (shown in the history)")
    auto_halt = forms.BooleanField(
        required=False,
        label="Halt by itself",
        help_text="Stop after the first group if one of its instances fails to apply or "
        "verify the version, or has not verified it in time.",
    )
    auto_rollback = forms.BooleanField(
        required=False,
        label="and roll the group back",
        help_text="When it halts, publish the previous version to the first group again.",
    )

    def clean(self):
        cleaned = super().clean()
        if (cleaned.get("auto_halt") or cleaned.get("auto_rollback")) and not cleaned.get("group"):
            self.add_error("group", "Halting by itself needs a first group to watch.")
        return cleaned

    def __init__(self, *args, provider, **kwargs):
        super().__init__(*args, **kwargs)
        groups = sorted(set(provider.instances.values_list("rollout_group", flat=True)))
        self.fields["group"].choices = [("", "every instance")] + [
            (group, f"group {group} first") for group in groups
        ]
