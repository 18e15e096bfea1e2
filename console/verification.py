"""Verified rollouts: whether each instance's Diffgram signs users in with the version it
applied, and staged rollouts that halt by themselves when their first group says no.

Two depths, both in agent/signin.py (shared with the agent), run by the agent after it
applies and by the console through console/outbound.py with its guards: the probe (Diffgram
offers single sign-on with the expected login URL and the identity provider shows its login
page) and, when the provider has a test account (console/signin_accounts.py), the synthetic
sign-in, which goes all the way through Diffgram's callback and out again. Only a synthetic
sign-in that passed is shown as signed in (✓); a known Diffgram defect that stops every sign-in
with the instance's setup (console/diffgram_releases.py) shows it as blocked, whatever was found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import timezone
from django.utils.translation import ngettext

from agent import signin
from console import (
    audit,
    instances,
    outbound,
    signin_accounts,
    versions,
)
from console.models import ConfigVersion, Instance, Rollout

Action = audit.Action
MAX_STEP = 32
MAX_DETAIL = 2000
MAX_STEPS = 10
KINDS = ("probe", "signin")
# What record_verification compares a result with.
VERIFICATION_FIELDS = (
    "id", "provider_id", "verified_version_number", "verify_ok", "verify_kind", "last_signin_ok",
)  # fmt: skip


class NothingToVerify(Exception):
    """The instance has no version, or its version is not a Diffgram sign-in."""


# --- results ------------------------------------------------------------------------------------


def record_report(instance, *, version_number, ok, detail, probe=None, request=None) -> None:
    """An agent's report: the version applied (or why not) and, once it has asked Diffgram,
    its probe's or synthetic sign-in's result, sent again with the same version."""
    # `instance` was just read from the database: what it says it applied is current.
    repeated = (
        probe is not None
        and instance.applied_version_number == version_number
        and instance.applied_status == ("ok" if ok else "error")
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
    """What is wrong with a verification result sent to the API ({} when it is well formed)."""
    if not isinstance(probe, dict):
        return {"probe": 'An object: {"ok": true|false, "step": "...", "detail": "..."}.'}
    problems = {}
    if not isinstance(probe.get("ok"), bool):
        problems["probe.ok"] = "true or false."
    if not _short_text(probe.get("step", ""), MAX_STEP):
        problems["probe.step"] = f"A string of at most {MAX_STEP} characters."
    if not _short_text(probe.get("detail", ""), MAX_DETAIL):
        problems["probe.detail"] = f"A string of at most {MAX_DETAIL} characters."
    if probe.get("kind", "probe") not in KINDS:
        problems["probe.kind"] = '"probe" or "signin".'
    seconds = probe.get("seconds", 0)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 <= seconds < 3600
    ):
        problems["probe.seconds"] = "A number of seconds, from 0 to 3600."
    steps = probe.get("steps", [])
    if (
        not isinstance(steps, list)
        or len(steps) > MAX_STEPS
        or not all(
            isinstance(step, dict)
            and _short_text(step.get("name"), MAX_STEP)
            and isinstance(step.get("ok"), bool)
            and _short_text(step.get("detail", ""), MAX_DETAIL)
            for step in steps
        )
    ):
        problems["probe.steps"] = (
            f'At most {MAX_STEPS} objects: {{"name": "...", "ok": true|false, "detail": "..."}}.'
        )
    return problems


def _short_text(value, limit) -> bool:
    return isinstance(value, str) and len(value) <= limit


def record_verification(instance, *, version_number, probe, source, request=None) -> None:
    """Store what a probe or synthetic sign-in found for `version_number` (by "agent" or
    "console"), and halt a rollout watching this instance when it failed.

    Audited when it says something new: a result for a version, or an outcome, not recorded
    before (instance.verified / instance.verify_failed); a synthetic sign-in failing after one
    passed, or the reverse (instance.signin_failed / instance.signin_recovered, which alert).
    The beat's hourly sign-ins that find what was already known leave no event. While the
    provider has a test account, a probe's result never replaces a synthetic sign-in's for the
    same version (the agent's probe after an apply may arrive last): it knows less."""
    ok, kind = probe["ok"], probe.get("kind") or "probe"
    step, detail = probe.get("step", "")[:MAX_STEP], probe.get("detail", "")[:MAX_DETAIL]
    steps = [
        {"name": s["name"][:MAX_STEP], "ok": s["ok"], "detail": s.get("detail", "")[:MAX_DETAIL]}
        for s in probe.get("steps", [])[:MAX_STEPS]
    ]
    now = timezone.now()
    with audit.change():
        before = (
            Instance.objects.select_for_update()
            .only(*VERIFICATION_FIELDS)
            .filter(pk=instance.pk)
            .first()
        )
        if before is None:
            return
        same_version = before.verified_version_number == version_number
        if (
            kind == "probe"
            and same_version
            and before.verify_kind == "signin"
            and signin_accounts.has_account(before.provider_id)
        ):
            return
        fields: dict[str, Any] = {
            "verified_version_number": version_number, "verify_ok": ok,
            "verify_step": "" if ok else step, "verify_detail": detail, "verified_at": now,
            "verified_by": source, "verify_kind": kind, "verify_steps": steps,
        }  # fmt: skip
        if kind == "signin":
            fields |= {
                "last_signin_ok": ok, "last_signin_at": now,
                "last_signin_seconds": float(probe.get("seconds") or 0),
            }  # fmt: skip
        Instance.objects.filter(pk=instance.pk).update(**fields)
        context = {"version": version_number, "by": source, "kind": kind, "detail": detail,
                   **({} if ok else {"step": step})}  # fmt: skip
        changed_signin = kind == "signin" and before.last_signin_ok not in (None, ok)
        new = not same_version or before.verify_ok != ok or before.verify_kind != kind
        if changed_signin:
            action = Action.INSTANCE_SIGNIN_RECOVERED if ok else Action.INSTANCE_SIGNIN_FAILED
        elif new:
            action = Action.INSTANCE_VERIFIED if ok else Action.INSTANCE_VERIFY_FAILED
        if changed_signin or new:
            audit.record(
                action, actor=instance if source == "agent" else None, request=request,
                target=instance, context=context,
            )  # fmt: skip
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
    """The first group's instances and how far each got with the rollout's version: verified
    means signed in, or offering sign-in where no test account exists, and never blocked by a
    known Diffgram defect."""
    number = rollout.version.number
    members = (
        instances.with_state(Instance.objects.select_related("assigned_version"))
        .filter(provider_id=rollout.version.provider_id, rollout_group=rollout.first_group)
        .order_by("name")
    )
    return [
        GroupRow(
            instance=instance,
            applied=instance.applied_version_number == number and instance.applied_status == "ok",
            verified=instance.verified_version_number == number
            and instances.verification_state(instance) in ("signed_in", "offers"),
        )
        for instance in members
    ]


# --- the console's own run ----------------------------------------------------------------------


def _outbound_send(
    method, url, body=None, headers=None
) -> tuple[int, dict[str, str], bytes, list[str]]:
    """The agent's `send`, through the console's one HTTP module and its guards."""
    try:
        response = outbound.request(method, url, body=body, headers=headers, max_redirects=0)
    except outbound.OutboundError as error:
        raise signin.Unreachable(error.message) from None
    return response.status, response.headers, response.body, response.cookies


def check_instance(instance) -> tuple[int, dict[str, Any]]:
    """Verify `instance` from the console: the synthetic sign-in when its provider has a test
    account, else the probe. Returns (the version number checked, the result)."""
    version = instance.assigned_version
    expect = versions.login_expectations(version, instance) if version else None
    if version is None or expect is None:
        raise NothingToVerify(f"{instance} has no published Diffgram sign-in to verify.")
    account = signin_accounts.account_of(version.provider_id)
    if account is None:
        return version.number, signin.probe(expect, send=_outbound_send)
    return version.number, signin.signin(expect, account.credentials(), send=_outbound_send)


def verify_from_console(instance) -> dict[str, Any]:
    """Verify `instance` now and record the result as the console's."""
    number, result = check_instance(instance)
    record_verification(instance, version_number=number, probe=result, source="console")
    return result


def instances_to_sign_in() -> list[int]:
    """The instances the console runs synthetic sign-ins for: assigned a version of a provider
    that has a test account, and not left to their agent."""
    return list(
        Instance.objects.filter(
            signin_runner=Instance.SigninRunner.CONSOLE,
            assigned_version__isnull=False,
            provider__signin_account__isnull=False,
        ).values_list("pk", flat=True)
    )


def console_signs_in(instance) -> bool:
    """Whether the console runs this instance's synthetic sign-ins (its provider has a test
    account and the instance is not left to its agent)."""
    return instance.signin_runner == Instance.SigninRunner.CONSOLE and (
        signin_accounts.has_account(instance.provider_id)
    )


def expectations_for(instance, version) -> dict[str, Any] | None:
    """What the instance's agent checks after applying `version`, with the test account when
    that agent runs the synthetic sign-ins."""
    account = None
    if instance.signin_runner == Instance.SigninRunner.AGENT:
        account = signin_accounts.account_of(version.provider_id)
    return versions.login_expectations(version, instance, account)
