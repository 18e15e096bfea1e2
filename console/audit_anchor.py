"""Anchoring the audit chain outside the database, as CloudTrail's signed digest files do.

The hash chain (console/audit.py) proves that the events in the database follow one another,
but someone who can write to the database can delete the newest events and rewrite the chain
head, or recompute every hash, and the chain still verifies. So, every AUDIT_CHECKPOINT_MINUTES
and on demand (`manage.py audit_checkpoint`), a checkpoint — the newest event's id and hash and
the number of events — is signed with AUDIT_SIGNING_KEY (an HMAC key kept out of the database)
and appended to sinks the database cannot reach: a file (AUDIT_CHECKPOINT_FILE, JSON lines) and
an S3 prefix (AUDIT_CHECKPOINT_S3, one object per checkpoint). `verify_audit` checks the chain
against the newest checkpoints: an anchored event that is gone means truncation, one whose hash
differs means rewriting.

The checkpoints of a sink form a chain of their own: each carries a sequence number one above
the one before and the digest of the one before, under its signature. An old, genuine
checkpoint appended again (to make the newest ones look older than they are), one taken out or
put in another order breaks that chain, and so does an empty or missing sink while events old
enough to have been anchored exist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from django.utils.translation import ngettext

from console import aws
from console.models import AuditChainHead, AuditEvent

CHECKED_CHECKPOINTS = 5  # the newest ones verify_audit compares the chain with


class CheckpointError(Exception):
    """Checkpoints cannot be written or read; the message says what to fix."""


@dataclass(frozen=True)
class Checkpoint:
    event_id: int
    hash: str
    count: int
    created_at: str
    signature: str = ""
    sequence: int = 0  # 1, 2, 3… in its sink; 0: written before checkpoints were chained
    previous: str = ""  # digest() of the checkpoint before it in its sink

    def payload(self) -> bytes:
        fields: dict[str, object] = {
            "event_id": self.event_id, "hash": self.hash, "count": self.count,
            "created_at": self.created_at,
        }  # fmt: skip
        if self.sequence:
            fields |= {"sequence": self.sequence, "previous": self.previous}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        """What the next checkpoint of the sink names as its previous one."""
        return hashlib.sha256(self.payload() + self.signature.encode()).hexdigest()

    def sign(self, key) -> Checkpoint:
        digest = hmac.new(key.encode(), self.payload(), hashlib.sha256).hexdigest()
        return replace(self, signature=digest)

    def signature_ok(self, key) -> bool:
        return hmac.compare_digest(self.sign(key).signature, self.signature)

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text) -> Checkpoint | None:
        try:
            data = json.loads(text)
            return cls(
                event_id=int(data["event_id"]), hash=str(data["hash"]),
                count=int(data["count"]), created_at=str(data["created_at"]),
                signature=str(data.get("signature", "")), sequence=int(data.get("sequence", 0)),
                previous=str(data.get("previous", "")),
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None  # unreadable: treated as a damaged checkpoint


class FileSink:
    """JSON lines appended to a file (ideally on another machine, or append-only storage)."""

    def __init__(self, path):
        self.path = path

    def __str__(self):
        return self.path

    def append(self, checkpoint) -> None:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            with os.fdopen(descriptor, "a", encoding="utf-8") as sink:
                sink.write(checkpoint.as_json() + "\n")
                sink.flush()
                os.fsync(sink.fileno())
        except OSError as error:
            raise CheckpointError(f"Cannot append to {self.path}: {error.strerror}") from None

    def read(self) -> list[Checkpoint | None]:
        try:
            with open(self.path, encoding="utf-8") as sink:
                return [Checkpoint.from_json(line) for line in sink if line.strip()]
        except FileNotFoundError:
            return []
        except OSError as error:
            raise CheckpointError(f"Cannot read {self.path}: {error.strerror}") from None


class S3Sink:
    """One object per checkpoint under s3://bucket/prefix/ (names sort by event id)."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.bucket, self.prefix = parts.netloc, parts.path.lstrip("/")
        if self.prefix and not self.prefix.endswith("/"):
            self.prefix += "/"
        self.url = url

    def __str__(self):
        return self.url

    def _client(self):
        return aws.client("s3")

    def append(self, checkpoint) -> None:
        # "seq-" sorts after the event-id names of checkpoints written before chaining.
        key = f"{self.prefix}seq-{checkpoint.sequence:015d}.json"
        try:
            self._client().put_object(
                Bucket=self.bucket, Key=key, Body=checkpoint.as_json().encode(),
                ContentType="application/json",
            )  # fmt: skip
        except aws.ERRORS as error:
            raise CheckpointError(f"Cannot write to {self.url}: {error}") from None

    def read(self, newest=CHECKED_CHECKPOINTS) -> list[Checkpoint | None]:
        client = self._client()
        try:
            keys = []
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                keys += [item["Key"] for item in page.get("Contents", [])]
            return [
                Checkpoint.from_json(
                    client.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
                )
                for key in sorted(keys)[-newest:]
            ]
        except aws.ERRORS as error:
            raise CheckpointError(f"Cannot read {self.url}: {error}") from None


