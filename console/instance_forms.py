"""The form of a Diffgram instance: where it is, which provider's versions it runs, and how
they reach it (pulled by its agent, pushed to the agent's webhook, or written to AWS SSM)."""

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from console import instances, kinds, outbound
from console.forms import AWS_REGION, diffgram_url_base, http_url
from console.models import Instance, Provider


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

    # Shown only for their push target (console.js; all of them without script).
    TARGET_FIELDS = {
        "webhook_url": Instance.PushTarget.WEBHOOK,
        "webhook_allow_http": Instance.PushTarget.WEBHOOK,
        "ssm_region": Instance.PushTarget.SSM,
        "ssm_prefix": Instance.PushTarget.SSM,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        provider = self.fields["provider"]
        assert isinstance(provider, forms.ModelChoiceField)
        provider.queryset = Provider.objects.filter(kind__in=kinds.diffgram_slugs())
        # Left out (configuration files and API clients older than it), the default holds.
        self.fields["signin_runner"].required = False
        for name, target in self.TARGET_FIELDS.items():
            self.fields[name].push_target = target  # type: ignore[attr-defined]

    def clean_signin_runner(self) -> str:
        return self.cleaned_data.get("signin_runner") or Instance.SigninRunner.CONSOLE

    def clean_url_base(self) -> str:
        return diffgram_url_base(self.cleaned_data["url_base"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self._refuse_a_shared_client(cleaned.get("provider"))
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

    def _refuse_a_shared_client(self, provider: Provider | None) -> None:
        """Some kinds give every instance its own client: Diffgram overwrites its Keycloak
        client's redirect URIs at every start, so a second instance on the same client id
        would break the first one's sign-in."""
        if provider is None:
            return
        others = provider.instances.exclude(pk=self.instance.pk).values_list("name", flat=True)
        name = self.cleaned_data.get("name") or self.instance.name
        problem = kinds.of(provider).sharing_problem(provider.client_id, (*others, name))
        if problem:
            self.add_error("provider", f"Not with {provider}: {problem}")


FLEET_STATES = {
    "not-signed-in": "Not signed in (published to, no synthetic sign-in passed)",
    "failing": "Failing",
    "drifting": "Drifting",
    "blocked": "Blocked by a Diffgram defect",
    "not_verified": "Not verified",
    "in_sync": "In sync and signed in",
    "unassigned": "Nothing published yet",
}


class FleetFilterForm(forms.Form):
    """The fleet page's search and state filter (GET: a shareable URL). Searched by the
    database, so it serves a fleet of 100,000 a page at a time."""

    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        strip=True,
        help_text="Name, URL, group or provider.",
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "name, URL, group…"}),
    )
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *FLEET_STATES.items()])

    def __init__(self, data: Any = None) -> None:
        if data is not None and data.get("show") == "not-verified" and not data.get("state"):
            data = data.copy()  # the earlier link to the same list
            data["state"] = "not-signed-in"
        super().__init__(data)

    def search(self, fleet: Any) -> Any:
        """`fleet` narrowed to the search."""
        if self.cleaned_data["q"]:
            fleet = instances.search(fleet, self.cleaned_data["q"])
        return fleet

    def in_state(self, fleet: Any) -> Any:
        """`fleet`, annotated by instances.with_state(), narrowed to the state."""
        state = self.cleaned_data["state"]
        if state == "not-signed-in":
            fleet = fleet.exclude(verification__in=("signed_in", "none"))
        elif state:
            fleet = fleet.filter(health=state)
        return fleet
