from datetime import UTC, datetime, time, timedelta

from django import forms

from console.models import AuditEvent


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
