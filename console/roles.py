"""Who may do what: two roles, carried by Django groups.

- ``admin`` may change configuration.
- ``auditor`` may read everything (and read and export history) but never write.

Every view requires a signed-in user (Django's LoginRequiredMiddleware) and a role
(RoleMiddleware below), so a new view is protected without anyone remembering to protect it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import render

ADMIN = "admin"
AUDITOR = "auditor"
ROLES = (ADMIN, AUDITOR)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def role_of(user) -> str | None:
    """The user's role: ``admin`` wins over ``auditor``; ``None`` for no role."""
    if not user.is_authenticated or not user.is_active:
        return None
    group_names = {group.name for group in user.groups.all()}
    for role in ROLES:
        if role in group_names:
            return role
    return None


def role_not_required(view) -> Callable[..., Any]:
    """Let a signed-in user without a role reach this view (logout, for instance)."""
    view.role_not_required = True
    return view


def own_account_view(view) -> Callable[..., Any]:
    """Let any role (auditors too) POST to this view: it changes only the user's own things,
    such as their personal API tokens, never the configuration."""
    view.own_account = True
    return view


class RoleMiddleware:
    """Show users without a role the "no access" page and refuse writes by non-admins."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs) -> HttpResponse | None:
        request.role = role_of(request.user)
        if not getattr(view_func, "login_required", True):
            return None  # public view: the login page, /healthz
        if getattr(view_func, "role_not_required", False):
            return None
        if request.role is None:
            return render(request, "console/no_access.html", status=403)
        if getattr(view_func, "own_account", False):
            return None
        if request.method not in SAFE_METHODS and request.role != ADMIN:
            raise PermissionDenied("Your role is read-only: only admins can change configuration.")
        return None


LOCAL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def role_context(request) -> dict[str, Any]:
    role = getattr(request, "role", None)
    user = getattr(request, "user", None)
    break_glass = bool(
        user and user.is_authenticated and request.session.get(BACKEND_SESSION_KEY) == LOCAL_BACKEND
    )
    return {"role": role, "can_edit": role == ADMIN, "break_glass": break_glass}
