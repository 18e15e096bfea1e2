"""Diffgram instances: registering, changing and removing them, their credentials, and what
they tell the console (pulls, and what they applied). Every change is audited."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Concat, Upper
from django.utils import timezone

from console import audit, diffgram_releases, kinds, versions
from console.models import ConfigVersion, Instance, Provider, PushRequest

Action = audit.Action
# Drift is judged in tens of minutes (INSTANCE_STALE_AFTER_MINUTES): a poll is noted when the
# last note is older than this, not on every poll of a fleet.
PULL_NOTED_EVERY_SECONDS = 300
# Those notes (a fleet of 100,000 has ~330 due a second) are written together by each web
# process: one UPDATE for up to NOTES_PER_WRITE instances, within NOTES_WRITTEN_WITHIN_SECONDS
# (at the process's next poll). A process that stops loses at most that much of them.
NOTES_PER_WRITE = 500
NOTES_WRITTEN_WITHIN_SECONDS = 10


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
    if instance.last_pulled_version_number != version.number:
        rows = Instance.objects.filter(pk=instance.pk)
        with audit.change():
            if rows.exclude(last_pulled_version_number=version.number).update(
                last_pull_at=now, last_pulled_version_number=version.number
            ):
                audit.record(
                    Action.INSTANCE_PULLED,
                    actor=instance,
                    target=instance,
                    context={"version": version.number, "provider_id": version.provider_id},
                )
            else:  # noted already, by another web process
                rows.update(last_pull_at=now, last_pulled_version_number=version.number)
        instance.last_pull_at, instance.last_pulled_version_number = now, version.number
    elif (
        instance.last_pull_at is None
        or (now - instance.last_pull_at).total_seconds() > PULL_NOTED_EVERY_SECONDS
    ):
        pull_notes.add(instance.pk)
        instance.last_pull_at = now
    pull_notes.write_if_due(now)


class PullNotes:
    """The instances that polled again since their last note, waiting in this process to be
    written together (see NOTES_PER_WRITE)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ids: set[int] = set()
        self._since = 0.0  # when the oldest waiting note was taken (time.monotonic)

    def add(self, instance_id: int) -> None:
        with self._lock:
            if not self._ids:
                self._since = time.monotonic()
            self._ids.add(instance_id)

    def write_if_due(self, now) -> None:
        if not self._ids:
            return
        with self._lock:
            due = (
                len(self._ids) >= NOTES_PER_WRITE
                or time.monotonic() - self._since >= NOTES_WRITTEN_WITHIN_SECONDS
            )
            if not due:
                return
            ids, self._ids = self._ids, set()
        # Not an audited change, nor one the pull state hears of: bookkeeping (PULL_BOOKKEEPING).
        Instance.objects.filter(pk__in=ids).update(last_pull_at=now)

    def forget(self) -> None:
        """Drop the waiting notes (tests: they belong to another test's database rows)."""
        with self._lock:
            self._ids = set()


pull_notes = PullNotes()


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


def drift_reasons(instance) -> list[str]:
    """Why an instance from with_state() does not run what it was assigned, or may not: []
    when it does."""
    return [reason for reason, flag in DRIFT_REASONS.items() if getattr(instance, flag)]


VERIFICATION_STATES = {
    "none": "nothing published to it",
    "pending": "not verified yet",
    "signed_in": "signed in",
    "offers": "offers sign-in (not signed in)",
    "failed": "failed",
    "blocked": "blocked by a Diffgram defect",
}
HEALTH_STATES = ("in_sync", "drifting", "failing", "blocked", "not_verified", "unassigned")
# What with_state() annotates, by the reason the fleet page and the alerts give.
DRIFT_REASONS = {"applied ≠ assigned": "off_version", "not pulled recently": "not_pulling"}


def blocking_defects(version) -> list[diffgram_releases.KnownIssue]:
    """The known defects of the Diffgram release the fleet runs (DIFFGRAM_VERSION) that stop
    every sign-in with this version's setup."""
    kind = kinds.of_settings(version.settings) if version is not None else None
    if kind is None:
        return []
    return kind.blocking_issues(
        client_secret="OAUTH2_PROVIDER_CLIENT_SECRET" in (version.secret_names or [])
    )


def blocked_version_ids() -> list[int]:
    """The versions assigned to some instance that a known Diffgram defect blocks. Judged in
    Python (the defects are data in console/diffgram_releases.py), over the few versions still
    assigned rather than over the instances."""
    # Probed per version (an index lookup each), not a scan of the fleet.
    assigned = Exists(Instance.objects.filter(assigned_version=OuterRef("pk")))
    return [
        version.pk
        for version in ConfigVersion.objects.filter(assigned).only("id", "settings", "secret_names")
        if blocking_defects(version)
    ]


