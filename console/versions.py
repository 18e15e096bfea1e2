"""Versions and rollouts: publishing a provider's settings as an immutable version, the staged
rollout (a first group, then the rest), rollback, diffs, and assigning versions to instances.

Publishing writes the version, the assignments and one PushRequest per pushed instance in one
transaction (the outbox); console/tasks.py, told through the `pushes_queued` signal
(console/signals.py), dispatches the push tasks only after that commits, and console/delivery.py
sends them. Every transaction takes its locks in one order (provider, instances, push requests,
the audit chain head): audit events come last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db.models import F, Max
from django.utils import timezone
from django.utils.crypto import salted_hmac

from console import audit, diffgram, encryption, kinds
from console.models import ConfigVersion, Instance, Provider, PushRequest, Rollout
from console.signals import pushes_queued

Action = audit.Action


class PublishRefused(Exception):
    """Nothing was published; the message says why and what to do."""


def current_version(provider) -> ConfigVersion | None:
    """The newest version whose rollout reached every instance (what a new instance gets)."""
    return (
        provider.versions.filter(rollout__state=Rollout.State.COMPLETE).order_by("-number").first()
    )


def login_expectations(version, instance, signin_account=None) -> dict[str, Any] | None:
    """What `instance`'s Diffgram must answer once it runs `version`; with the test account's
    credentials when the instance's agent runs the synthetic sign-ins."""
    kind = kinds.of_settings(version.settings)
    if kind is None:
        return None
    expect = kind.login_expectations(version.settings_for(instance), instance.url_base)
    agent_signs_in = instance.signin_runner == Instance.SigninRunner.AGENT
    if expect is not None and signin_account is not None and agent_signs_in:
        return {**expect, "signin": signin_account.credentials()}
    return expect


def content_hash(all_settings, login_template) -> str:
    """An HMAC (keyed from SECRET_KEY) over the complete content: it identifies the content for
    ETags and diffs without letting anyone guess weak secrets from it offline."""
    canonical = json.dumps(
        {"settings": all_settings, "login_template": login_template}, sort_keys=True
    )
    return salted_hmac("console.version", canonical, algorithm="sha256").hexdigest()


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
    who = audit.actor_for(actor if actor is not None else getattr(request, "user", None))
    return who.label


def _refuse_unpublishable(provider) -> None:
    if not kinds.of(provider).signs_in_to_diffgram:
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


def _targets(provider, instances, group) -> list[Instance]:
    """The instances a publish reaches first: all of them, or those of `group`."""
    _refuse_a_shared_client(provider, provider.client_id, instances)
    targets = [i for i in instances if not group or i.rollout_group == group]
    if not targets:
        raise PublishRefused(
            f"No instance in group {group!r} uses {provider}."
            if group
            else f"No instance uses {provider}: assign it to an instance first."
        )
    return targets


def why_not_publishable(provider) -> str:
    """Why Publish would be refused whatever the form says ("" when it would not), so the
    provider page can say so instead of a button that only looks enabled."""
    try:
        _refuse_unpublishable(provider)
        _targets(provider, list(provider.instances.all()), group="")
    except PublishRefused as refusal:
        return str(refusal)
    return ""


@dataclass
class PublishPreview:
    """What publishing would do, shown for confirmation before anything is written."""

    number: int
    group: str
    targets: list[Instance]  # reached now
    later: list[Instance]  # reached when the staged rollout continues
    previous: ConfigVersion | None
    diff: list[dict[str, Any]]

    @property
    def group_is_everyone(self) -> bool:
        """A group was chosen, but every instance is in it: no staging happens."""
        return bool(self.group) and not self.later


def publish_preview(provider, *, group="") -> PublishPreview:
    """The version publish() would create now, without writing anything; PublishRefused for
    what publish() would refuse."""
    _refuse_unpublishable(provider)
    instances = list(provider.instances.order_by("rollout_group", "name"))
    targets = _targets(provider, instances, group)
    previous = provider.versions.order_by("-number").first()
    settings = kinds.of(provider).diffgram_settings(provider.diffgram_config())
    return PublishPreview(
        number=(previous.number + 1) if previous else 1,
        group=group,
        targets=targets,
        later=[i for i in instances if i not in targets],
        previous=previous,
        diff=settings_diff(previous.all_settings() if previous else {}, settings),
    )


