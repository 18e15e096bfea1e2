"""Who may do what: two roles, carried by Django groups.

- ``admin`` may change configuration.
- ``auditor`` may read everything (and read and export history) but never write.

Every view requires a signed-in user (Django's LoginRequiredMiddleware) and a role
(RoleMiddleware below), so a new view is protected without anyone remembering to protect it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.http import HttpResponse
from django.shortcuts import redirect, render

from console.models import RoleGroups

ADMIN = "admin"
AUDITOR = "auditor"
ROLES = (ADMIN, AUDITOR)

# Session key set when someone signs in with a one-time password: until they have chosen their
# own, every page sends them to choose it.
MUST_CHOOSE_PASSWORD = "must_choose_password"
CHOOSING_PASSWORD_VIEWS = frozenset({"choose-password", "logout"})

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def role_of(user) -> str | None:
    """The user's role: ``admin`` wins over ``auditor``; ``None`` for no role."""
    if not user.is_authenticated or not user.is_active:
        return None
    return role_of_groups({group.name for group in user.groups.all()})


def role_of_groups(group_names) -> str | None:
    """The role the console groups `group_names` give: ``admin`` wins over ``auditor``."""
    return next((role for role in ROLES if role in group_names), None)


def groups_claim(claims, userinfo) -> list[str]:
    """The IdP groups a sign-in carries, in the CONSOLE_OIDC_GROUPS_CLAIM claim."""
    name = settings.CONSOLE_OIDC_GROUPS_CLAIM
    value = userinfo.get(name, claims.get(name))
    if isinstance(value, str):
        return [value]
    return [group for group in value if isinstance(group, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class GroupMapping:
    """Which IdP groups give which role, and where that was decided: on the Users page (a
    RoleGroups row), else the bootstrap defaults CONSOLE_ADMIN_GROUPS / CONSOLE_AUDITOR_GROUPS."""

    admin: tuple[str, ...]
    auditor: tuple[str, ...]
    stored: RoleGroups | None = None

    @property
    def from_environment(self) -> bool:
        return self.stored is None

    def giving(self, role) -> tuple[str, ...]:
        return self.admin if role == ADMIN else self.auditor if role == AUDITOR else ()


def group_mapping() -> GroupMapping:
    stored = RoleGroups.objects.order_by("pk").first()
    if stored is None:
        return GroupMapping(
            tuple(settings.CONSOLE_ADMIN_GROUPS), tuple(settings.CONSOLE_AUDITOR_GROUPS)
        )
    return GroupMapping(tuple(stored.admin_groups), tuple(stored.auditor_groups), stored)


def role_for_groups(groups, mapping: GroupMapping | None = None) -> str | None:
    """The console role IdP groups give: admin wins over auditor; None for neither."""
    mapping = mapping or group_mapping()
    if set(groups) & set(mapping.admin):
        return ADMIN
    if set(groups) & set(mapping.auditor):
        return AUDITOR
    return None


def role_groups(groups) -> list[str]:
    """The groups among `groups` that gave the role, shown as where it comes from."""
    mapping = group_mapping()
    return sorted(set(groups) & set(mapping.giving(role_for_groups(groups, mapping))))


def admins_to_ask() -> list[str]:
    """Whom someone without access should ask: the active admins, by name."""
    admins = get_user_model().objects.filter(is_active=True, groups__name=ADMIN)
    return [user.get_full_name() or user.get_username() for user in admins.order_by("username")]


def no_access(request, *, refused_sso=False) -> HttpResponse:
    """The "no access" page: what to ask for, and whom."""
    return render(
        request,
        "console/no_access.html",
        {
            "refused_sso": refused_sso,
            "admins": admins_to_ask(),
            "mapping": group_mapping(),
            "groups_claim": settings.CONSOLE_OIDC_GROUPS_CLAIM,
        },
        status=403,
    )


def role_not_required(view) -> Callable[..., Any]:
    """Let a signed-in user without a role reach this view (logout, for instance)."""
    view.role_not_required = True
    return view


def admin_only(view) -> Callable[..., Any]:
    """A page that exists to change configuration (a new/edit/delete/import form): auditors
    are refused it even for reading, instead of being shown a form they cannot submit."""
    view.admin_only = True
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
            return no_access(request)
        if request.session.get(MUST_CHOOSE_PASSWORD) and (
            request.resolver_match.url_name not in CHOOSING_PASSWORD_VIEWS
        ):
            return redirect("choose-password")
        if getattr(view_func, "own_account", False):
            return None
        writes = request.method not in SAFE_METHODS or getattr(view_func, "admin_only", False)
        if writes and request.role != ADMIN:
            # A response, not PermissionDenied: Django logs it as one line, without a traceback.
            return render(
                request,
                "403.html",
                {"exception": "Your role is read-only: only admins can change configuration."},
                status=403,
            )
        return None


LOCAL_BACKEND = "django.contrib.auth.backends.ModelBackend"
# Set at a break-glass sign-in (console/views/accounts.py): a local admin signing in while single
# sign-on is configured. A local auditor, or the local admin before single sign-on is set up,
# is not one.
BREAK_GLASS_SESSION_KEY = "break_glass"


def role_context(request) -> dict[str, Any]:
    role = getattr(request, "role", None)
    user = getattr(request, "user", None)
    signed_in = bool(user and user.is_authenticated)
    return {
        "role": role,
        "can_edit": role == ADMIN,
        "local_account": signed_in and request.session.get(BACKEND_SESSION_KEY) == LOCAL_BACKEND,
        "break_glass": signed_in and bool(request.session.get(BREAK_GLASS_SESSION_KEY)),
    }
