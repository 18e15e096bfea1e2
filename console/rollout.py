"""Instances, versions and pushes: every change goes through here with its audit events.

Publishing writes the version, the assignments and one PushRequest per pushed instance in one
transaction (the outbox); the push tasks are dispatched only after that commits.
"""

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
from django.db.models import F, Max
from django.utils import timezone
from django.utils.crypto import salted_hmac

from console import audit, diffgram, discovery, encryption, outbound
from console.models import (
    ConfigVersion,
    Instance,
    Provider,
    PushAttempt,
    PushRequest,
    Rollout,
)
from console.pull_state import pull_states

logger = logging.getLogger(__name__)
Action = audit.Action

# Large JSON columns a push never needs; loading them cost a third of each delivery.
PROVIDER_SNAPSHOTS = ("discovery_snapshot", "jwks_snapshot", "validation_checks")
PULL_NOTED_EVERY_SECONDS = 300
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


class PublishRefused(Exception):
    """Nothing was published; the message says why and what to do."""


# --- instances -----------------------------------------------------------------------------------


def create_instance(form, *, request=None, actor=None):
    """Save a new instance from a valid form; returns (instance, token shown once)."""
    with transaction.atomic():
        instance = form.save(commit=False)
        token = instance.new_token()
        instance.new_signing_secret()
        instance.save()
        if instance.provider_id and instance.provider.versions.exists():
            _assign(instance, _current_version(instance.provider), request=request, actor=actor)
        audit.record(  # last: the lock order of publish()
            Action.INSTANCE_CREATED,
            request=request,
            actor=actor,
            target=instance,
            changes=audit.field_changes({}, instance.audit_fields()),
        )
    return instance, token


def update_instance(form, *, request=None, actor=None):
    with transaction.atomic():
        current = Instance.objects.select_for_update().get(pk=form.instance.pk)
        before = current.audit_fields()
        instance = form.save(commit=False)
        instance.revision = current.revision + 1
        instance.save()
        if instance.provider_id != current.provider_id:
            version = _current_version(instance.provider) if instance.provider_id else None
            _assign(instance, version, request=request, actor=actor)
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


def delete_instance(instance, *, request=None, actor=None):
    with transaction.atomic():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        audit.record(
            Action.INSTANCE_DELETED,
            request=request,
            actor=actor,
            target=stored,
            changes={name: [value, None] for name, value in stored.audit_fields().items()},
        )
        stored.delete()


def rotate_token(instance, *, request=None, actor=None):
    """A new API token (returned once); the old one stops working at once."""
    with transaction.atomic():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        token = stored.new_token()
        stored.token_rotated_at = timezone.now()
        stored.save(update_fields=["token_hash", "token_rotated_at", "updated_at"])
        audit.record(Action.INSTANCE_TOKEN_ROTATED, request=request, actor=actor, target=stored)
    return stored, token


def rotate_signing_secret(instance, *, request=None, actor=None):
    """A new webhook signing secret (returned once, for the agent's --secret-file)."""
    with transaction.atomic():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        secret = stored.new_signing_secret()
        stored.save(update_fields=["signing_secret_encrypted", "updated_at"])
        audit.record(
            Action.INSTANCE_SIGNING_SECRET_ROTATED, request=request, actor=actor, target=stored
        )
    return stored, secret


# --- versions ------------------------------------------------------------------------------------


def _current_version(provider):
    """The newest version whose rollout reached every instance (what a new instance gets)."""
    return (
        provider.versions.filter(rollout__state=Rollout.State.COMPLETE).order_by("-number").first()
    )


def content_hash(all_settings, login_template):
    """An HMAC (keyed from SECRET_KEY) over the complete content: it identifies the content for
    ETags and diffs without letting anyone guess weak secrets from it offline."""
    canonical = json.dumps(
        {"settings": all_settings, "login_template": login_template}, sort_keys=True
    )
    return salted_hmac("console.version", canonical, algorithm="sha256").hexdigest()


