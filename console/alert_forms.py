"""The form for alert destinations (the alerts page)."""

from django import forms
from django.core.validators import validate_email

from console import outbound
from console.models import AlertDestination, AlertEvent

CHOOSABLE_EVENTS = [(e.value, e.label) for e in AlertEvent if e != AlertEvent.TEST]


class AlertDestinationForm(forms.ModelForm):
    webhook_url = forms.URLField(
        required=False, max_length=500, assume_scheme="https", label="Webhook URL"
    )
    events = forms.MultipleChoiceField(
        choices=CHOOSABLE_EVENTS,
        widget=forms.CheckboxSelectMultiple,
        help_text="The same condition is sent at most once an hour; repeats are counted.",
    )
    webhook_secret = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        label="Webhook signing secret",
        help_text="Each POST is signed with it as pushes to agents are "
        "(X-Diffgram-SSO-Timestamp, X-Diffgram-SSO-Signature). Stored encrypted, never shown; "
        "leave empty to keep the current one. Slack ignores the signature.",
    )

    field_order = ["name", "kind", "email_to", "webhook_url", "webhook_secret", "events", "enabled"]

    class Meta:
        model = AlertDestination
        fields = ["name", "kind", "email_to", "webhook_url", "events", "enabled"]

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind == AlertDestination.Kind.EMAIL:
            addresses = [a.strip() for a in cleaned.get("email_to", "").split(",") if a.strip()]
            if not addresses:
                self.add_error("email_to", "An email destination needs at least one address.")
            for address in addresses:
                try:
                    validate_email(address)
                except forms.ValidationError:
                    self.add_error("email_to", f"{address!r} is not an email address.")
            cleaned["email_to"] = ", ".join(addresses)
            cleaned["webhook_url"] = ""
        elif kind == AlertDestination.Kind.WEBHOOK:
            url = cleaned.get("webhook_url", "")
            if not url:
                self.add_error("webhook_url", "A webhook destination needs its URL.")
            elif problem := outbound.webhook_url_problem(url, allow_http=False):
                # Alerts name providers, instances and errors: https, as for pushes.
                self.add_error("webhook_url", problem.replace("Pushes carry secrets: ", ""))
            cleaned["email_to"] = ""
        return cleaned
