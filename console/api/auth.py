"""Who calls the API: a personal token (with its owner's role) or an instance's token."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from console import api_tokens
from console.api.errors import ApiError
from console.models import Instance
from console.roles import ADMIN


class PersonalToken(HttpBearer):
    """A personal API token (account page): acts with its owner's role. Operations that change
    configuration take `PersonalToken(admin=True)`: an auditor's token reads only."""

    def __init__(self, *, admin: bool = False) -> None:
        super().__init__()
        self.admin = admin

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        try:
            api_token, role = api_tokens.authenticate(token)
        except api_tokens.Refused as refusal:
            raise ApiError(refusal.status, str(refusal)) from None
        request.user, request.api_token, request.role = api_token.user, api_token, role  # type: ignore[attr-defined]
        if self.admin and role != ADMIN:
            raise ApiError(403, "Your role is read-only: only admins can change configuration.")
        return api_token


READ = PersonalToken()
WRITE = PersonalToken(admin=True)


class InstanceToken(HttpBearer):
    """An instance's token (its page, or the agent's setup): pulls its settings and reports
    what it applied. The pull views (console/api/pull.py, routed first) check it themselves
    against the state they keep in memory; this one serves the operations that document them."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        match = request.resolver_match
        try:
            instance_id = int(match.kwargs["instance_id"]) if match else 0
        except (KeyError, TypeError, ValueError):
            return None
        instance = Instance.objects.filter(pk=instance_id).first()
        return instance if instance is not None and instance.token_matches(token) else None


INSTANCE = InstanceToken()