def instance_content_hash(version, instance):
    """The hash of what this instance receives: the version's, or (when the settings differ
    per instance) the version's combined with what makes them differ."""
    parts = [version.content_hash]
    if version.login_url_template:
        parts.append(instance.url_base)
    if diffgram.is_per_instance(version.settings):
        parts.append(instance.name)
    if len(parts) == 1:
        return version.content_hash
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def settings_for_instance(version, instance):
    """Every variable of `version` as `instance` receives it, secrets decrypted."""
    return diffgram.instance_settings(
        version.all_settings(), version.login_url_template, instance.url_base, instance.name
    )


def _new_version(provider, all_settings, login_template, *, note, actor_label, rollback_of=None):
    secrets = {k: v for k, v in all_settings.items() if k in diffgram.SECRET_VARIABLES}
    plain = {k: v for k, v in all_settings.items() if k not in diffgram.SECRET_VARIABLES}
    number = (provider.versions.aggregate(Max("number"))["number__max"] or 0) + 1
    return ConfigVersion.objects.create(
        provider=provider,
        number=number,
        settings=plain,
        secret_settings_encrypted=encryption.encrypt(json.dumps(secrets)) if secrets else "",
        secret_names=sorted(secrets),
        login_url_template=login_template,
        content_hash=content_hash(all_settings, login_template),
        note=note,
        rollback_of=rollback_of,
        created_by=actor_label,
    )


def _actor_label(request, actor):
    who = audit._actor_for(actor if actor is not None else getattr(request, "user", None))
    return who.label


def publish(provider, *, group="", note="", request=None, actor=None):
    """Publish the provider's current settings as a new version to its instances (or one
    group first). Refused when the latest validation failed or nothing would receive it."""
    if provider.kind not in diffgram.DIFFGRAM_KINDS:
        raise PublishRefused(
            "Diffgram talks to Cognito or Keycloak; a generic OIDC provider cannot be published."
        )
    if not provider.validation_passed:
        failing = [c["id"] for c in provider.validation_checks if c.get("status") == "fail"]
        raise PublishRefused(
            "The latest validation failed"
            + (f" ({', '.join(failing)})" if failing else " or has not run")
            + ": fix the provider and validate again before publishing."
        )
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        instances = list(provider.instances.select_for_update())
        _refuse_a_shared_keycloak_client(provider.kind, provider.client_id, instances)
        targets = [i for i in instances if not group or i.rollout_group == group]
        if not targets:
            raise PublishRefused(
                f"No instance in group {group!r} uses {provider}."
                if group
                else f"No instance uses {provider}: assign it to an instance first."
            )
        config = provider.diffgram_config()
        all_settings = diffgram.settings_for(config)
        login_template = (
            diffgram.cognito_login_template(config)
            if provider.kind == Provider.Kind.COGNITO
            else ""
        )
        version = _new_version(
            provider, all_settings, login_template, note=note,
            actor_label=_actor_label(request, actor),
        )  # fmt: skip
        complete = len(targets) == len(instances)
        Rollout.objects.create(
            version=version,
            first_group="" if complete else group,
            state=Rollout.State.COMPLETE if complete else Rollout.State.STAGED,
        )
        _assign_many(targets, version)
        # Last: every transaction takes its locks in one order (instances, push requests, the
        # audit chain head), so a publish and a push batch never wait on each other in a circle.
        audit.record(
            Action.VERSION_PUBLISHED,
            request=request,
            actor=actor,
            target=version,
            context={
                "provider": provider.name,
                "number": version.number,
                "group": group,
                "instances": [i.name for i in targets],
                "note": note,
                "content_hash": version.content_hash,
            },
        )
    return version


def _refuse_a_shared_keycloak_client(kind, client_id, instances):
    """The instances may have changed since the last validation: check again, under lock."""
    if kind != Provider.Kind.KEYCLOAK:
        return
    spec = discovery.ProviderSpec(
        kind=kind, issuer="", client_id=client_id, instance_names=tuple(i.name for i in instances)
    )
    status, message = discovery.client_per_instance_verdict(spec)
    if status == discovery.FAIL:
        raise PublishRefused(f"diffgram.keycloak_client_per_instance: {message}")


