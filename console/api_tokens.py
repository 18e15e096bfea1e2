"""Personal API tokens: created, revoked and checked only here, whichever door (the account
page, an admin disabling a user, the JSON API) the request comes through."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from console import audit
from console.models import ApiToken
from console.roles import role_of

LAST_USED_EVERY = timedelta(minutes=1)  # at most one write a minute per token


class Refused(Exception):
    """The token cannot act; `status` is the HTTP status that says why (401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create(
    user: Any, name: str, days: int, *, request: HttpRequest | None = None
) -> tuple[ApiToken, str]:
    """A new token of `user` valid for `days`, and its secret (shown once, never stored)."""
    with audit.change():
        token = ApiToken(user=user, name=name, expires_at=timezone.now() + timedelta(days=days))
        secret = token.new_token()
        token.save()
        audit.record(
            audit.Action.API_TOKEN_CREATED,
            request=request,
            target=audit.user_target(user),
            context={"token": token.name, "expires_at": token.expires_at.isoformat()},
        )
    return token, secret


def revoke(token: ApiToken, *, request: HttpRequest | None = None, actor: Any = None) -> None:
    with audit.change():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(
            audit.Action.API_TOKEN_REVOKED,
            request=request,
            actor=actor,
            target=audit.user_target(token.user),
            context={"token": token.name},
        )


def revoke_all(user: Any, *, request: HttpRequest | None = None, actor: Any = None) -> int:
    """Revoke every active token of `user`; returns how many."""
    with audit.change():
        tokens = list(
            ApiToken.objects.select_for_update()
            .select_related("user")
            .filter(user=user, revoked_at=None, expires_at__gt=timezone.now())
        )
        for token in tokens:
            revoke(token, request=request, actor=actor)
    return len(tokens)


def authenticate(secret: str) -> tuple[ApiToken, str]:
    """The active token with this secret and its owner's role; Refused says why not. Notes
    the use (at most once a minute)."""
    token = ApiToken.find_active(secret)
    if token is None:
        raise Refused(401, "Missing, expired or revoked API token.")
    role = role_of(token.user)
    if role is None:
        raise Refused(403, "The token's owner has no role in the console.")
    hours = settings.API_TOKEN_SSO_RECHECK_HOURS
    confirmed = token.sso_confirmation_overdue(hours)
    if confirmed is not None:
        raise Refused(
            403,
            "Your identity provider last confirmed your account at "
            f"{confirmed:%Y-%m-%d %H:%M} UTC; tokens of single sign-on users act only "
            f"within {hours} h of that. Sign in to the console again.",
        )
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token, role
