"""Delivery: sending versions to instances that are pushed to (an agent's webhook, AWS SSM
Parameter Store), recording every attempt and outcome, retrying transient failures, and finding
the overdue requests the outbox sweeper sends again. No Celery here: console/tasks.py runs it.

Each push target is one sender, chosen by the instance's `push_target` (SENDERS).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from console import audit, aws, diffgram, outbound, versions
from console.models import ConfigVersion, Instance, PushAttempt, PushRequest, SigninAccount

logger = logging.getLogger(__name__)
Action = audit.Action

# Large JSON columns a push never needs; loading them cost a third of each delivery.
PROVIDER_SNAPSHOTS = ("discovery_snapshot", "jwks_snapshot", "validation_checks")
# A task pushes this many instances, PUSH_THREADS at a time, and records them in bulk: a
# publish to 1,000 instances is 10 tasks, not 1,000 (see docs/BENCHMARKS.md, P2).
PUSH_BATCH_SIZE = 100
PUSH_THREADS = 16
# Retries are the sweeper's (tasks.sweep_outbox, every SWEEP_EVERY seconds): each request waits
# its own delay, exponential with jitter, at most a minute for its first PUSH_RETRY_EARLY_TRIES
# tries (half an hour to an hour: a receiver back from an outage is served within a minute),
# then doubling from there to at most an hour.
PUSH_RETRY_EARLY_MAX_DELAY = 60
PUSH_RETRY_EARLY_TRIES = 60
PUSH_RETRY_MAX_DELAY = 3600
SWEEP_EVERY = 20
# A batch holds a lease on the requests it has not recorded yet: their due_at in the database
# and a key in the shared cache, renewed every LEASE_SECONDS / 3. A batch lost with its worker
# stops renewing, and the sweeper sends what it held again within LEASE_SECONDS + SWEEP_EVERY.
LEASE_SECONDS = 30
# Outcomes are recorded as they come in, up to this many together, none held longer than
# RECORD_WITHIN seconds: a worker lost mid-batch loses the records of at most that much. When
# the database refuses them (restarting, full, unreachable), they are kept in memory and tried
# again, for up to RECORD_PATIENCE seconds, while the leases keep the sweeper off them: an
# answered push is recorded once the database is back, never sent again for want of a record.
RECORD_EVERY = PUSH_THREADS
RECORD_WITHIN = 0.5
RECORD_PATIENCE = 600
# A batch's time limit follows from its size (every round of PUSH_THREADS webhooks may take the
# outbound deadline) and the patience above. A batch cut off anyway is swept again later.
PUSH_BATCH_TIME_LIMIT = (
    math.ceil(PUSH_BATCH_SIZE / PUSH_THREADS) * outbound.TOTAL_DEADLINE + RECORD_PATIENCE + 30
)
SIGNATURE_HEADER = "X-Diffgram-SSO-Signature"
TIMESTAMP_HEADER = "X-Diffgram-SSO-Timestamp"


@dataclass
class DeliveryError(Exception):
    message: str
    permanent: bool
    http_status: int | None = None


def signed_webhook(instance, version, signin_account=None) -> tuple[bytes, dict[str, str]]:
    """The webhook request (body, headers) for an instance: HMAC-SHA256 over timestamp.body.
    With `signin_account`, an agent that runs synthetic sign-ins gets the test account in
    "verify" (it keeps it in memory; the .env never holds it)."""
    all_settings = version.settings_for(instance)
    body = json.dumps(
        {
            "instance": instance.name,
            "version": version.number,
            "sequence": instance.assignment_sequence,
            "content_hash": version.content_hash_for(instance),
            "settings": all_settings,
            # What the agent checks Diffgram against after applying.
            "verify": versions.login_expectations(version, instance, signin_account),
        },
        sort_keys=True,
    ).encode()
    headers = {
        "Content-Type": "application/json",
        **signature_headers(instance.signing_secret(), body),
    }
    return body, headers


def signature_headers(secret, body) -> dict[str, str]:
    """HMAC-SHA256 over "timestamp.body", as the agent (and an alert webhook) checks it."""
    timestamp = str(int(time.time()))
    signature = hmac.new(
        secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: f"sha256={signature}"}


@dataclass
class Sent:
    """A successful send: the HTTP status (or None) and, when the other side has applied the
    version by now, how the console knows (recorded as the instance's applied state)."""

    http_status: int | None
    applied: str = ""


class Sender:
    """One push target. `send` delivers a version to an instance, raising DeliveryError."""

    def send(self, instance, version, signin_account=None) -> Sent:
        raise NotImplementedError


class WebhookSender(Sender):
    """A signed POST to the agent's webhook. The agent answers 200 with {"applied": N} once it
    has applied version N (now, or before: a push sent again), so the console records the
    apply from the answer; the agent reports its verification afterwards."""

    def send(self, instance, version, signin_account=None) -> Sent:
        problem = outbound.webhook_url_problem(
            instance.webhook_url, allow_http=instance.webhook_allow_http
        )
        if problem:
            raise DeliveryError(f"Not sent to {instance.webhook_url}: {problem}", permanent=True)
        body, headers = signed_webhook(instance, version, signin_account)
        try:
            response = outbound.post(instance.webhook_url, body, headers)
        except outbound.OutboundError as error:
            raise DeliveryError(error.message, error.permanent) from None
        if 200 <= response.status < 300:
            return Sent(response.status, applied=_applied_by_agent(response.body, version))
        transient = response.status in (408, 429) or response.status >= 500
        detail = response.body[:200].decode("utf-8", "replace").strip()
        raise DeliveryError(
            f"The agent answered HTTP {response.status}" + (f": {detail}" if detail else ""),
            permanent=not transient,
            http_status=response.status,
        )


def _applied_by_agent(body, version) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return ""
    if isinstance(answer, dict) and answer.get("applied") == version.number:
        return "Applied by the agent (its answer to the push)."
    return ""


class SSMSender(Sender):
    """One Parameter Store parameter per variable (SecureString for secrets); written is applied.
    (No agent reads it: synthetic sign-ins of such instances run from the console.)"""

    def send(self, instance, version, signin_account=None) -> Sent:
        all_settings = version.settings_for(instance)
        prefix = instance.effective_ssm_prefix()
        client = aws.client("ssm", region=instance.ssm_region)
        try:
            for name, value in all_settings.items():
                aws.call(
                    client, "put_parameter", "ssm:PutParameter", prefix + name,
                    Name=prefix + name, Value=value, Overwrite=True,
                    Type="SecureString" if name in diffgram.SECRET_VARIABLES else "String",
                )  # fmt: skip
            stale = [
                prefix + name for name in diffgram.MANAGED_VARIABLES if name not in all_settings
            ]
            for start in range(0, len(stale), 10):
                aws.call(
                    client, "delete_parameters", "ssm:DeleteParameters", prefix,
                    Names=stale[start : start + 10],
                )  # fmt: skip
        except aws.AWSError as error:
            raise DeliveryError(f"AWS SSM: {error}", permanent=not error.transient) from None
        return Sent(None, applied="Written to AWS SSM Parameter Store.")


SENDERS = {Instance.PushTarget.WEBHOOK: WebhookSender(), Instance.PushTarget.SSM: SSMSender()}


@dataclass
class AttemptOutcome:
    started_at: object
    finished_at: object
    http_status: int | None
    error: DeliveryError | None
    applied: str = ""  # Sent.applied


def deliver(push_request_ids) -> list[tuple[int, float]]:
    """Try one delivery of each push request, concurrently, and record each outcome in small
    groups as they come in, so a crash loses at most a group's records. Returns
    [(push request id, seconds until its next try)] for the transient failures with tries left
    (PUSH_MAX_ATTEMPTS, counted per request), which the sweeper sends when due; every other
    request has ended.

    Idempotent: a request that already ended, or whose version is no longer the instance's
    assigned one, is left alone; re-sending the same version is harmless to the agent.
    """
    pushes = _start_attempts(push_request_ids)
    retries: list[tuple[int, float]] = []
    if not pushes:
        return retries
    accounts = _signin_accounts(pushes)
    lease = Lease([push.pk for push in pushes])
    with ThreadPoolExecutor(max_workers=min(PUSH_THREADS, len(pushes))) as pool:
        running = {pool.submit(_attempt, push, accounts.get(push.pk)): push for push in pushes}
        done, oldest = [], None
        while running:  # database work stays in this thread
            finished, _ = wait(running, timeout=RECORD_WITHIN, return_when=FIRST_COMPLETED)
            for future in finished:
                done.append((running.pop(future), future.result()))
            oldest = oldest or (time.monotonic() if done else None)
            late = oldest is not None and time.monotonic() - oldest >= RECORD_WITHIN
            if done and (len(done) >= RECORD_EVERY or late or not running):
                retries += _record_patiently(done, lease)
                done, oldest = [], None
            lease.renew()
    return retries


class Lease:
    """What a batch holds: its requests not recorded yet. Renewed in the database (due_at) and
    in the shared cache every LEASE_SECONDS / 3; the sweeper leaves leased requests alone."""

    def __init__(self, push_ids):
        self.held, self.renewed = set(push_ids), time.monotonic()  # taken at the start

    def release(self, push_ids) -> None:
        push_ids = list(push_ids)
        self.held -= set(push_ids)
        with contextlib.suppress(Exception):  # a cache outage: the lease just runs out
            cache.delete_many([lease_key(pk) for pk in push_ids])

    def renew(self) -> None:
        if not self.held or time.monotonic() - self.renewed < LEASE_SECONDS / 3:
            return
        self.renewed = time.monotonic()
        take_leases(self.held)
        try:
            PushRequest.objects.filter(pk__in=self.held, state=PushRequest.State.PENDING).update(
                due_at=timezone.now() + timedelta(seconds=LEASE_SECONDS)
            )
        except (OperationalError, InterfaceError):
            connection.close()  # the database is out: the cache's lease holds meanwhile


def lease_key(push_id) -> str:
    return f"push-lease:{push_id}"


def take_leases(push_ids) -> None:
    with contextlib.suppress(Exception):  # a cache outage: the database's lease stands
        cache.set_many({lease_key(pk): 1 for pk in push_ids}, timeout=LEASE_SECONDS)


def leased(push_ids) -> set[int]:
    """The requests a live batch holds (those whose lease key is in the shared cache)."""
    try:
        found = cache.get_many([lease_key(pk) for pk in push_ids])
    except Exception:  # noqa: BLE001 - a cache outage: the database's due_at decides
        return set()
    return {int(key.rsplit(":", 1)[1]) for key in found}


def _start_attempts(push_request_ids):
    """Lock the pending requests, end those superseded, leave those another live batch holds
    (the same request can be in two messages: the first, and the sweeper's when the first had
    not started in time), count an attempt for the rest, and lease them: a request whose lease
    runs out unrecorded was lost with its worker, and the sweeper sends it again."""
    now = timezone.now()
    with transaction.atomic():
        pending = list(
            PushRequest.objects.select_for_update(of=("self",))
            .select_related("instance")
            .filter(pk__in=push_request_ids, state=PushRequest.State.PENDING)
            .order_by("pk")
        )
        held = leased([p.pk for p in pending])
        pending = [p for p in pending if p.pk not in held]
        current = [p for p in pending if p.instance.assigned_version_id == p.version_id]
        superseded = [p.pk for p in pending if p.instance.assigned_version_id != p.version_id]
        if superseded:
            PushRequest.objects.filter(pk__in=superseded).update(
                state=PushRequest.State.SUPERSEDED, completed_at=now
            )
        for push in current:
            push.attempts += 1
            push.due_at = now + timedelta(seconds=LEASE_SECONDS)  # renewed while it is held
        PushRequest.objects.bulk_update(current, ["attempts", "due_at"])
        take_leases([push.pk for push in current])  # before the row locks are let go
    # A batch is usually one version: load it (and its provider's name) once, decrypt it once.
    versions = (
        ConfigVersion.objects.select_related("provider")
        .defer(*(f"provider__{name}" for name in PROVIDER_SNAPSHOTS))
        .in_bulk({push.version_id for push in current})
    )
    for push in current:
        push.version = versions[push.version_id]
    return current


def _signin_accounts(pushes) -> dict[int, SigninAccount]:
    """Push request id -> the test account its agent signs in with (instances whose agent
    runs the synthetic sign-ins get their provider's, in "verify")."""
    runners = [p for p in pushes if p.instance.signin_runner == Instance.SigninRunner.AGENT]
    if not runners:
        return {}
    providers = {push.version.provider_id for push in runners}
    accounts = {a.provider_id: a for a in SigninAccount.objects.filter(provider_id__in=providers)}
    return {
        push.pk: accounts[push.version.provider_id]
        for push in runners
        if push.version.provider_id in accounts
    }


def _attempt(push, signin_account=None):
    """Send one push (in a pool thread: no database access here)."""
    instance, version = push.instance, push.version
    started, sent, error = timezone.now(), Sent(None), None
    sender = SENDERS.get(instance.push_target)
    try:
        if sender is None:
            error = DeliveryError("The instance has no push target any more.", permanent=True)
        else:
            sent = sender.send(instance, version, signin_account)
    except DeliveryError as delivery_error:
        error, sent = delivery_error, Sent(delivery_error.http_status)
    except Exception as unexpected:  # a bug must not lose the rest of the batch
        logger.exception("Push request %s failed unexpectedly", push.pk)
        error = DeliveryError(f"Unexpected error: {type(unexpected).__name__}", permanent=False)
    return AttemptOutcome(started, timezone.now(), sent.http_status, error, sent.applied)


def retry_delay(attempts) -> float:
    """Seconds before the next try after `attempts` tries: doubling from
    PUSH_RETRY_BACKOFF_SECONDS to at most a minute for the first PUSH_RETRY_EARLY_TRIES tries,
    then from a minute to at most an hour; the lower half of it random, so that a fleet does not
    retry in step. With the default 90 tries, a push keeps trying for 13 to 26 hours."""
    if attempts <= PUSH_RETRY_EARLY_TRIES:
        base = django_settings.PUSH_RETRY_BACKOFF_SECONDS * 2 ** min(attempts, 20)
        ceiling = min(base, PUSH_RETRY_EARLY_MAX_DELAY)
    else:
        later = min(attempts - PUSH_RETRY_EARLY_TRIES, 20)
        ceiling = min(PUSH_RETRY_EARLY_MAX_DELAY * 2**later, PUSH_RETRY_MAX_DELAY)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


def _record_patiently(done, lease):
    """Record a group of outcomes. A database that refuses (restarting, full, unreachable) is
    waited for, up to RECORD_PATIENCE seconds, with the outcomes in memory and the lease kept
    in the shared cache: what was answered is recorded once, when the database is back."""
    given_up_at = time.monotonic() + RECORD_PATIENCE
    pause, warned = 0.5, False
    while True:
        try:
            retries = _record_outcomes(done)
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + pause > given_up_at:
                logger.error(
                    "Gave up recording %d push outcomes after %d s (%s): the sweeper sends "
                    "them again.", len(done), RECORD_PATIENCE, _database_error(error),
                )  # fmt: skip
                return []
            if not warned:
                logger.warning(
                    "The database refused %d push outcomes (%s): keeping them until it takes "
                    "them.", len(done), _database_error(error),
                )  # fmt: skip
                warned = True
            connection.close()  # the next query opens a new connection
            lease.renew()  # in the cache, and in the database when it takes that
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
            continue
        if warned:
            logger.warning("Recorded %d push outcomes the database had refused.", len(done))
        lease.release(push.pk for push, _ in done)
        return retries


def _database_error(error) -> str:
    """One line about a database error: its SQLSTATE when it has one, and its first line."""
    cause = getattr(error, "__cause__", None)
    state = getattr(cause, "sqlstate", None) or getattr(
        getattr(cause, "diag", None), "sqlstate", None
    )
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"SQLSTATE {state}: {first}" if state else first


@dataclass
class _Outcomes:
    """What a batch's answers come to, before anything is written."""

    attempts: list[PushAttempt] = field(default_factory=list)
    retries: list[tuple[PushRequest, float]] = field(default_factory=list)
    finished: list[PushRequest] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # (version number, the agent's detail) -> the instances a push applied it to
    applied: dict[tuple[int, str], list[Instance]] = field(default_factory=dict)


def _record_outcomes(done):
    """Attempt rows, request states, the applied state of instances whose push applied the
    version (SSM: written is applied; an agent that answered it applied it) and audit events,
    in one transaction taking its locks in publish()'s order: instances, push requests, the
    audit chain head (audit.change() appends the events last)."""
    now = timezone.now()
    outcomes = _Outcomes()
    for push, outcome in done:
        _sort_outcome(outcomes, push, outcome, now)
    with audit.change():
        _mark_applied(outcomes, now)
        _write_push_rows(outcomes, now)
        if outcomes.events:
            audit.record_many(outcomes.events)
    return [(push.pk, delay) for push, delay in outcomes.retries]


def _sort_outcome(outcomes, push, outcome, now) -> None:
    """One answer: an attempt row, and a retry (when the error may pass and tries are left)
    or a finished push with its event."""
    error = outcome.error
    push.last_error = error.message[:1000] if error else ""
    outcomes.attempts.append(
        PushAttempt(
            request=push, started_at=outcome.started_at, finished_at=outcome.finished_at,
            ok=error is None, http_status=outcome.http_status, error=push.last_error,
        )
    )  # fmt: skip
    tries_left = push.attempts < django_settings.PUSH_MAX_ATTEMPTS
    if error is not None and not error.permanent and tries_left:
        delay = retry_delay(push.attempts)
        push.due_at = now + timedelta(seconds=delay)  # the sweeper sends it then
        outcomes.retries.append((push, delay))
        return
    push.state = PushRequest.State.FAILED if error else PushRequest.State.SUCCEEDED
    push.completed_at = now
    outcomes.finished.append(push)
    instance, version = push.instance, push.version
    context = {
        "version": version.number,
        "provider": version.provider.name,
        "target": instance.push_target,
        "attempts": push.attempts,
        **({"error": error.message} if error else {}),
        **({"http_status": outcome.http_status} if outcome.http_status else {}),
    }
    outcomes.events.append(
        {
            "action": Action.PUSH_FAILED if error else Action.PUSH_SUCCEEDED,
            "target": instance,
            "context": context,
        }
    )
    if not error and outcome.applied:
        outcomes.applied.setdefault((version.number, outcome.applied), []).append(instance)


def _mark_applied(outcomes, now) -> None:
    """Instances a push applied a version to, not again for one already at it (a push sent
    again, or the agent's own report came first)."""
    for (number, detail), instances in outcomes.applied.items():
        newly = list(
            Instance.objects.select_for_update()
            .filter(pk__in=[i.pk for i in instances])
            .exclude(applied_version_number=number, applied_status="ok")
            .values_list("pk", flat=True)
        )
        Instance.objects.filter(pk__in=newly).update(
            applied_version_number=number, applied_status="ok", applied_at=now,
            applied_detail=detail,
        )  # fmt: skip
        outcomes.events += [
            {"action": Action.INSTANCE_APPLIED, "target": instance,
             "context": {"version": number, "via": instance.push_target}}
            for instance in instances if instance.pk in newly
        ]  # fmt: skip


def _write_push_rows(outcomes, now) -> None:
    PushAttempt.objects.bulk_create(outcomes.attempts)
    # Successes share their values: one UPDATE. Failures differ by their error (rarer).
    succeeded = [p.pk for p in outcomes.finished if p.state == PushRequest.State.SUCCEEDED]
    failed = [p for p in outcomes.finished if p.state == PushRequest.State.FAILED]
    PushRequest.objects.filter(pk__in=succeeded).update(
        state=PushRequest.State.SUCCEEDED, last_error="", completed_at=now
    )
    PushRequest.objects.bulk_update(failed, ["state", "last_error", "completed_at"])
    PushRequest.objects.bulk_update(
        [push for push, _ in outcomes.retries], ["last_error", "due_at"]
    )


def take_overdue() -> list[int]:
    """The pending push requests that are overdue, given a new deadline so that the next sweep
    leaves them alone while they are sent again: never started (the broker was down at
    publish), started and never recorded (lost with a worker, or cut off by its time limit), or
    waiting for a retry that is now due. Call it in a transaction; it locks what it takes."""
    now = timezone.now()
    due = list(
        PushRequest.objects.select_for_update(skip_locked=True)
        .filter(state=PushRequest.State.PENDING, due_at__lt=now)
        .values_list("pk", flat=True)[:1000]
    )
    held = leased(due)  # a live batch holds those
    due = [pk for pk in due if pk not in held]
    PushRequest.objects.filter(pk__in=due).update(
        due_at=now + timedelta(seconds=django_settings.PUSH_SWEEP_AFTER_SECONDS)
    )
    return due