def _staged_rollout(version):
    """The version's rollout, locked, if it is still waiting after its first group."""
    rollout = Rollout.objects.select_for_update().get(version=version)
    if rollout.state != Rollout.State.STAGED:
        raise PublishRefused(f"{version} is {rollout.get_state_display().lower()}.")
    return rollout


def continue_rollout(version, *, request=None, actor=None):
    with transaction.atomic():
        rollout = _staged_rollout(version)
        rest = list(
            version.provider.instances.exclude(
                rollout_group=rollout.first_group
            ).select_for_update()
        )
        _assign_many(rest, version)
        rollout.state = Rollout.State.COMPLETE
        rollout.save(update_fields=["state", "updated_at"])
        audit.record(
            Action.ROLLOUT_CONTINUED,
            request=request,
            actor=actor,
            target=version,
            context={"instances": [i.name for i in rest]},
        )


def halt_rollout(version, *, request=None, actor=None):
    with transaction.atomic():
        rollout = _staged_rollout(version)
        rollout.state = Rollout.State.HALTED
        rollout.save(update_fields=["state", "updated_at"])
        audit.record(
            Action.ROLLOUT_HALTED,
            request=request,
            actor=actor,
            target=version,
            context={"first_group": rollout.first_group},
        )


def rollback(version, *, note="", request=None, actor=None):
    """Publish an older version's content again, as a new version, to every instance."""
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=version.provider_id)
        instances = list(provider.instances.select_for_update())
        if not instances:
            raise PublishRefused(f"No instance uses {provider}.")
        client_id = version.settings.get("OAUTH2_PROVIDER_CLIENT_ID", "")
        _refuse_a_shared_keycloak_client(provider.kind, client_id, instances)
        new = _new_version(
            provider, version.all_settings(), version.login_url_template,
            note=note or f"Rollback to v{version.number}",
            actor_label=_actor_label(request, actor), rollback_of=version,
        )  # fmt: skip
        Rollout.objects.create(version=new, state=Rollout.State.COMPLETE)
        _assign_many(instances, new)
        audit.record(
            Action.VERSION_ROLLED_BACK,
            request=request,
            actor=actor,
            target=new,
            context={"provider": provider.name, "number": new.number, "to": version.number},
        )
    return new


def version_diff(old, new):
    """Per variable: added / removed / changed / unchanged; secrets only as changed or not."""
    old_all, new_all = old.all_settings(), new.all_settings()
    rows = []
    for name in sorted(set(old_all) | set(new_all)):
        before, after = old_all.get(name), new_all.get(name)
        state = (
            "added" if before is None
            else "removed" if after is None
            else "unchanged" if before == after
            else "changed"
        )  # fmt: skip
        if name in diffgram.SECRET_VARIABLES:
            before = "[secret]" if before is not None else None
            after = "[secret]" if after is not None else None
        rows.append({"name": name, "state": state, "before": before, "after": after})
    return rows


def _assign(instance, version, *, request=None, actor=None, again=False):
    """Point one instance at a version (and queue its push); returns its PushRequest or None."""
    requests = _assign_many([instance], version, again=again)
    instance.assigned_version = version
    return requests[0] if requests else None


def _assign_many(instances, version, *, again=False):
    """Point instances at a version and, for pushed instances, queue the pushes (outbox).
    Each assignment bumps the instance's assignment sequence, except `again` (a repush of the
    same assignment, which the agent then recognises as already applied).

    Bulk statements: publishing to a thousand instances is a handful of queries."""
    now = timezone.now()
    sequence = F("assignment_sequence") + (0 if again else 1)
    Instance.objects.filter(pk__in=[i.pk for i in instances]).update(
        assigned_version=version, assignment_sequence=sequence, updated_at=now
    )
    pull_states.invalidate(i.pk for i in instances)  # an update() sends no post_save
    pushed = [i for i in instances if i.push_target != Instance.PushTarget.NONE]
    if version is None or not pushed:
        return []
    PushRequest.objects.filter(
        instance_id__in=[i.pk for i in pushed], state=PushRequest.State.PENDING
    ).update(state=PushRequest.State.SUPERSEDED, completed_at=now)
    due = now + timedelta(seconds=django_settings.PUSH_SWEEP_AFTER_SECONDS)  # to be started by
    requests = PushRequest.objects.bulk_create(
        [PushRequest(instance=i, version=version, due_at=due) for i in pushed]
    )
    dispatch_after_commit([request.pk for request in requests])
    return requests


