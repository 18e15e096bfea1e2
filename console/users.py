"""The console's users: who they are, where their role comes from, and what admins do with them.

Local users are created by an admin (the users page, `manage.py create_user`) with a role and a
one-time password to hand over: it signs in once, within ONE_TIME_PASSWORD_VALID_FOR, and the
user then chooses their own. Single-sign-on users are created at their first sign-in and their
role follows their IdP groups at every sign-in (console/auth.py), so it is shown, never edited
here. Every change is audited; the history never holds a password.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Count, Prefetch, Q
from django.utils import timezone

from console import audit
from console.models import ExternalIdentity, OneTimePassword, RoleGroups
from console.roles import ADMIN, ROLES, group_mapping, role_of, role_of_groups

ONE_TIME_PASSWORD_VALID_FOR = timedelta(days=3)
BOOTSTRAP_USERNAME = "admin"


class UserChangeRefused(Exception):
    """A change that would lock the console out or fight the identity provider; the message
    says why and is safe to show."""


@dataclass
class UserRow:
    user: object
    role: str | None
    issuers: list[str] = field(default_factory=list)  # empty for a local user
    role_groups: list[str] = field(default_factory=list)
    active_tokens: int = 0
    one_time_password: OneTimePassword | None = None

    @property
    def is_sso(self) -> bool:
        return bool(self.issuers)

    @property
    def source(self) -> str:
        return ", ".join(urlsplit(issuer).hostname or issuer for issuer in self.issuers) or "local"

    @property
    def role_source(self) -> str:
        if not self.is_sso:
            return "set locally"
        if self.role_groups:
            return f"IdP group {', '.join(self.role_groups)}"
        return "IdP groups (at the last sign-in)"


def user_rows(search=None) -> list[UserRow]:
    """Every user (or those `search`, a SearchForm, finds), with the facts the users page
    shows, in a constant number of queries."""
    now = timezone.now()
    active_tokens = Count(
        "api_tokens",
        filter=Q(api_tokens__revoked_at=None, api_tokens__expires_at__gt=now),
    )
    users = (
        get_user_model()
        .objects.annotate(active_tokens=active_tokens)
        .prefetch_related(
            Prefetch("groups", queryset=Group.objects.filter(name__in=ROLES)),
            Prefetch("external_identities", queryset=ExternalIdentity.objects.order_by("id")),
        )
        .select_related("one_time_password")
        .order_by("username")
    )
    if search is not None:
        users = search.search(users)
    rows = []
    for user in users:
        identities = list(user.external_identities.all())
        rows.append(
            UserRow(
                user=user,
                role=role_of(user),
                issuers=[identity.issuer for identity in identities],
                role_groups=sorted({g for identity in identities for g in identity.role_groups}),
                active_tokens=user.active_tokens,
                one_time_password=getattr(user, "one_time_password", None),
            )
        )
    return rows


def is_sso_user(user) -> bool:
    return user.external_identities.exists()


def sso_role_groups(user) -> list[str]:
    """The IdP groups that made this single-sign-on user an admin at their last sign-in."""
    if role_of(user) != ADMIN:
        return []
    groups = user.external_identities.values_list("role_groups", flat=True)
    return sorted({group for listed in groups for group in listed})


# --- which identity-provider groups give the roles ---------------------------------------------


def set_role_groups(admin_groups, auditor_groups, *, request=None, actor=None) -> None:
    """Store the mapping (from now on CONSOLE_ADMIN_GROUPS / CONSOLE_AUDITOR_GROUPS are not
    read); audited with what it was before, bootstrap defaults included. Roles follow at each
    user's next sign-in."""
    before = group_mapping()
    with audit.change():
        stored = RoleGroups.objects.select_for_update().order_by("pk").first() or RoleGroups()
        stored.admin_groups, stored.auditor_groups = list(admin_groups), list(auditor_groups)
        stored.updated_by = getattr(_acting(request, actor), "username", "") or "system"
        stored.save()
        changes = audit.field_changes(
            {"admin_groups": list(before.admin), "auditor_groups": list(before.auditor)},
            {"admin_groups": stored.admin_groups, "auditor_groups": stored.auditor_groups},
        )
        audit.record(
            audit.Action.ROLE_GROUPS_CHANGED, request=request, actor=actor, changes=changes,
            context={"before": "environment" if before.from_environment else "console"},
        )  # fmt: skip


# --- local users --------------------------------------------------------------------------------


def create_local_user(username, role, email="", *, request=None, actor=None, reason=""):
    """A new local user with `role`; returns (user, one-time password). The password is shown
    to the admin once and stored hashed only."""
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}")
    with audit.change():
        user = get_user_model().objects.create_user(username=username, email=email)
        user.groups.add(Group.objects.get_or_create(name=role)[0])
        password = _give_one_time_password(user)
        audit.record(
            audit.Action.USER_CREATED,
            request=request,
            actor=actor,
            target=audit.user_target(user),
            changes={"role": [None, role], "password": [audit.SECRET_NOT_SET, audit.SECRET_SET]},
            context={
                "source": "local",
                "one_time_password_expires": _expiry_of(user),
                **({"reason": reason} if reason else {}),
            },
        )
    return user, password


