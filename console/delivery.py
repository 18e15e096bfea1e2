"""Delivery: sending versions to instances that are pushed to (an agent's webhook, AWS SSM
Parameter Store), recording every attempt and outcome, retrying transient failures, and finding
the overdue requests the outbox sweeper sends again. No Celery here: console/tasks.py runs it.

Each push target is one sender, chosen by the instance's `push_target` (SENDERS).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import random
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings as django_settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from console import audit, diffgram, outbound
from console.models import ConfigVersion, Instance, PushAttempt, PushRequest, SigninAccount

logger = logging.getLogger(__name__)
Action = audit.Action

# Large JSON columns a push never needs; loading them cost a third of each delivery.
PROVIDER_SNAPSHOTS = ("discovery_snapshot", "jwks_snapshot", "validation_checks")
# A task pushes this many instances, PUSH_THREADS at a time, and records them in bulk: a
# publish to 1,000 instances is 10 tasks, not 1,000 (see docs/BENCHMARKS.md, P2).
PUSH_BATCH_SIZE = 100
PUSH_THREADS = 16
PUSH_RETRY_MAX_DELAY = 3600  # seconds between tries at most (exponential backoff's cap)
# A retry this soon is the task's own (Celery's retry); later ones are the sweeper's, so that no
# task waits in the broker for an hour (past a Redis broker's visibility timeout).
PUSH_RETRY_IN_TASK_MAX = 300
# Outcomes are recorded as they come in, up to this many together, none held longer than
# RECORD_WITHIN seconds: a worker lost mid-batch loses the records of at most that much.
RECORD_EVERY = PUSH_THREADS
RECORD_WITHIN = 0.5
RECORD_GRACE = 10  # seconds for recording after the outbound deadline
RECORD_TRIES = 4
# A batch's time limit follows from its size: every round of PUSH_THREADS webhooks may take the
# outbound deadline. A batch cut off anyway (slow SSM, a killed worker) is swept again later.
PUSH_BATCH_TIME_LIMIT = math.ceil(PUSH_BATCH_SIZE / PUSH_THREADS) * outbound.TOTAL_DEADLINE + 30
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
            "verify": version.login_expectations_for(instance, signin_account),
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
        # boto3 takes a third of a second to import; only consoles that push to SSM pay for it.
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        all_settings = version.settings_for(instance)
        prefix = instance.effective_ssm_prefix()
        client = boto3.session.Session().client(  # a session per push: pushes run in threads
            "ssm",
            region_name=instance.ssm_region,
            endpoint_url=django_settings.AWS_ENDPOINT_URL or None,
        )
        try:
            for name, value in all_settings.items():
                client.put_parameter(
                    Name=prefix + name,
                    Value=value,
                    Type="SecureString" if name in diffgram.SECRET_VARIABLES else "String",
                    Overwrite=True,
                )
            stale = [
                prefix + name for name in diffgram.MANAGED_VARIABLES if name not in all_settings
            ]
            for start in range(0, len(stale), 10):
                client.delete_parameters(Names=stale[start : start + 10])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            transient = code in ("ThrottlingException", "TooManyUpdates", "InternalServerError")
            hint = (
                " (the console's IAM role needs ssm:PutParameter and ssm:DeleteParameters)"
                if (code in ("AccessDeniedException", "AccessDenied"))
                else ""
            )
            raise DeliveryError(f"AWS SSM refused: {code}{hint}", permanent=not transient) from None
        except BotoCoreError as error:
            raise DeliveryError(f"AWS SSM unreachable: {error}", permanent=False) from None
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
    (PUSH_MAX_ATTEMPTS, counted per request); every other request has ended.

    Idempotent: a request that already ended, or whose version is no longer the instance's
    assigned one, is left alone; re-sending the same version is harmless to the agent.
    """
    pushes = _start_attempts(push_request_ids)
    retries: list[tuple[int, float]] = []
    if not pushes:
        return retries
    accounts = _signin_accounts(pushes)
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
                retries += _record_with_retries(done)
                done, oldest = [], None
    return retries


