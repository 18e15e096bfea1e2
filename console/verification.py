"""Verified rollouts: whether each instance's Diffgram now offers single sign-on with the version
it applied and the identity provider accepts its login request, and staged rollouts that halt
by themselves when their first group says no.

The probe itself is the agent's (agent/diffgram_sso_agent.py: `probe`): the agent runs it after
applying and reports the result with the version; the console runs the same code through
console/outbound.py, with its guards, for instances marked `console_verifies` and on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import ngettext

from agent import diffgram_sso_agent as agent
from console import audit, instances, outbound, versions
from console.models import ConfigVersion, Instance, Rollout

Action = audit.Action
MAX_STEP = 32
MAX_DETAIL = 2000


class NothingToVerify(Exception):
    """The instance has no version, or its version is not a Diffgram sign-in."""


# --- results ------------------------------------------------------------------------------------


def record_report(instance, *, version_number, ok, detail, probe=None, request=None) -> None:
    """An agent's report: the version applied (or why not) and, once it has asked Diffgram,
    the probe's result, sent again with the same version."""
    repeated = (
        probe is not None
        and Instance.objects.filter(
            pk=instance.pk,
            applied_version_number=version_number,
            applied_status="ok" if ok else "error",
        ).exists()
    )
    if not repeated:
        instances.record_applied(
            instance, version_number=version_number, ok=ok, detail=detail, request=request
        )
    if not ok:
        halt_watching(
            instance, version_number, f"{instance.name} could not apply v{version_number}: {detail}"
        )
    if probe is not None:
        record_verification(
            instance, version_number=version_number, probe=probe, source="agent", request=request
        )


def probe_problems(probe) -> dict[str, str]:
    """What is wrong with a probe result sent to the API ({} when it is well formed)."""
    if not isinstance(probe, dict):
        return {"probe": 'An object: {"ok": true|false, "step": "...", "detail": "..."}.'}
    problems = {}
    if not isinstance(probe.get("ok"), bool):
        problems["probe.ok"] = "true or false."
    if not isinstance(probe.get("step", ""), str) or len(probe.get("step", "")) > MAX_STEP:
        problems["probe.step"] = f"A string of at most {MAX_STEP} characters."
    if not isinstance(probe.get("detail", ""), str) or len(probe.get("detail", "")) > MAX_DETAIL:
        problems["probe.detail"] = f"A string of at most {MAX_DETAIL} characters."
    return problems


def record_verification(instance, *, version_number, probe, source, request=None) -> None:
    """Store what a probe found for `version_number` (by "agent" or "console"), audit it, and
    halt a rollout watching this instance when it failed."""
    ok, step, detail = probe["ok"], probe.get("step", ""), probe.get("detail", "")
    with transaction.atomic():
        Instance.objects.filter(pk=instance.pk).update(
            verified_version_number=version_number,
            verify_ok=ok,
            verify_step="" if ok else step[:MAX_STEP],
            verify_detail=detail[:MAX_DETAIL],
            verified_at=timezone.now(),
            verified_by=source,
        )
        audit.record(
            Action.INSTANCE_VERIFIED if ok else Action.INSTANCE_VERIFY_FAILED,
            actor=instance if source == "agent" else None,
            request=request,
            target=instance,
            context={
                "version": version_number,
                "by": source,
                **({} if ok else {"step": step[:MAX_STEP]}),
                "detail": detail[:MAX_DETAIL],
            },
        )
    if not ok:
        halt_watching(instance, version_number, f"{instance.name} failed at {step}: {detail}")


def halt_watching(instance, version_number, reason) -> None:
    """Halt the self-halting staged rollout of `version_number` whose first group holds
    `instance` (an apply error or a failing probe there)."""
    rollout = (
        Rollout.objects.select_related("version")
        .filter(
            version__provider_id=instance.provider_id,
            version__number=version_number,
            state=Rollout.State.STAGED,
            auto_halt=True,
            first_group=instance.rollout_group,
        )
        .first()
    )
    if rollout is not None:
        halt_by_itself(rollout, reason)


def halt_by_itself(rollout, reason) -> Rollout | None:
    """Halt (as the system, with the reason) and, when asked for, publish the previous
    version to the first group again. Returns the halted rollout (None when it was halted or
    continued meanwhile)."""
    try:
        rollout = versions.halt_rollout(rollout.version, reason=reason, automatic=True)
    except versions.PublishRefused:
        return None
    if not rollout.auto_rollback:
        return rollout
    previous = (
        ConfigVersion.objects.filter(
            provider_id=rollout.version.provider_id, number__lt=rollout.version.number
        )
        .order_by("-number")
        .first()
    )
    if previous is not None:
        versions.roll_back_group(previous, rollout.first_group)
    return rollout


def halt_overdue_rollouts(now=None) -> list[Rollout]:
    """The beat's sweep: self-halting rollouts past their deadline whose first group has not
    all verified the version halt, naming who is missing."""
    now = now or timezone.now()
    halted = []
    overdue = Rollout.objects.select_related("version").filter(
        state=Rollout.State.STAGED, auto_halt=True, verify_deadline__lte=now
    )
    for rollout in overdue:
        missing = [row.instance.name for row in first_group(rollout) if not row.verified]
        if missing:
            waited = (rollout.verify_deadline or now) - rollout.version.created_at
            minutes = round(waited.total_seconds() / 60)
            reason = (
                ngettext("%(names)s has", "%(names)s have", len(missing))
                % {"names": ", ".join(missing)}
                + f" not reported a passing verification within {minutes} minutes"
            )
            if (halted_now := halt_by_itself(rollout, reason)) is not None:
                halted.append(halted_now)
    return halted


@dataclass
class GroupRow:
    instance: Instance
    applied: bool
    verified: bool


def first_group(rollout) -> list[GroupRow]:
    """The first group's instances and how far each got with the rollout's version."""
    number = rollout.version.number
    instances = Instance.objects.filter(
        provider_id=rollout.version.provider_id, rollout_group=rollout.first_group
    ).order_by("name")
    return [
        GroupRow(
            instance=instance,
            applied=instance.applied_version_number == number and instance.applied_status == "ok",
            verified=instance.verified_version_number == number and instance.verify_ok is True,
        )
        for instance in instances
    ]


# --- the console's own probe --------------------------------------------------------------------


def _outbound_get(url, cookie="") -> tuple[int, dict[str, str], bytes, list[str]]:
    """agent.probe's `get`, through the console's one HTTP module and its guards."""
    try:
        response = outbound.request(
            "GET", url, headers={"Cookie": cookie} if cookie else None, max_redirects=0
        )
    except outbound.OutboundError as error:
        raise agent.Unreachable(error.message) from None
    return response.status, response.headers, response.body, response.cookies


def probe_instance(instance) -> tuple[int, dict[str, Any]]:
    """Run the probe against `instance`'s Diffgram and identity provider, from the console;
    returns (the version number probed for, the result)."""
    version = instance.assigned_version
    expect = version.login_expectations_for(instance) if version else None
    if version is None or expect is None:
        raise NothingToVerify(f"{instance} has no published Diffgram sign-in to verify.")
    return version.number, agent.probe(expect, get=_outbound_get)


def verify_from_console(instance) -> dict[str, Any]:
    """Probe `instance` now and record the result as the console's."""
    number, result = probe_instance(instance)
    record_verification(instance, version_number=number, probe=result, source="console")
    return result