def reset_password(user, *, request=None, actor=None) -> str:
    """A new one-time password for a local user; the old password stops working at once."""
    if is_sso_user(user):
        raise UserChangeRefused(
            f"{user.get_username()} signs in through single sign-on and has no console "
            "password: reset it at the identity provider."
        )
    with audit.change():
        password = _give_one_time_password(user)
        audit.record(
            audit.Action.USER_PASSWORD_RESET,
            request=request,
            actor=actor,
            target=audit.user_target(user),
            changes={"password": [audit.SECRET_SET, audit.SECRET_CHANGED]},
            context={"one_time_password_expires": _expiry_of(user)},
        )
    return password


def set_role(user, role, *, request=None, actor=None) -> None:
    """Change a local user's role. SSO users' roles follow their IdP groups."""
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}")
    if is_sso_user(user):
        raise UserChangeRefused(
            f"{user.get_username()}'s role comes from their identity provider groups at every "
            "sign-in: change their groups there."
        )
    with transaction.atomic():
        if role_of(user) == ADMIN and role != ADMIN:
            _refuse_losing_the_last_admin(user, _acting(request, actor), "take the admin role from")
        give_role(user, role, request=request, actor=actor, context={"source": "local"})


def give_role(user, role, *, request=None, actor=None, context=None) -> None:
    """Make `role` (or no role, for None) the user's only console role; audited when it
    changes. Local roles come from set_role(), SSO roles from the IdP groups at each sign-in."""
    current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    wanted = {role} if role else set()
    if current == wanted:
        return
    user.groups.remove(*Group.objects.filter(name__in=current - wanted))
    for name in wanted - current:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    audit.record(
        audit.Action.USER_ROLE_CHANGED,
        request=request,
        actor=actor,
        target=audit.user_target(user),
        changes={"role": [role_of_groups(current), role]},
        context=context or {},
    )


def set_active(user, active, *, request=None, actor=None) -> None:
    """Disable (the user can no longer sign in or use API tokens) or enable a user."""
    if user.is_active == active:
        return
    with audit.change():
        if not active:
            _refuse_losing_the_last_admin(user, _acting(request, actor), "disable")
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit.record(
            audit.Action.USER_ENABLED if active else audit.Action.USER_DISABLED,
            request=request,
            actor=actor,
            target=audit.user_target(user),
            changes={"is_active": [not active, active]},
        )


# --- one-time passwords -------------------------------------------------------------------------


def one_time_password_expired(user) -> bool:
    pending = OneTimePassword.objects.filter(user=user).first()
    return pending is not None and pending.expires_at <= timezone.now()


def use_one_time_password(user) -> bool:
    """The first successful sign-in with a one-time password uses it up: True for a user
    without one, or for the sign-in that used it now; False when it was used before (by
    another sign-in, perhaps at this very moment)."""
    pending = OneTimePassword.objects.filter(user=user)
    if not pending.exists():
        return True
    return bool(pending.filter(used_at__isnull=True).update(used_at=timezone.now()))


def must_choose_password(user) -> bool:
    return OneTimePassword.objects.filter(user=user).exists()


def choose_password(user, password, *, request=None) -> None:
    """The user sets their own password, replacing a one-time one."""
    with audit.change():
        user.set_password(password)
        user.save(update_fields=["password"])
        OneTimePassword.objects.filter(user=user).delete()
        audit.record(
            audit.Action.USER_PASSWORD_CHANGED,
            request=request,
            actor=user,
            target=audit.user_target(user),
            changes={"password": [audit.SECRET_SET, audit.SECRET_CHANGED]},
        )


def create_bootstrap_admin() -> str | None:
    """On a database with no users, the local admin BOOTSTRAP_USERNAME; returns its one-time
    password (None when any user exists)."""
    with transaction.atomic():
        if get_user_model().objects.exists():
            return None
        _, password = create_local_user(
            BOOTSTRAP_USERNAME, ADMIN, reason="bootstrap admin on an empty database"
        )
    return password


def _give_one_time_password(user) -> str:
    password = secrets.token_urlsafe(18)
    user.set_password(password)
    user.save(update_fields=["password"])
    OneTimePassword.objects.update_or_create(
        user=user,
        defaults={"expires_at": timezone.now() + ONE_TIME_PASSWORD_VALID_FOR, "used_at": None},
    )
    return password


def _expiry_of(user) -> str:
    return OneTimePassword.objects.get(user=user).expires_at.isoformat()


def _acting(request, actor):
    return actor if actor is not None else getattr(request, "user", None)


def _refuse_losing_the_last_admin(user, actor, verb) -> None:
    if actor is not None and getattr(actor, "pk", None) == user.pk:
        raise UserChangeRefused(f"You cannot {verb} yourself: ask another admin.")
    if role_of(user) != ADMIN:
        return
    admins = get_user_model().objects.select_for_update().filter(is_active=True, groups__name=ADMIN)
    if not [admin for admin in admins if admin.pk != user.pk]:
        raise UserChangeRefused(
            f"{user.get_username()} is the only admin: make someone else an admin first."
        )
