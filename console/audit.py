"""The only writer of audit events, and the chain verification.

Call `record()` inside the transaction that makes the change, so that the change and its event
commit together or not at all. Writers serialise on the chain head row, so concurrent writers
cannot fork the chain.
"""

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.models import GENESIS_HASH, AuditChainHead, AuditEvent, compute_event_hash

Action = AuditEvent.Action
ActorType = AuditEvent.ActorType

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


def anonymous(tried_username):
    """Someone not signed in, e.g. a failed login for `tried_username`."""
    return Actor(ActorType.ANONYMOUS, "", (tried_username or "")[:150])


def _actor_for(actor):
    if actor is None:
        return SYSTEM
    if isinstance(actor, Actor):
        return actor
    if hasattr(actor, "audit_actor"):  # e.g. a Diffgram instance calling the API
        return actor.audit_actor()
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


def client_ip(request):
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


def field_changes(before, after, secret_fields=()):
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


def record(action, *, actor=None, request=None, target=None, changes=None, context=None):
    """Append one event to the chain and return it.

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


def record_many(entries, *, batch_size=2000):
    """Append many events in one transaction (seeding, bulk imports); same chain as record().

    Each entry is a dict with the keyword arguments of record() (without request) plus
    optional `source_ip` and `created_at`. Returns the last event appended.
    """
    event = None
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
        batch = []
        for entry in entries:
            event = _chained_event(head.last_id, head.last_hash, entry)
            head.last_id, head.last_hash = event.id, event.hash
            batch.append(event)
            if len(batch) >= batch_size:
                AuditEvent.objects.bulk_create(batch)
                batch = []
        AuditEvent.objects.bulk_create(batch)
        head.save(update_fields=["last_id", "last_hash"])
    return event


def _chained_event(last_id, last_hash, entry):
    who = _actor_for(entry.get("actor"))
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

    def __str__(self):
        if self.ok:
            return f"Audit chain intact: {self.checked} events verified."
        return f"Audit chain broken at event #{self.first_bad_id}: {self.problem}"


def verify_rows(rows, expected_last=None):
    """Check an iterable of hashed-field dicts, oldest first, as a chain starting at #1.

    `expected_last` is (last_id, last_hash) from the chain head, when checking the database.
    """
    previous_id, previous_hash, checked = 0, GENESIS_HASH, 0
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
        if fields["prev_hash"] != previous_hash:
            return ChainReport(
                False, checked, event_id, "does not follow the event before it (reordered)"
            )
        if compute_event_hash(fields) != fields["hash"]:
            return ChainReport(
                False, checked, event_id, "content does not match its hash (changed)"
            )
        previous_id, previous_hash, checked = event_id, fields["hash"], checked + 1
    if expected_last is not None and (previous_id, previous_hash) != tuple(expected_last):
        last_id, _ = expected_last
        if last_id > previous_id:
            problem = f"missing (removed): the chain head says the last event is #{last_id}"
            return ChainReport(False, checked, previous_id + 1, problem)
        return ChainReport(False, checked, previous_id, "the chain head does not match (changed)")
    return ChainReport(True, checked)


def _database_rows():
    columns = [
        "id", "created_at", "actor_type", "actor_id", "actor_label", "source_ip", "action",
        "target_type", "target_id", "target_label", "changes", "context", "prev_hash", "hash",
    ]  # fmt: skip
    rows = AuditEvent.objects.order_by("id").values_list(*columns).iterator(chunk_size=5000)
    for row in rows:
        fields = dict(zip(columns, row, strict=True))
        fields["created_at"] = fields["created_at"].isoformat(timespec="microseconds")
        yield fields


def verify_chain():
    """Walk the whole chain in the database."""
    head = AuditChainHead.objects.filter(pk=1).values_list("last_id", "last_hash").first()
    return verify_rows(_database_rows(), expected_last=head or (0, GENESIS_HASH))
