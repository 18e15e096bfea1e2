"""The only writer of audit events, and the chain verification.

An audited change runs in `with audit.change():` (its transaction), and `record()` inside it
notes the events; they are appended to the chain when the block ends, as the transaction's
last statement. Writers serialise on the chain head row, so concurrent writers cannot fork the
chain — and because that lock is always the last one a transaction takes, two changes that
lock the same rows cannot deadlock over it (tests/test_code_layout.py keeps record() out of a
bare transaction.atomic()). Outside a change(), record() appends at once, in its own
transaction.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import CharField, Func
from django.dispatch import Signal
from django.utils import timezone

from console import log_context, ratelimits
from console.models import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditChainHead,
    AuditEvent,
    compute_event_hash,
)

Action = AuditEvent.Action
ActorType = AuditEvent.ActorType

# Sent, once the transaction commits, with the new events whose action is in LISTENED_TO
# (a listener adds the actions it wants: console/alerts.py).
event_recorded = Signal()
LISTENED_TO: set[str] = set()

SECRET_CHANGED = "[changed]"
SECRET_SET = "[set]"
SECRET_NOT_SET = "[not set]"
SECRET_CLEARED = "[cleared]"


@dataclass(frozen=True)
class Actor:
    type: str
    id: str = ""
    label: str = ""


SYSTEM = Actor(ActorType.SYSTEM, "", "system")


def anonymous(tried_username) -> Actor:
    """Someone not signed in, e.g. a failed login for `tried_username`."""
    return Actor(ActorType.ANONYMOUS, "", (tried_username or "")[:150])


def actor_for(actor) -> Actor:
    """Who an event is by: an Actor as it is, a model naming its `audit_actor_type` (a Diffgram
    instance calling the API), a signed-in user, else the system."""
    if actor is None:
        return SYSTEM
    if isinstance(actor, Actor):
        return actor
    actor_type = getattr(actor, "audit_actor_type", None)
    if actor_type:
        return Actor(actor_type, str(actor.pk), str(actor))
    if getattr(actor, "is_authenticated", False):
        return Actor(ActorType.USER, str(actor.pk), actor.get_username())
    return SYSTEM


def _target_for(target):
    """(type, id, label) from a model instance with `audit_target_type`, or a tuple."""
    if target is None:
        return "", "", ""
    if isinstance(target, tuple):
        target_type, target_id, label = target
        return target_type, str(target_id), str(label)[:255]
    return target.audit_target_type, str(target.pk), str(target)[:255]


def user_target(user) -> tuple[str, int, str]:
    """The target of an event about a user account."""
    return (AuditEvent.TargetType.USER, user.pk, user.get_username())


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or the hop our own reverse proxy appended."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.BEHIND_REVERSE_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            address = forwarded.split(",")[-1].strip()
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def field_changes(before, after, secret_fields=()) -> dict[str, list[Any]]:
    """{field: [old, new]} for every field whose value differs; secrets never leave as values.

    A changed secret is recorded as [old state, "[changed]"] or [old state, "[cleared]"], where
    the old state is "[set]" or "[not set]".
    """
    changes = {}
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if name in secret_fields:
            old_state = SECRET_SET if old else SECRET_NOT_SET
            changes[name] = [old_state, SECRET_CHANGED if new else SECRET_CLEARED]
        else:
            changes[name] = [old, new]
    return changes


def record(
    action, *, actor=None, request=None, target=None, changes=None, context=None
) -> AuditEvent | None:
    """Append one event to the chain (when the change() it is in ends) and return it (None
    inside a change()).

    `actor` defaults to the request's signed-in user, else the system. `target` is a model
    instance with `audit_target_type` or a (type, id, label) tuple. `changes` should come from
    `field_changes()` so that secrets are masked.
    """
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    entry = {
        "action": action,
        "actor": actor,
        "source_ip": client_ip(request) if request is not None else None,
        "target": target,
        "changes": changes,
        "context": context,
    }
    return record_many([entry])


# The events of the change() blocks this thread (or task) is in, innermost last.
_pending: ContextVar[list[dict[str, Any]] | None] = ContextVar("audit_pending", default=None)


@contextmanager
def change() -> Iterator[None]:
    """One audited change: a transaction whose events (record() inside it) are appended to the
    chain as its last statement. Nested, it is a savepoint whose events join the outer
    change's only if it completes."""
    outer = _pending.get()
    entries: list[dict[str, Any]] = []
    token = _pending.set(entries)
    try:
        with transaction.atomic():
            yield
            if outer is None and entries:
                # The change's last statement: its failure fails the change anyway, so no
                # savepoint of its own (two round trips fewer per audited change).
                _append(entries, savepoint=False)
    finally:
        _pending.reset(token)
    if outer is not None:
        outer.extend(entries)