def dispatch_after_commit(push_request_ids):
    """Send the tasks, PUSH_BATCH_SIZE requests each, once the transaction commits. Robust: if
    the broker is down the publish still succeeds, and the outbox sweeper sends them later."""
    from console import tasks
    from sso_admin.celery import app

    ids = list(push_request_ids)

    def send():
        with app.producer_or_acquire() as producer:  # one connection for the whole fan-out
            for start in range(0, len(ids), PUSH_BATCH_SIZE):
                batch = ids[start : start + PUSH_BATCH_SIZE]
                tasks.push_config.apply_async((batch,), producer=producer)

    transaction.on_commit(send, robust=True)


# --- pushing -------------------------------------------------------------------------------------


@dataclass
class DeliveryError(Exception):
    message: str
    permanent: bool
    http_status: int | None = None


def signed_webhook(instance, version):
    """The webhook request (body, headers) for an instance: HMAC-SHA256 over timestamp.body."""
    all_settings = settings_for_instance(version, instance)
    body = json.dumps(
        {
            "instance": instance.name,
            "version": version.number,
            "sequence": instance.assignment_sequence,
            "content_hash": instance_content_hash(version, instance),
            "settings": all_settings,
        },
        sort_keys=True,
    ).encode()
    timestamp = str(int(time.time()))
    signature = hmac.new(
        instance.signing_secret().encode(), timestamp.encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: f"sha256={signature}",
    }
    return body, headers


def _send_webhook(instance, version):
    problem = outbound.webhook_url_problem(
        instance.webhook_url, allow_http=instance.webhook_allow_http
    )
    if problem:
        raise DeliveryError(f"Not sent to {instance.webhook_url}: {problem}", permanent=True)
    body, headers = signed_webhook(instance, version)
    try:
        response = outbound.post(instance.webhook_url, body, headers)
    except outbound.OutboundError as error:
        raise DeliveryError(error.message, error.permanent) from None
    if 200 <= response.status < 300:
        return response.status
    transient = response.status in (408, 429) or response.status >= 500
    detail = response.body[:200].decode("utf-8", "replace").strip()
    raise DeliveryError(
        f"The agent answered HTTP {response.status}" + (f": {detail}" if detail else ""),
        permanent=not transient,
        http_status=response.status,
    )


def _send_ssm(instance, version):
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    all_settings = settings_for_instance(version, instance)
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
        stale = [prefix + name for name in diffgram.MANAGED_VARIABLES if name not in all_settings]
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
    return None


@dataclass
class Outcome:
    started_at: object
    finished_at: object
    http_status: int | None
    error: DeliveryError | None


def deliver(push_request_ids):
    """Try one delivery of each push request, concurrently, and record each outcome in small
    groups as they come in, so a crash loses at most a group's records. Returns
    [(push request id, seconds until its next try)] for the transient failures with tries left
    (PUSH_MAX_ATTEMPTS, counted per request); every other request has ended.

    Idempotent: a request that already ended, or whose version is no longer the instance's
    assigned one, is left alone; re-sending the same version is harmless to the agent.
    """
    pushes = _start_attempts(push_request_ids)
    retries = []
    if not pushes:
        return retries
    with ThreadPoolExecutor(max_workers=min(PUSH_THREADS, len(pushes))) as pool:
        running = {pool.submit(_attempt, push): push for push in pushes}
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