def with_state(queryset=None, *, now=None):
    """Instances with how each is doing, computed by the database so that counting, filtering
    and paging a fleet of 100,000 costs one query each (docs/BENCHMARKS.md, F):

    - `verification`, one of VERIFICATION_STATES for the assigned version. Only a synthetic
      sign-in that passed is "signed_in" (a ✓); the probe alone is "offers"; a known Diffgram
      defect that stops every sign-in with this setup is "blocked", whatever was found;
    - `off_version` (assigned, and not running it) and `not_pulling` (a pull-only instance with
      a version that has not pulled for INSTANCE_STALE_AFTER_MINUTES): drift_reasons();
    - `last_push_id`, its newest push request's;
    - `health`, one of HEALTH_STATES, the worst first: failing (its last push failed for good,
      it could not apply, or its verification failed), drifting, blocked, not_verified (not
      signed in yet), in_sync (signed in with what it was assigned); unassigned when nothing
      was published to it.
    """
    queryset = Instance.objects.all() if queryset is None else queryset
    stale_before = (now or timezone.now()) - timedelta(
        minutes=settings.INSTANCE_STALE_AFTER_MINUTES
    )
    assigned_number = F("assigned_version__number")
    # The conditions, as predicates on columns: each state below composes them rather than
    # comparing another CASE's result, which the database would compute again for every use.
    assigned = Q(assigned_version__isnull=False)
    blocked = Q(assigned_version__in=blocked_version_ids())
    verified_this = Q(verified_version_number=assigned_number, verify_ok__isnull=False)
    running_it = Q(
        applied_status="ok",
        applied_version_number__isnull=False,
        applied_version_number=assigned_number,
    )
    off_version = assigned & ~running_it
    not_pulling = (
        assigned
        & Q(push_target=Instance.PushTarget.NONE)
        & (Q(last_pull_at__isnull=True) | Q(last_pull_at__lt=stale_before))
    )
    verification_failed = ~blocked & verified_this & Q(verify_ok=False)
    signed_in = ~blocked & verified_this & Q(verify_ok=True, verify_kind="signin")
    # The instances whose newest push failed for good: found from the failed pushes (few), so
    # that the database reads them once rather than once per instance.
    newer_push = PushRequest.objects.filter(instance=OuterRef("instance"), pk__gt=OuterRef("pk"))
    last_push_failed = PushRequest.objects.filter(
        ~Exists(newer_push), state=PushRequest.State.FAILED
    ).values("instance")
    last_push = PushRequest.objects.filter(instance=OuterRef("pk")).order_by("-id")
    return queryset.annotate(
        verification=Case(
            When(~assigned, then=Value("none")),
            When(blocked, then=Value("blocked")),
            When(~verified_this, then=Value("pending")),
            When(verify_ok=False, then=Value("failed")),
            When(verify_kind="signin", then=Value("signed_in")),
            default=Value("offers"),
        ),
        health=Case(
            When(~assigned, then=Value("unassigned")),
            When(
                Q(pk__in=last_push_failed) | Q(applied_status="error") | verification_failed,
                then=Value("failing"),
            ),
            When(off_version | not_pulling, then=Value("drifting")),
            When(blocked, then=Value("blocked")),
            When(~signed_in, then=Value("not_verified")),
            default=Value("in_sync"),
        ),
        off_version=_flag(off_version),
        not_pulling=_flag(not_pulling),
        # Read for the rows a page shows only (an unused annotation is not computed).
        last_push_id=Subquery(last_push.values("id")[:1]),
    )


def _flag(condition):
    """True or False (never NULL) as the database finds `condition`."""
    return Case(
        When(condition, then=Value(True)), default=Value(False), output_field=BooleanField()
    )


def search_text():
    """What the fleet's search looks in: the name, URL and group, upper-cased. PostgreSQL
    indexes this very expression (migration 0018_fleet_search)."""
    return Upper(
        Concat("name", Value(" "), "url_base", Value(" "), "rollout_group",
               output_field=CharField())
    )  # fmt: skip


def search(fleet, term):
    """The instances of `fleet` whose name, URL, group or provider's name holds `term`."""
    providers = Provider.objects.filter(name__icontains=term).values_list("pk", flat=True)
    return fleet.alias(search_text=search_text()).filter(
        # The providers are found first (a small table): one indexable condition per table.
        Q(search_text__contains=term.upper()) | Q(provider_id__in=list(providers))
    )


def verification_state(instance) -> str:
    """One of VERIFICATION_STATES for the version assigned to `instance` (with_state() says
    how; an instance loaded without it is asked of the database)."""
    if not hasattr(instance, "verification"):
        return (
            with_state(Instance.objects.filter(pk=instance.pk))
            .values_list("verification", flat=True)
            .get()
        )
    return instance.verification


def fleet_counts(queryset=None) -> dict[str, int]:
    """How many instances are in each of HEALTH_STATES (zero included), how many in all
    ("all"), and how many were published to and not signed in to ("not_signed_in"): one
    query, grouped by state."""
    counts = dict.fromkeys(("all", "not_signed_in", *HEALTH_STATES), 0)
    groups = (
        with_state(queryset)
        .order_by()
        .values_list("health", "verification")
        .annotate(count=Count("pk"))
    )
    for health, verification, count in groups:
        counts[health] += count
        counts["all"] += count
        if verification not in ("signed_in", "none"):
            counts["not_signed_in"] += count
    return counts