FAILED_SIGN_IN_WINDOW = 3600  # one login.failed event per client address and hour


def record_failed_sign_in(request, reason) -> None:
    """A failed single sign-on: anyone can make the callback fail, so failures from one client
    address become one login.failed event per hour: the first one's, which counts those the
    address had in the hour before. Counted in the shared cache, so the cap holds across web
    processes (with a cache local to each process, each has its own; check --deploy warns)."""
    ip = client_ip(request) or "unknown"
    first, before = ratelimits.first_in_window(f"login-failed:{ip}", FAILED_SIGN_IN_WINDOW)
    if not first:
        return
    record(
        Action.LOGIN_FAILED,
        request=request,
        actor=anonymous(""),
        context={
            "method": "oidc",
            "reason": reason[:500],
            **({"not_recorded_in_the_hour_before": before} if before else {}),
        },
    )


def record_many(entries, *, batch_size=2000) -> AuditEvent | None:
    """Append many events in one transaction (seeding, bulk imports); same chain as record().

    Each entry is a dict with the keyword arguments of record() (without request) plus
    optional `source_ip` and `created_at`. Returns the last event appended (None inside a
    change(), which appends them when it ends).
    """
    pending = _pending.get()
    if pending is not None:
        pending.extend(entries)
        return None
    return _append(entries, batch_size=batch_size)


def _append(entries, *, batch_size=2000, savepoint=True) -> AuditEvent | None:
    event, heard = None, []
    with transaction.atomic(savepoint=savepoint):
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        batch = []
        for entry in entries:
            event = _chained_event(head.last_id, head.last_hash, entry)
            head.last_id, head.last_hash = event.id, event.hash
            batch.append(event)
            if event.action in LISTENED_TO:
                heard.append(event)
            if len(batch) >= batch_size:
                AuditEvent.objects.bulk_create(batch)
                batch = []
        AuditEvent.objects.bulk_create(batch)
        head.save(update_fields=["last_id", "last_hash"])
        if heard:
            transaction.on_commit(
                lambda: event_recorded.send(sender=AuditEvent, events=heard), robust=True
            )
    return event


def _chained_event(last_id, last_hash, entry):
    who = actor_for(entry.get("actor"))
    target_type, target_id, target_label = _target_for(entry.get("target"))
    event = AuditEvent(
        id=last_id + 1,
        created_at=entry.get("created_at") or timezone.now(),
        actor_type=who.type,
        actor_id=who.id,
        actor_label=who.label,
        source_ip=entry.get("source_ip"),
        action=Action(entry["action"]),
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        changes=entry.get("changes") or {},
        context=entry.get("context") or {},
        request_id=(entry.get("request_id") or log_context.request_id())[:64],
        prev_hash=last_hash,
    )
    event.hash = event.compute_hash()
    return event


@dataclass
class ChainReport:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""
    last: tuple | None = None  # (id, hash) of the last event verified

    def __str__(self):
        if self.ok:
            return f"Audit chain intact: {self.checked} events verified."
        return f"Audit chain broken at event #{self.first_bad_id}: {self.problem}"


def verify_rows(rows, expected_last=None, start=(0, GENESIS_HASH)) -> ChainReport:
    """Check an iterable of hashed-field dicts, oldest first, as a chain continuing from
    `start` = (id, hash) of the event before the first row (#0 and the genesis hash for the
    whole chain; a hash of None accepts whatever the first row follows).

    `expected_last` is (last_id, last_hash) from the chain head, when checking the database.
    """
    previous_id, previous_hash = start
    checked = 0
    for fields in rows:
        event_id = fields["id"]
        if event_id != previous_id + 1:
            if event_id <= previous_id:
                return ChainReport(False, checked, event_id, "out of order (reordered)")
            return ChainReport(
                False,
                checked,
                previous_id + 1,
                f"missing (removed): the next event present is #{event_id}",
            )
        if previous_hash is not None and fields["prev_hash"] != previous_hash:
            return ChainReport(
                False, checked, event_id, "does not follow the event before it (reordered)"
            )
        if compute_event_hash(fields) != fields["hash"]:
            return ChainReport(
                False, checked, event_id, "content does not match its hash (changed)"
            )
        previous_id, previous_hash, checked = event_id, fields["hash"], checked + 1
    report = ChainReport(True, checked, last=(previous_id, previous_hash))
    if expected_last is not None and (previous_id, previous_hash) != tuple(expected_last):
        last_id, _ = expected_last
        if last_id > previous_id:
            problem = f"missing (removed): the chain head says the last event is #{last_id}"
            return ChainReport(False, checked, previous_id + 1, problem)
        return ChainReport(False, checked, previous_id, "the chain head does not match (changed)")
    return report


