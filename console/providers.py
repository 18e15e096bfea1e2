"""Changing identity providers: every change is saved with its audit events in one transaction.

Views and management commands both go through here, so the rules and the audit trail are the
same whichever way an admin works.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.utils import timezone
from django.utils.translation import ngettext

from console import audit, auth, discovery, kinds
from console.models import AuditEvent, Provider

Action = audit.Action


class EditConflict(Exception):
    """The provider changed since the form was opened; nothing was saved."""

    def __init__(self, current, events):
        super().__init__(f"{current} was changed by someone else (now revision {current.revision})")
        self.current = current
        self.events = events


def _secret_events(provider, updates, *, request=None, actor=None, before=None):
    for name, value in sorted(updates.items()):
        was_set = bool(before and before.get(name))
        if not value and not was_set:
            continue  # clearing what was never set changes nothing
        audit.record(
            Action.PROVIDER_SECRET_SET if value else Action.PROVIDER_SECRET_CLEARED,
            request=request,
            actor=actor,
            target=provider,
            changes={
                name: [
                    audit.SECRET_SET if was_set else audit.SECRET_NOT_SET,
                    audit.SECRET_CHANGED if value else audit.SECRET_CLEARED,
                ]
            },
            context={"field": name, "revision": provider.revision},
        )


def save_provider(form, *, request=None, actor=None) -> Provider:
    """Save a valid provider form (create or edit) and audit it. Raises EditConflict when the
    form was based on an older revision than the stored one."""
    creating = form.instance._state.adding
    secret_updates = form.secret_updates()
    with audit.change():
        if creating:
            before, secrets_before, revision = {}, {}, 1
        else:
            current = Provider.objects.select_for_update().get(pk=form.instance.pk)
            base = form.cleaned_data.get("revision")
            if base is not None and base != current.revision:
                raise EditConflict(current, changes_since(current, base))
            before = kinds.of(current).audit_fields(current)
            secrets_before = {name: current.has_secret(name) for name in Provider.SECRET_NAMES}
            revision = current.revision + 1
        provider = form.save(commit=False)
        provider.revision = revision
        # Sign-in moved to another host: the console's own login waits for a new Test login.
        dropped_console_login = (
            not creating and current.console_login and bool(form.destination_changed())
        )
        if dropped_console_login:
            provider.console_login = False
        if creating:
            provider.save()
        else:
            provider.save(
                update_fields=[
                    *form._meta.fields,
                    *(f"{name}_encrypted" for name in secret_updates),
                    "kind",
                    "issuer",
                    "revision",
                    "console_login",
                    "updated_at",
                ]  # fmt: skip
            )
        changes = audit.field_changes(before, kinds.of(provider).audit_fields(provider))
        if dropped_console_login:
            changes["console_login"] = [True, False]
        if creating or changes:
            audit.record(
                Action.PROVIDER_CREATED if creating else Action.PROVIDER_CHANGED,
                request=request,
                actor=actor,
                target=provider,
                changes=changes,
                context={"revision": provider.revision},
            )
        _secret_events(
            provider, secret_updates, request=request, actor=actor, before=secrets_before
        )
    return provider


def changes_since(provider, base_revision) -> list[AuditEvent]:
    """The audited edits of `provider` after `base_revision`, oldest first."""
    return list(
        AuditEvent.objects.filter(
            target_type=Provider.audit_target_type,
            target_id=str(provider.pk),
            action__in=[
                Action.PROVIDER_CHANGED,
                Action.PROVIDER_SECRET_SET,
                Action.PROVIDER_SECRET_CLEARED,
            ],
            context__revision__gt=base_revision,
        ).order_by("id")
    )


def run_validation(
    provider, *, request=None, actor=None, audit_it=True
) -> tuple[Provider, discovery.Report]:
    """Validate against the live discovery document and JWKS; store and audit the outcome.

    The HTTP requests happen outside any transaction, so no lock is held while waiting.
    """
    kind = kinds.of(provider)
    report = kind.validate(kind.spec(provider))
    now = timezone.now()
    with audit.change():
        stored = Provider.objects.select_for_update().get(pk=provider.pk)
        stored.validated_at = now
        stored.validation_checks = report.as_list()
        stored.validation_passed = report.ok
        fields = ["validated_at", "validation_checks", "validation_passed"]
        if report.ok:
            stored.last_passed_at = now
            fields.append("last_passed_at")
        snapshot = report.snapshot()
        if snapshot:
            stored.discovery_snapshot, stored.jwks_snapshot = snapshot
            stored.snapshot_at = now
            fields += ["discovery_snapshot", "jwks_snapshot", "snapshot_at"]
        stored.save(update_fields=fields)
        if not audit_it:
            return stored, report
        audit.record(
            Action.PROVIDER_VALIDATED,
            request=request,
            actor=actor,
            target=stored,
            context={
                "passed": report.ok,
                "failed": [c.id for c in report.checks if c.status == discovery.FAIL],
                "warnings": [c.id for c in report.checks if c.status == discovery.WARN],
            },
        )
    return stored, report


def set_enabled(provider, enabled, *, request=None, actor=None) -> Provider:
    with audit.change():
        stored = Provider.objects.select_for_update().get(pk=provider.pk)
        if stored.enabled == enabled:
            return stored
        stored.enabled = enabled
        stored.revision += 1
        stored.save(update_fields=["enabled", "revision", "updated_at"])
        audit.record(
            Action.PROVIDER_ENABLED if enabled else Action.PROVIDER_DISABLED,
            request=request,
            actor=actor,
            target=stored,
            changes={"enabled": [not enabled, enabled]},
            context={"revision": stored.revision},
        )
    return stored


class DeleteRefused(Exception):
    """The provider is still in use; the message says what to do instead."""


def delete_provider(provider, *, request=None, actor=None) -> None:
    with audit.change():
        stored = Provider.objects.select_for_update().get(pk=provider.pk)
        instances = stored.instances.count()
        if instances:
            raise DeleteRefused(
                f"{stored} is assigned to "
                + ngettext("%d instance: assign it", "%d instances: assign them", instances)
                % instances
                + " another provider first, or disable it."
            )
        federated_into = sorted({f.cognito.name for f in stored.federated_into.all()})
        if federated_into:
            raise DeleteRefused(
                f"{stored} is federated into {', '.join(federated_into)}: remove it there first."
            )
        if stored.versions.exists():
            raise DeleteRefused(
                f"{stored} has published versions, which the history refers to: disable it instead."
            )
        audit.record(
            Action.PROVIDER_DELETED,
            request=request,
            actor=actor,
            target=stored,
            changes={
                name: [value, None] for name, value in kinds.of(stored).audit_fields(stored).items()
            },
        )
        stored.delete()


def mark_console_login(provider, *, request=None, actor=None) -> None:
    """Make this the provider the console's own admins sign in with (only one at a time)."""
    with audit.change():
        previous = list(
            Provider.objects.select_for_update().filter(console_login=True).exclude(pk=provider.pk)
        )
        Provider.objects.filter(pk__in=[p.pk for p in previous]).update(console_login=False)
        Provider.objects.filter(pk=provider.pk).update(console_login=True)
        audit.record(
            Action.PROVIDER_CONSOLE_LOGIN_MARKED,
            request=request,
            actor=actor,
            target=provider,
            changes={"console_login": [False, True]},
            context={"replaces": [p.name for p in previous]},
        )


