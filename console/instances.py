"""Diffgram instances: registering, changing and removing them, their credentials, and what
they tell the console (pulls, and what they applied). Every change is audited."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from console import audit, diffgram_releases, kinds, versions
from console.models import Instance, PushRequest

Action = audit.Action
PULL_NOTED_EVERY_SECONDS = 300


def create_instance(form, *, request=None, actor=None) -> tuple[Instance, str]:
    """Save a new instance from a valid form; returns (instance, token shown once)."""
    with audit.change():
        instance = form.save(commit=False)
        token = instance.new_token()
        instance.new_signing_secret()
        instance.save()
        if instance.provider_id and instance.provider.versions.exists():
            versions.assign(
                instance, versions.current_version(instance.provider), request=request, actor=actor
            )
        audit.record(  # last: the lock order of publish()
            Action.INSTANCE_CREATED,
            request=request,
            actor=actor,
            target=instance,
            changes=audit.field_changes({}, instance.audit_fields()),
        )
    return instance, token


def update_instance(form, *, request=None, actor=None) -> Instance:
    with audit.change():
        current = Instance.objects.select_for_update().get(pk=form.instance.pk)
        before = current.audit_fields()
        instance = form.save(commit=False)
        instance.revision = current.revision + 1
        instance.save()
        if instance.provider_id != current.provider_id:
            version = versions.current_version(instance.provider) if instance.provider_id else None
            versions.assign(instance, version, request=request, actor=actor)
        changes = audit.field_changes(before, instance.audit_fields())
        if changes:  # last: the lock order of publish()
            audit.record(
                Action.INSTANCE_CHANGED,
                request=request,
                actor=actor,
                target=instance,
                changes=changes,
                context={"revision": instance.revision},
            )
    return instance


def delete_instance(instance, *, request=None, actor=None) -> None:
    with audit.change():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        audit.record(
            Action.INSTANCE_DELETED,
            request=request,
            actor=actor,
            target=stored,
            changes={name: [value, None] for name, value in stored.audit_fields().items()},
        )
        stored.delete()


def rotate_token(instance, *, request=None, actor=None) -> tuple[Instance, str]:
    """A new API token (returned once); the old one stops working at once."""
    with audit.change():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        token = stored.new_token()
        stored.token_rotated_at = timezone.now()
        stored.save(update_fields=["token_hash", "token_rotated_at", "updated_at"])
        audit.record(Action.INSTANCE_TOKEN_ROTATED, request=request, actor=actor, target=stored)
    return stored, token


def rotate_signing_secret(instance, *, request=None, actor=None) -> tuple[Instance, str]:
    """A new webhook signing secret (returned once, for the agent's --secret-file)."""
    with audit.change():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        secret = stored.new_signing_secret()
        stored.save(update_fields=["signing_secret_encrypted", "updated_at"])
        audit.record(
            Action.INSTANCE_SIGNING_SECRET_ROTATED, request=request, actor=actor, target=stored
        )
    return stored, secret


def repush(instance, *, request=None, actor=None) -> PushRequest | None:
    """Queue the assigned version again; the agent ignores a version it already applied."""
    with transaction.atomic():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        return versions.assign(
            stored, stored.assigned_version, request=request, actor=actor, again=True
        )


def record_pull(instance, version) -> None:
    """Note a pull; the first pull of a version is an audit event. Cheap on repeated polls.

    `instance` may be the pull API's copy in process memory: it is kept up to date here, and
    the database decides which process notes the first pull of a version."""
    now = timezone.now()
    first_of_version = instance.last_pulled_version_number != version.number
    # Drift is judged in tens of minutes: noting a pull every few minutes is enough, and spares
    # the database a write on every poll of a fleet.
    stale = (
        instance.last_pull_at is None
        or (now - instance.last_pull_at).total_seconds() > PULL_NOTED_EVERY_SECONDS
    )
    if not (first_of_version or stale):
        return
    rows = Instance.objects.filter(pk=instance.pk)
    with audit.change():
        if first_of_version and rows.exclude(last_pulled_version_number=version.number).update(
            last_pull_at=now, last_pulled_version_number=version.number
        ):
            audit.record(
                Action.INSTANCE_PULLED,
                actor=instance,
                target=instance,
                context={"version": version.number, "provider_id": version.provider_id},
            )
        else:  # noted already, perhaps by another web process
            rows.update(last_pull_at=now, last_pulled_version_number=version.number)
    instance.last_pull_at, instance.last_pulled_version_number = now, version.number


def record_applied_by_etag(instance, version) -> None:
    """A pull answered 304: the agent sent the ETag of the content it applied, which is this
    version's. If it last acknowledged an earlier version with that same content, record this
    one as applied: the console knows, and an agent that sees no change has nothing to say.
    (Pushed instances acknowledge every new assignment themselves.) Cheap when nothing changed;
    the conditional UPDATE makes one web process the one that records it."""
    if instance.applied_version_number == version.number or instance.applied_status != "ok":
        return
    previous = instance.applied_version_number
    with audit.change():
        updated = (
            Instance.objects.filter(pk=instance.pk, applied_status="ok")
            .exclude(applied_version_number=version.number)
            .update(applied_version_number=version.number, applied_at=timezone.now())
        )
        if updated:
            # The same content: what its verification found still holds, and the agent will
            # not verify again (it applies nothing).
            Instance.objects.filter(pk=instance.pk, verified_version_number=previous).update(
                verified_version_number=version.number
            )
            audit.record(
                Action.INSTANCE_APPLIED,
                actor=instance,
                target=instance,
                context={
                    "version": version.number,
                    "same_content_as": previous,
                    "via": "pull (the agent already runs this content)",
                },
            )
    instance.applied_version_number = version.number


def record_applied(instance, *, version_number, ok, detail, request=None) -> None:
    with audit.change():
        Instance.objects.filter(pk=instance.pk).update(
            applied_version_number=version_number,
            applied_status="ok" if ok else "error",
            applied_detail=detail[:2000],
            applied_at=timezone.now(),
        )
        audit.record(
            Action.INSTANCE_APPLIED if ok else Action.INSTANCE_APPLY_FAILED,
            actor=instance,
            request=request,
            target=instance,
            context={"version": version_number, **({"detail": detail[:2000]} if detail else {})},
        )


# --- how an instance is doing (the fleet page, metrics, alerts) ----------------------------------


def drift_reasons(instance, stale_before) -> list[str]:
    """Why the instance does not run what it was assigned, or may not: [] when it does."""
    reasons = []
    if instance.assigned_version_id and not instance.in_sync:
        reasons.append("applied ≠ assigned")
    if (
        instance.push_target == Instance.PushTarget.NONE
        and instance.assigned_version_id
        and (instance.last_pull_at is None or instance.last_pull_at < stale_before)
    ):
        reasons.append("not pulled recently")
    return reasons


VERIFICATION_STATES = {
    "none": "nothing published to it",
    "pending": "not verified yet",
    "signed_in": "signed in",
    "offers": "offers sign-in (not signed in)",
    "failed": "failed",
    "blocked": "blocked by a Diffgram defect",
}


def blocking_defects(version) -> list[diffgram_releases.KnownIssue]:
    """The known defects of the Diffgram release the fleet runs (DIFFGRAM_VERSION) that stop
    every sign-in with this version's setup."""
    kind = kinds.of_settings(version.settings) if version is not None else None
    if kind is None:
        return []
    return kind.blocking_issues(
        client_secret="OAUTH2_PROVIDER_CLIENT_SECRET" in (version.secret_names or [])
    )


def verification_state(instance) -> str:
    """One of VERIFICATION_STATES for the version assigned to `instance`. Only a synthetic
    sign-in that passed is "signed_in" (a ✓); the probe alone is "offers"; a known Diffgram
    defect that stops every sign-in with this setup is "blocked", whatever was found."""
    version = instance.assigned_version if instance.assigned_version_id else None
    if version is None:
        return "none"
    if blocking_defects(version):
        return "blocked"
    if instance.verified_version_number != version.number or instance.verify_ok is None:
        return "pending"
    if not instance.verify_ok:
        return "failed"
    return "signed_in" if instance.verify_kind == "signin" else "offers"


HEALTH_STATES = ("in_sync", "drifting", "failing", "blocked", "not_verified", "unassigned")


def health(instance, last_push_state, stale_before) -> str:
    """One state per instance, the worst first: failing (its last push failed for good, it
    could not apply, or its verification failed), drifting, blocked (by a known Diffgram
    defect), not_verified (not signed in yet), in_sync (signed in with what it was assigned);
    unassigned when nothing was published to it."""
    if not instance.assigned_version_id:
        return "unassigned"
    verification = verification_state(instance)
    failed = last_push_state == PushRequest.State.FAILED or instance.applied_status == "error"
    if failed or verification == "failed":
        return "failing"
    if drift_reasons(instance, stale_before):
        return "drifting"
    if verification == "blocked":
        return "blocked"
    if verification != "signed_in":
        return "not_verified"
    return "in_sync"
