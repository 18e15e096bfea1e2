"""The path from an empty console to a Diffgram that signs users in, as the Providers page shows
it until it is walked: each step ticked from the console's own state, never from a click."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q
from django.urls import reverse

from console import instances
from console.models import ConfigVersion, Instance, Provider


@dataclass(frozen=True)
class Step:
    title: str
    done: bool
    url: str
    how: str


def steps() -> list[Step]:
    """The five steps, in order. A handful of EXISTS queries whatever the fleet's size."""
    provider = Provider.objects.order_by("pk").first()
    instance = Instance.objects.order_by("pk").first()
    agent_heard = Instance.objects.filter(
        Q(last_pull_at__isnull=False) | Q(applied_version_number__isnull=False)
    )
    signed_in = instances.with_state(Instance.objects.all()).filter(verification="signed_in")
    instance_page = reverse("instance-detail", args=[instance.pk]) if instance else ""
    provider_page = reverse("provider-detail", args=[provider.pk]) if provider else ""
    return [
        Step(
            "Add an identity provider",
            provider is not None,
            provider_page or reverse("provider-new"),
            "Cognito, Keycloak or any OpenID Connect provider; the console checks it against "
            "its discovery document.",
        ),
        Step(
            "Register a Diffgram instance",
            instance is not None,
            instance_page or reverse("instance-create"),
            "Its URL_BASE and the provider it signs in with.",
        ),
        Step(
            "Install the agent on the Diffgram host",
            agent_heard.exists(),
            instance_page or reverse("instance-create"),
            "The instance page gives the commands; ticked once the agent has pulled or "
            "applied a version.",
        ),
        Step(
            "Publish the provider",
            ConfigVersion.objects.exists(),
            provider_page or reverse("provider-new"),
            "Publish on the provider's page makes a version and rolls it out.",
        ),
        Step(
            "See Diffgram sign a user in",
            signed_in.exists(),
            reverse("instances"),
            "Give the provider a test account: a sign-in through Diffgram's callback then "
            "puts a ✓ on the instance.",
        ),
    ]
