import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from console import outbound
from console.models import AuditEvent, Provider


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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("target_id") and not cleaned.get("target_type"):
            self.add_error("target_id", "Choose a target type to filter by target id.")
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
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

    def active_filters(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.cleaned_data.items() if value}


def _start_of_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- what the model forms share -------------------------------------------------------------------

AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d{1,2}$")
SECRET_LABELS = {
    "client_secret": "Client secret",
    "private_key": "Private key",
    "keycloak_master_password": "Master admin password",
    "keycloak_diffgram_password": "Diffgram admin password",
}


def http_url(value: str, what: str) -> str:
    """An http(s) URL with a host and nothing after the path, or a field error."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"Enter the {what} as a full URL starting with https://")
    if parts.query or parts.fragment or parts.username:
        raise ValidationError(f"The {what} must not contain a query, fragment or credentials.")
    if problem := outbound.numeric_host_problem(parts.hostname):
        raise ValidationError(problem)
    return value


def diffgram_url_base(value: str, what: str = "URL_BASE") -> str:
    """A Diffgram URL_BASE: an http(s) URL ending with "/", or a field error. Refused rather
    than fixed: the same value sits in Diffgram's own .env, and Diffgram appends its paths to it
    (Keycloak's callback without inserting a "/": docs/DIFFGRAM.md)."""
    value = http_url(value.strip(), what)
    if not value.endswith("/"):
        raise ValidationError(
            f"End {what} with / — Diffgram appends its paths to it (e.g. {value}/)."
        )
    return value


class WriteOnlySecretsForm(forms.ModelForm):
    """A model form whose secrets (`secret_names`, on a model with WriteOnlySecrets) are
    write-only: never rendered with their value; the edit form says whether one is set;
    leaving it blank keeps the stored value, ticking "clear" removes it."""

    secret_names: tuple[str, ...] = ()
    secret_help: dict[str, str] = {}
    secret_after: dict[str, tuple[str, ...]] = {}  # {field: (secrets shown right after it)}
    secret_widgets: dict[str, forms.Widget] = {}  # {secret: widget}, a password input by default

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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

    def _ordered_with_secrets(self) -> list[str]:
        """The Meta fields with each secret (and its clear box) after the field it belongs to."""
        order: list[str] = []
        for name in self._meta.fields or ():
            order.append(name)
            for secret in self.secret_after.get(name, ()):
                order += [secret, f"clear_{secret}"]
        return order

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in self.secret_names:
            if cleaned.get(name) and cleaned.get(f"clear_{name}"):
                self.add_error(name, "Either enter a new value or clear it, not both.")
        return cleaned

    def secret_updates(self) -> dict[str, str]:
        """{name: new value, or "" to clear} for the secrets this submission changes."""
        updates: dict[str, str] = {}
        for name in self.secret_names:
            if self.cleaned_data.get(f"clear_{name}"):
                updates[name] = ""
            elif self.cleaned_data.get(name):
                updates[name] = self.cleaned_data[name]
        return updates

    def save(self, commit: bool = True) -> Any:
        saved = super().save(commit=False)
        for name, value in self.secret_updates().items():
            saved.set_secret(name, value)
        if commit:
            saved.save()
        return saved


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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (cleaned.get("auto_halt") or cleaned.get("auto_rollback")) and not cleaned.get("group"):
            self.add_error("group", "Halting by itself needs a first group to watch.")
        return cleaned

    def __init__(self, *args: Any, provider: Provider, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        groups = sorted(set(provider.instances.values_list("rollout_group", flat=True)))
        group_field = self.fields["group"]
        assert isinstance(group_field, forms.ChoiceField)
        group_field.choices = [("", "every instance")] + [
            (group, f"group {group} first") for group in groups
        ]


class SearchForm(forms.Form):
    """A list's search box (GET, so the URL can be shared), searched by the database: a row
    matches when any of `fields` holds the words, case aside. A field across a relation
    ("groups__name") is searched with a subquery, so a row is listed once."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        strip=True,
        widget=forms.TextInput(attrs={"type": "search"}),
    )

    def __init__(self, data: Any, *, fields: tuple[str, ...], help_text: str) -> None:
        super().__init__(data)
        self.search_fields = fields
        self.fields["q"].help_text = help_text

    @property
    def term(self) -> str:
        return self.cleaned_data["q"] if self.is_valid() else ""

    def search(self, queryset: QuerySet) -> QuerySet:
        if not self.term:
            return queryset
        matches = Q()
        for field in self.search_fields:
            lookup = Q(**{f"{field}__icontains": self.term})
            if "__" in field:  # across a relation: one row per match, so by subquery
                lookup = Q(pk__in=queryset.model.objects.filter(lookup).values("pk"))
            matches |= lookup
        return queryset.filter(matches)