COLUMNS = (*HASHED_FIELDS, "hash")
# From this many events on, verification hashes in several processes (one per core).
PARALLEL_FROM = 200_000


class IsoTimestamp(Func):
    """A timestamp as the hash has it (Python's isoformat in UTC, to the microsecond), written
    by PostgreSQL: loading ten million timestamps into datetimes only to print them again took
    a third of a full verification."""

    template = (
        "to_char(%(expressions)s AT TIME ZONE 'UTC', "
        """'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""  # in UTC, so the offset is always +00:00
    )
    output_field = CharField()


def _database_rows(after=0, upto=None):
    events = AuditEvent.objects.filter(id__gt=after)
    if upto is not None:
        events = events.filter(id__lte=upto)
    on_postgresql = connections[events.db].vendor == "postgresql"
    created_at = IsoTimestamp("created_at") if on_postgresql else "created_at"
    columns = [created_at if name == "created_at" else name for name in COLUMNS]
    for row in events.order_by("id").values_list(*columns).iterator(chunk_size=5000):
        fields = dict(zip(COLUMNS, row, strict=True))
        if not on_postgresql:
            fields["created_at"] = fields["created_at"].isoformat(timespec="microseconds")
        yield fields


def verify_chain(since=None, processes=None, parallel_from=PARALLEL_FROM) -> ChainReport:
    """Walk the chain in the database: all of it, or (`since`, a checkpoint already checked
    against the database) only the events after it."""
    head = AuditChainHead.objects.filter(pk=1).values_list("last_id", "last_hash").first()
    head = head or (0, GENESIS_HASH)
    start = (since.event_id, since.hash) if since else (0, GENESIS_HASH)
    processes = processes or min(os.cpu_count() or 1, 8)
    # The worker processes are forked, which is safe only from a process running one thread:
    # forked from a threaded one (a Celery worker's pool, a test run's servers) a child can
    # inherit a lock another thread held and wait forever. Such callers hash in this process.
    single_threaded = threading.active_count() == 1
    if processes > 1 and head[0] - start[0] >= parallel_from and single_threaded:
        return _verify_in_processes(start, head, processes)
    return verify_rows(_database_rows(after=start[0]), expected_last=head, start=start)


def _verify_segment(bounds):
    """In a worker process: verify the events in (after, upto] on their own."""
    after, upto = bounds
    report = verify_rows(_database_rows(after, upto), start=(after, None))
    first = AuditEvent.objects.filter(id=after + 1).values_list("prev_hash", flat=True).first()
    return report, first


def _verify_in_processes(start, head, processes):
    """Hash segments of the chain in parallel (hashing is what costs), then check that each
    segment follows the one before it and that the last ends at the chain head."""
    bounds, size = [], max(1, (head[0] - start[0]) // (processes * 4) + 1)
    for after in range(start[0], head[0], size):
        bounds.append((after, min(after + size, head[0])))
    connections.close_all()  # every worker opens its own connection
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        results = list(pool.map(_verify_segment, bounds))
    checked, previous_hash = 0, start[1]
    for (after, upto), (report, first_prev_hash) in zip(bounds, results, strict=True):
        if not report.ok:
            return ChainReport(False, checked + report.checked, report.first_bad_id, report.problem)
        if report.checked and first_prev_hash != previous_hash:
            return ChainReport(
                False, checked, after + 1, "does not follow the event before it (reordered)"
            )
        if report.last[0] != upto:
            return ChainReport(
                False, checked + report.checked, report.last[0] + 1,
                f"missing (removed): the chain head says the last event is #{head[0]}",
            )  # fmt: skip
        checked, previous_hash = checked + report.checked, report.last[1]
    if previous_hash != head[1]:
        return ChainReport(False, checked, head[0], "the chain head does not match (changed)")
    return ChainReport(True, checked)