def configured_sinks() -> list[FileSink | S3Sink]:
    sinks: list[FileSink | S3Sink] = []
    if settings.AUDIT_CHECKPOINT_FILE:
        sinks.append(FileSink(settings.AUDIT_CHECKPOINT_FILE))
    if settings.AUDIT_CHECKPOINT_S3:
        sinks.append(S3Sink(settings.AUDIT_CHECKPOINT_S3))
    return sinks


def _signing_key():
    if not settings.AUDIT_SIGNING_KEY:
        raise CheckpointError("Set AUDIT_SIGNING_KEY to sign audit checkpoints.")
    return settings.AUDIT_SIGNING_KEY


def write_checkpoint() -> Checkpoint:
    """Sign the chain's present end and append it to every sink, each time chained to that
    sink's newest genuine checkpoint. Returns the checkpoint (as the first sink got it)."""
    sinks = configured_sinks()
    if not sinks:
        raise CheckpointError("Set AUDIT_CHECKPOINT_FILE or AUDIT_CHECKPOINT_S3 first.")
    key = _signing_key()
    head = AuditChainHead.objects.filter(pk=1).first()
    end = Checkpoint(
        event_id=head.last_id if head else 0,
        hash=head.last_hash if head else "",
        count=AuditEvent.objects.filter(id__lte=head.last_id).count() if head else 0,
        created_at=timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    written = []
    for sink in sinks:
        genuine = [c for c in sink.read() if c is not None and c.signature_ok(key)]
        last = max(genuine, key=lambda c: c.sequence, default=None)
        checkpoint = replace(
            end,
            sequence=(last.sequence if last else 0) + 1,
            previous=last.digest() if last else "",
        ).sign(key)
        sink.append(checkpoint)
        written.append(checkpoint)
    return written[0]


@dataclass
class AnchorReport:
    ok: bool
    checked: int = 0
    problems: list = field(default_factory=list)
    newest_good: Checkpoint | None = None

    def __str__(self):
        if self.ok:
            if not self.checked:
                return "No audit checkpoints to compare with yet."
            return ngettext(
                "Matches the newest signed checkpoint.",
                "Matches the newest %d signed checkpoints.",
                self.checked,
            ).replace("%d", str(self.checked))
        return "Does not match the signed checkpoints: " + "; ".join(self.problems)


def chain_problems(sink, checkpoints, key) -> list[str]:
    """What breaks the sink's chain of checkpoints (in the order the sink holds them; the first
    one read starts it): a damaged or foreign one, or one whose sequence or previous digest
    does not follow the one before (replayed, reordered, or with one missing between)."""
    problems, before = [], None
    for checkpoint in checkpoints:
        if checkpoint is None or not checkpoint.signature_ok(key):
            problems.append(f"a checkpoint in {sink} is damaged or not signed with this key")
            continue
        if checkpoint.sequence == 0:
            if before is not None and before.sequence:
                problems.append(f"an unchained checkpoint in {sink} follows chained ones")
            before = checkpoint
            continue
        if before is None or before.sequence == 0:  # where this sink's chain starts
            before = checkpoint
            continue
        expected = before.sequence + 1
        follows = checkpoint.previous == before.digest()
        if checkpoint.sequence != expected or not follows:
            problems.append(
                f"checkpoint {checkpoint.sequence} (event #{checkpoint.event_id}) in {sink} does "
                f"not follow the one before it (expected checkpoint {expected}): checkpoints "
                "were replayed, reordered or taken out"
            )
        before = checkpoint
    return problems


def newest_checkpoints(held) -> list[tuple[FileSink | S3Sink, Checkpoint | None]]:
    """The newest checkpoints of every sink ({sink: what it holds}), newest first
    (unreadable ones as None)."""
    found = []
    for sink, checkpoints in held.items():
        found += [(sink, checkpoint) for checkpoint in checkpoints[-CHECKED_CHECKPOINTS:]]
    return sorted(found, key=lambda pair: -(pair[1].event_id if pair[1] else -1))


def _missing_checkpoints(sink) -> str:
    """Why an empty sink is wrong, or "" while no event is old enough to have been anchored."""
    due = timezone.now() - timedelta(minutes=2 * settings.AUDIT_CHECKPOINT_MINUTES)
    oldest = AuditEvent.objects.filter(created_at__lt=due).order_by("id").first()
    if oldest is None:
        return ""
    return (
        f"{sink} holds no checkpoint, although events from {oldest.created_at:%Y-%m-%d %H:%M} "
        "UTC on should be anchored: it was emptied, replaced or never written"
    )


def verify_against_checkpoints() -> AnchorReport:
    """Compare the database's chain with the newest signed checkpoints of every sink, after
    checking each sink's own chain of checkpoints."""
    key = _signing_key()
    problems, checked, newest_good = [], 0, None
    present_end = AuditChainHead.objects.filter(pk=1).values_list("last_id", flat=True).first()
    held = {sink: sink.read() for sink in configured_sinks()}
    for sink, checkpoints in held.items():
        if checkpoints:
            problems += chain_problems(sink, checkpoints, key)
        elif missing := _missing_checkpoints(sink):
            problems.append(missing)
    present = []  # (sink, checkpoint) whose anchored event is still there, unchanged
    for sink, checkpoint in newest_checkpoints(held):
        checked += 1
        if checkpoint is None or not checkpoint.signature_ok(key):
            continue  # said above
        anchored = _anchored(sink, checkpoint)
        found = AuditEvent.objects.filter(id=checkpoint.event_id).values_list("hash", flat=True)
        stored = found.first()
        if stored is None and checkpoint.event_id:
            problems.append(
                f"{anchored} is gone: the history was truncated (the chain now ends at "
                f"#{present_end or 0})"
            )
        elif stored is not None and stored != checkpoint.hash:
            problems.append(f"{anchored} has another hash now: the history was rewritten")
        else:
            present.append((sink, checkpoint))
    counts = events_up_to({checkpoint.event_id for _, checkpoint in present})
    for sink, checkpoint in present:
        if counts[checkpoint.event_id] != checkpoint.count:
            anchored = _anchored(sink, checkpoint)
            problems.append(f"the events up to {anchored} are not the {checkpoint.count} anchored")
        elif newest_good is None or checkpoint.event_id > newest_good.event_id:
            newest_good = checkpoint
    return AnchorReport(not problems, checked, problems, newest_good)


def _anchored(sink, checkpoint) -> str:
    return f"event #{checkpoint.event_id} (anchored {checkpoint.created_at} in {sink})"


def events_up_to(event_ids) -> dict[int, int]:
    """How many events have an id up to each of `event_ids`. The count that proves nothing
    before a checkpoint was removed reads the id index up to it, so it grows with the history
    (docs/BENCHMARKS.md, P3): the whole range is counted once, for the highest id, and each
    other from it less the few events after it, rather than the whole range once per
    checkpoint compared (five per sink)."""
    if not event_ids:
        return {}
    top = max(event_ids)
    total = AuditEvent.objects.filter(id__lte=top).count()
    counts = {top: total}
    for event_id in set(event_ids) - {top}:
        counts[event_id] = total - AuditEvent.objects.filter(id__gt=event_id, id__lte=top).count()
    return counts