def _attempt(push):
    """Send one push (in a pool thread: no database access here)."""
    instance, version = push.instance, push.version
    started, status, error = timezone.now(), None, None
    try:
        if instance.push_target == Instance.PushTarget.WEBHOOK:
            status = _send_webhook(instance, version)
        elif instance.push_target == Instance.PushTarget.SSM:
            _send_ssm(instance, version)
        else:
            error = DeliveryError("The instance has no push target any more.", permanent=True)
    except DeliveryError as delivery_error:
        error, status = delivery_error, delivery_error.http_status
    except Exception as unexpected:  # a bug must not lose the rest of the batch
        logger.exception("Push request %s failed unexpectedly", push.pk)
        error = DeliveryError(f"Unexpected error: {type(unexpected).__name__}", permanent=False)
    return Outcome(started, timezone.now(), status, error)


def retry_delay(attempts):
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
    """Attempt rows, request states, the applied state of SSM instances (written there is
    applied: no agent acknowledges) and audit events, in one transaction taking its locks in
    publish()'s order: instances, push requests, the audit chain head."""
    attempts, retries, finished, events, applied = [], [], [], [], {}
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
        if not error and instance.push_target == Instance.PushTarget.SSM:
            applied.setdefault(version.number, []).append(instance)
            events.append(
                {
                    "action": Action.INSTANCE_APPLIED,
                    "target": instance,
                    "context": {"version": version.number, "via": "ssm"},
                }
            )
    succeeded = [push.pk for push in finished if push.state == PushRequest.State.SUCCEEDED]
    failed = [push for push in finished if push.state == PushRequest.State.FAILED]
    with transaction.atomic():
        for number, instances in applied.items():
            Instance.objects.filter(pk__in=[i.pk for i in instances]).update(
                applied_version_number=number, applied_status="ok", applied_at=now,
                applied_detail="Written to AWS SSM Parameter Store.",
            )  # fmt: skip
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


def sweep_outbox():
    """Re-dispatch pending push requests that are overdue: never started (the broker was down
    at publish), started and never recorded (lost with a worker, or cut off by its time limit),
    or waiting for a retry that is now due. Returns how many were sent again."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            PushRequest.objects.select_for_update(skip_locked=True)
            .filter(state=PushRequest.State.PENDING, due_at__lt=now)
            .values_list("pk", flat=True)[:1000]
        )
        PushRequest.objects.filter(pk__in=due).update(
            due_at=now + timedelta(seconds=django_settings.PUSH_SWEEP_AFTER_SECONDS)
        )
        if due:
            dispatch_after_commit(due)
    return len(due)


# --- what instances tell us ----------------------------------------------------------------------


def record_pull(instance, version):
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
    with transaction.atomic():
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


def record_applied_by_etag(instance, version):
    """A pull answered 304: the agent sent the ETag of the content it applied, which is this
    version's. If it last acknowledged an earlier version with that same content, record this
    one as applied: the console knows, and an agent that sees no change has nothing to say.
    (Pushed instances acknowledge every new assignment themselves.) Cheap when nothing changed;
    the conditional UPDATE makes one web process the one that records it."""
    if instance.applied_version_number == version.number or instance.applied_status != "ok":
        return
    with transaction.atomic():
        updated = (
            Instance.objects.filter(pk=instance.pk, applied_status="ok")
            .exclude(applied_version_number=version.number)
            .update(applied_version_number=version.number, applied_at=timezone.now())
        )
        if updated:
            audit.record(
                Action.INSTANCE_APPLIED,
                actor=instance,
                target=instance,
                context={
                    "version": version.number,
                    "same_content_as": instance.applied_version_number,
                    "via": "pull (the agent already runs this content)",
                },
            )
    instance.applied_version_number = version.number


def record_applied(instance, *, version_number, ok, detail, request=None):
    with transaction.atomic():
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


def repush(instance, *, request=None, actor=None):
    """Queue the assigned version again; the agent ignores a version it already applied."""
    with transaction.atomic():
        stored = Instance.objects.select_for_update().get(pk=instance.pk)
        return _assign(stored, stored.assigned_version, request=request, actor=actor, again=True)