def _start_attempts(push_request_ids):
    """Lock the pending requests, end those superseded, count an attempt for the rest, and
    say by when each must be recorded: in a batch, the k-th request waits for k // PUSH_THREADS
    others before it, each bounded by the outbound deadline. A request not recorded by then was
    lost with its worker, and the sweeper sends it again."""
    now = timezone.now()
    with transaction.atomic():
        pending = list(
            PushRequest.objects.select_for_update(of=("self",))
            .select_related("instance")
            .filter(pk__in=push_request_ids, state=PushRequest.State.PENDING)
            .order_by("pk")
        )
        current = [p for p in pending if p.instance.assigned_version_id == p.version_id]
        superseded = [p.pk for p in pending if p.instance.assigned_version_id != p.version_id]
        if superseded:
            PushRequest.objects.filter(pk__in=superseded).update(
                state=PushRequest.State.SUPERSEDED, completed_at=now
            )
        for position, push in enumerate(current):
            push.attempts += 1
            rounds = position // PUSH_THREADS + 1
            push.due_at = now + timedelta(seconds=rounds * outbound.TOTAL_DEADLINE + RECORD_GRACE)
        PushRequest.objects.bulk_update(current, ["attempts", "due_at"])
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
    """Seconds before the next try after `attempts` tries: exponential from
    PUSH_RETRY_BACKOFF_SECONDS to an hour, half of it random so that a fleet does not retry in
    step. With the default 40 tries, a push keeps trying for about a day."""
    ceiling = min(django_settings.PUSH_RETRY_BACKOFF_SECONDS * 2**attempts, PUSH_RETRY_MAX_DELAY)
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto


def _record_with_retries(done):
    """Record a group of outcomes; a database that restarts or blinks is waited for (a few
    tries over ~20 s) instead of losing the records with the task."""
    for attempt in range(1, RECORD_TRIES + 1):
        try:
            return _record_outcomes(done)
        except (OperationalError, InterfaceError) as error:
            if attempt == RECORD_TRIES:
                raise
            logger.warning("Recording %d push outcomes failed (%s); trying again.",
                           len(done), type(error).__name__)  # fmt: skip
            connection.close()  # the next query opens a new connection
            time.sleep(2**attempt)
    return []


def _record_outcomes(done):
    """Attempt rows, request states, the applied state of instances whose push applied the
    version (SSM: written is applied; an agent that answered it applied it) and audit events,
    in one transaction taking its locks in publish()'s order: instances, push requests, the
    audit chain head."""
    attempts, retries, finished, events = [], [], [], []
    applied: dict[tuple[int, str], list[Instance]] = {}
    now = timezone.now()
    for push, outcome in done:
        error = outcome.error
        push.last_error = error.message[:1000] if error else ""
        attempts.append(
            PushAttempt(
                request=push, started_at=outcome.started_at, finished_at=outcome.finished_at,
                ok=error is None, http_status=outcome.http_status, error=push.last_error,
            )
        )  # fmt: skip
        tries_left = push.attempts < django_settings.PUSH_MAX_ATTEMPTS
        if error is not None and not error.permanent and tries_left:
            delay = retry_delay(push.attempts)
            # The task retries soon ones itself; the sweeper sends the rest when due, and
            # any the task does not get to.
            push.due_at = now + timedelta(seconds=delay + django_settings.PUSH_SWEEP_AFTER_SECONDS)
            retries.append((push, delay))
            continue
        push.state = PushRequest.State.FAILED if error else PushRequest.State.SUCCEEDED
        push.completed_at = now
        finished.append(push)
        instance, version = push.instance, push.version
        context = {
            "version": version.number,
            "provider": version.provider.name,
            "target": instance.push_target,
            "attempts": push.attempts,
            **({"error": error.message} if error else {}),
            **({"http_status": outcome.http_status} if outcome.http_status else {}),
        }
        events.append(
            {
                "action": Action.PUSH_FAILED if error else Action.PUSH_SUCCEEDED,
                "target": instance,
                "context": context,
            }
        )
        if not error and outcome.applied:
            applied.setdefault((version.number, outcome.applied), []).append(instance)
    succeeded = [push.pk for push in finished if push.state == PushRequest.State.SUCCEEDED]
    failed = [push for push in finished if push.state == PushRequest.State.FAILED]
    with transaction.atomic():
        for (number, detail), instances in applied.items():
            # Not again for an instance already at it (a push sent again, or the agent's own
            # report came first).
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
            events += [
                {"action": Action.INSTANCE_APPLIED, "target": instance,
                 "context": {"version": number, "via": instance.push_target}}
                for instance in instances if instance.pk in newly
            ]  # fmt: skip
        PushAttempt.objects.bulk_create(attempts)
        # Successes share their values: one UPDATE. Failures differ by their error (rarer).
        PushRequest.objects.filter(pk__in=succeeded).update(
            state=PushRequest.State.SUCCEEDED, last_error="", completed_at=now
        )
        PushRequest.objects.bulk_update(failed, ["state", "last_error", "completed_at"])
        PushRequest.objects.bulk_update([push for push, _ in retries], ["last_error", "due_at"])
        if events:
            audit.record_many(events)
    return [(push.pk, delay) for push, delay in retries]


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
    PushRequest.objects.filter(pk__in=due).update(
        due_at=now + timedelta(seconds=django_settings.PUSH_SWEEP_AFTER_SECONDS)
    )
    return due