def publish(
    provider, *, group="", note="", auto_halt=False, auto_rollback=False, request=None,
    actor=None,
) -> ConfigVersion:  # fmt: skip
    """Publish the provider's current settings as a new version to its instances (or one
    group first). Refused when the latest validation failed or nothing would receive it.

    With a group, `auto_halt` makes the rollout halt by itself when the group fails to apply
    or verify the version (console/verification.py); `auto_rollback` then also publishes the
    previous version to the group again."""
    _refuse_unpublishable(provider)
    if (auto_halt or auto_rollback) and not group:
        raise PublishRefused("Halting by itself needs a first group to watch: choose one.")
    with audit.change():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        instances = list(provider.instances.select_for_update())
        targets = _targets(provider, instances, group)
        kind, config = kinds.of(provider), provider.diffgram_config()
        all_settings = kind.diffgram_settings(config)
        login_template = kind.login_template(config)
        version = _new_version(
            provider, all_settings, login_template, note=note,
            actor_label=_actor_label(request, actor),
        )  # fmt: skip
        _start_rollout(
            version, group, complete=len(targets) == len(instances), auto_halt=auto_halt,
            auto_rollback=auto_rollback,
        )  # fmt: skip
        assign_many(targets, version)
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
                **({"auto_halt": True} if auto_halt or auto_rollback else {}),
                **({"auto_rollback": True} if auto_rollback else {}),
            },
        )
    return version


def _start_rollout(version, group, *, complete, auto_halt, auto_rollback) -> Rollout:
    """The version's rollout: complete when every instance gets it now, else staged at its
    first group, watched (and halted by itself) when asked, until a deadline to verify."""
    watched = (auto_halt or auto_rollback) and not complete
    return Rollout.objects.create(
        version=version,
        first_group="" if complete else group,
        state=Rollout.State.COMPLETE if complete else Rollout.State.STAGED,
        auto_halt=watched,
        auto_rollback=auto_rollback and not complete,
        verify_deadline=(
            timezone.now() + timedelta(minutes=django_settings.ROLLOUT_VERIFY_TIMEOUT_MINUTES)
            if watched
            else None
        ),
    )


def _refuse_a_shared_client(provider, client_id, instances):
    """The instances may have changed since the last validation: check again, under lock."""
    names = tuple(instance.name for instance in instances)
    problem = kinds.of(provider).sharing_problem(client_id, names)
    if problem:
        raise PublishRefused(problem)


def _staged_rollout(version, *, override=""):
    """The version's rollout, locked, if it is still waiting after its first group (or was
    halted by itself and an admin overrides that, saying why)."""
    rollout = Rollout.objects.select_for_update().get(version=version)
    if rollout.state == Rollout.State.HALTED and rollout.halted_automatically:
        if not override.strip():
            raise PublishRefused(
                f"{version} halted by itself ({rollout.halt_reason}). To continue anyway, "
                "give the reason for overriding it."
            )
        return rollout
    if rollout.state != Rollout.State.STAGED:
        raise PublishRefused(f"{version} is {rollout.get_state_display().lower()}.")
    return rollout


def continue_rollout(version, *, override="", request=None, actor=None) -> None:
    """Publish a staged version to the instances outside its first group. A rollout that
    halted by itself continues only with `override`, the admin's written reason."""
    with audit.change():
        rollout = _staged_rollout(version, override=override)
        rest = list(
            version.provider.instances.exclude(
                rollout_group=rollout.first_group
            ).select_for_update()
        )
        assign_many(rest, version)
        overridden = rollout.state == Rollout.State.HALTED
        rollout.state = Rollout.State.COMPLETE
        rollout.save(update_fields=["state", "updated_at"])
        audit.record(
            Action.ROLLOUT_CONTINUED,
            request=request,
            actor=actor,
            target=version,
            context={
                "instances": [i.name for i in rest],
                **({"override": override.strip()[:2000], "halted_because": rollout.halt_reason}
                   if overridden else {}),
            },
        )  # fmt: skip