def _watched(provider):
    document = provider.discovery_snapshot or {}
    kids = sorted(
        str(key.get("kid"))
        for key in (provider.jwks_snapshot or {}).get("keys", [])
        if isinstance(key, dict)
    )
    endpoints = {name: document.get(name) for name in discovery.ENDPOINT_KEYS}
    return provider.validation_passed, kids, endpoints


def revalidate(provider) -> dict[str, list[Any]]:
    """The scheduled check: validate again and record an event only when something changed
    (outcome, JWKS keys, endpoints). A console-login provider's cached JWKS is refreshed."""
    passed_before, kids_before, endpoints_before = _watched(provider)
    provider, report = run_validation(provider, audit_it=False)
    passed_after, kids_after, endpoints_after = _watched(provider)
    changes = {}
    if passed_before != passed_after:
        changes["passed"] = [passed_before, passed_after]
    if kids_before != kids_after:
        changes["jwks_kids"] = [kids_before, kids_after]
        if provider.console_login:
            cache.delete(auth.jwks_cache_key(provider.issuer))
    changes.update(
        {
            name: [endpoints_before[name], endpoints_after[name]]
            for name in discovery.ENDPOINT_KEYS
            if endpoints_before[name] != endpoints_after[name]
        }
    )
    if changes:
        audit.record(
            Action.PROVIDER_VALIDATION_CHANGED,
            target=provider,
            changes=changes,
            context={
                "scheduled": True,
                "failed": [c.id for c in report.checks if c.status == discovery.FAIL],
            },
        )
    return changes