def halt_rollout(version, *, reason="", automatic=False, request=None, actor=None) -> Rollout:
    """Stop a staged rollout after its first group: by an admin, or by itself (`automatic`,
    audited as the system, with the reason)."""
    with audit.change():
        rollout = Rollout.objects.select_for_update().get(version=version)
        if rollout.state != Rollout.State.STAGED:
            raise PublishRefused(f"{version} is {rollout.get_state_display().lower()}.")
        rollout.state = Rollout.State.HALTED
        rollout.halt_reason = reason[:2000]
        rollout.halted_automatically = automatic
        rollout.save(update_fields=["state", "halt_reason", "halted_automatically", "updated_at"])
        audit.record(
            Action.ROLLOUT_HALTED,
            request=request,
            actor=audit.SYSTEM if automatic else actor,
            target=version,
            context={
                "first_group": rollout.first_group,
                **({"reason": reason[:2000]} if reason else {}),
                **({"automatic": True} if automatic else {}),
            },
        )
    return rollout


def roll_back_group(version, group, *, note="") -> ConfigVersion:
    """Publish `version`'s content again, as a new version, to the instances of `group` only
    (what an auto-rollback does: the rest of the fleet still runs that content)."""
    with audit.change():
        provider = Provider.objects.select_for_update().get(pk=version.provider_id)
        instances = list(provider.instances.filter(rollout_group=group).select_for_update())
        if not instances:
            raise PublishRefused(f"No instance of group {group!r} uses {provider}.")
        new = _new_version(
            provider, version.all_settings(), version.login_url_template,
            note=note or f"Rollback of group {group} to v{version.number}",
            actor_label=audit.SYSTEM.label, rollback_of=version,
        )  # fmt: skip
        Rollout.objects.create(version=new, state=Rollout.State.COMPLETE)
        assign_many(instances, new)
        audit.record(
            Action.VERSION_ROLLED_BACK,
            actor=audit.SYSTEM,
            target=new,
            context={
                "provider": provider.name, "number": new.number, "to": version.number,
                "group": group, "instances": [i.name for i in instances],
            },
        )  # fmt: skip
    return new


def rollback(version, *, note="", request=None, actor=None) -> ConfigVersion:
    """Publish an older version's content again, as a new version, to every instance."""
    with audit.change():
        provider = Provider.objects.select_for_update().get(pk=version.provider_id)
        instances = list(provider.instances.select_for_update())
        if not instances:
            raise PublishRefused(f"No instance uses {provider}.")
        client_id = version.settings.get("OAUTH2_PROVIDER_CLIENT_ID", "")
        _refuse_a_shared_client(provider, client_id, instances)
        new = _new_version(
            provider, version.all_settings(), version.login_url_template,
            note=note or f"Rollback to v{version.number}",
            actor_label=_actor_label(request, actor), rollback_of=version,
        )  # fmt: skip
        Rollout.objects.create(version=new, state=Rollout.State.COMPLETE)
        assign_many(instances, new)
        audit.record(
            Action.VERSION_ROLLED_BACK,
            request=request,
            actor=actor,
            target=new,
            context={"provider": provider.name, "number": new.number, "to": version.number},
        )
    return new


def version_diff(old, new) -> list[dict[str, Any]]:
    """Per variable: added / removed / changed / unchanged; secrets only as changed or not."""
    return settings_diff(old.all_settings(), new.all_settings())


def settings_diff(old_all, new_all) -> list[dict[str, Any]]:
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


def assign(instance, version, *, request=None, actor=None, again=False) -> PushRequest | None:
    """Point one instance at a version (and queue its push); returns its PushRequest or None."""
    requests = assign_many([instance], version, again=again)
    instance.assigned_version = version
    return requests[0] if requests else None


def assign_many(instances, version, *, again=False) -> list[PushRequest]:
    """Point instances at a version and, for pushed instances, queue the pushes (outbox).
    Each assignment bumps the instance's assignment sequence, except `again` (a repush of the
    same assignment, which the agent then recognises as already applied).

    Bulk statements: publishing to a thousand instances is a handful of queries."""
    now = timezone.now()
    sequence = F("assignment_sequence") + (0 if again else 1)
    Instance.objects.filter(pk__in=[i.pk for i in instances]).update(
        assigned_version=version, assignment_sequence=sequence, updated_at=now,
        **({} if again else {"assigned_at": now}),
    )  # fmt: skip
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
    pushes_queued.send(sender=PushRequest, push_request_ids=[request.pk for request in requests])
    return requests
