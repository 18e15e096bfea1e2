"""The JSON API for automation (/api/v1/), with personal API tokens.

Every endpoint has the same permissions as the UI: the token acts with its owner's role, so
auditors read and admins also write. Secrets are masked on read ("********") and a masked value
sent back keeps the stored secret, so a read-modify-write round trip never loses one.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.http import HttpResponse, JsonResponse

from console import api_tokens, instances, kinds, providers, versions
from console.api.decorators import (
    View,
    allowed,
    bearer_token,
    error,
    token_api,
    with_json_body,
)
from console.forms import HistoryFilterForm, PublishForm
from console.models import (
    AuditEvent,
    ConfigVersion,
    Instance,
    Provider,
)
from console.roles import ADMIN, SAFE_METHODS

MASK = "********"
PAGE_SIZE = 100


def user_api(*methods: str) -> Callable[[View], View]:
    """Bearer-token auth with the owner's role (console/api_tokens.py), then the UI's rule:
    auditors read, admins also write; JSON errors; the allowed methods."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                request.api_token, request.role = api_tokens.authenticate(bearer_token(request))
            except api_tokens.Refused as refusal:
                return error(refusal.status, str(refusal))
            request.user = request.api_token.user
            refused = allowed(methods, request)
            if refused:
                return refused
            if request.method not in SAFE_METHODS and request.role != ADMIN:
                return error(403, "Your role is read-only: only admins can change configuration.")
            return with_json_body(view)(request, *args, **kwargs)

        return token_api(wrapper)

    return decorate


# --- serialisation ------------------------------------------------------------------------------

# Shown, but changed only through their own endpoints or derived: ignored in a PATCH body, so
# that what a GET returned can be sent back as it is.
READ_ONLY = {"id", "kind", "issuer", "console_login", "validation"}


def provider_json(provider: Provider) -> dict[str, Any]:
    kind = kinds.of(provider)
    return {
        "id": provider.pk,
        "kind": provider.kind,
        "enabled": provider.enabled,
        "issuer": provider.issuer,
        **{name: getattr(provider, name) for name in kind.editable_fields},
        **{name: (MASK if provider.has_secret(name) else None) for name in kind.secret_names},
        "console_login": provider.console_login,
        "revision": provider.revision,
        "validation": {
            "passed": provider.validation_passed,
            "validated_at": provider.validated_at,
            "checks": provider.validation_checks,
        },
    }


def instance_json(instance: Instance) -> dict[str, Any]:
    return {
        "id": instance.pk,
        **instance.audit_fields(),
        "assigned_version": instance.assigned_number,
        "applied_version": instance.applied_version_number,
        "applied_status": instance.applied_status or None,
        "applied_at": instance.applied_at,
        # Only "signed_in" means a synthetic sign-in went through Diffgram's callback.
        "verification_state": instances.verification_state(instance),
        "verified": (
            {
                "version": instance.verified_version_number,
                "ok": instance.verify_ok,
                "kind": instance.verify_kind or "probe",
                "step": instance.verify_step or None,
                "detail": instance.verify_detail,
                "steps": instance.verify_steps,
                "at": instance.verified_at,
                "by": instance.verified_by,
            }
            if instance.verified_version_number
            else None
        ),
        "last_pull_at": instance.last_pull_at,
    }


def version_json(version: ConfigVersion) -> dict[str, Any]:
    return {
        "provider": version.provider_id,
        "number": version.number,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "note": version.note,
        "content_hash": version.content_hash,
        "rollout": version.rollout.state if hasattr(version, "rollout") else None,
        "rollback_of": version.rollback_of.number if version.rollback_of else None,
        "settings": {**version.settings, **dict.fromkeys(version.secret_names, MASK)},
    }


def json_answer(data: Any, status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status, json_dumps_params={"indent": 2})


def invalid_form(form: forms.BaseForm) -> JsonResponse:
    return error(400, "Invalid input.", fields={k: list(v) for k, v in form.errors.items()})


def _get(model: Any, **lookup: Any) -> Any:
    found = model.objects.filter(**lookup).first()
    return found


# --- providers ----------------------------------------------------------------------------------


@user_api("GET", "POST")
def providers_collection(request: Any) -> HttpResponse:
    if request.method == "GET":
        return json_answer({"providers": [provider_json(p) for p in Provider.objects.all()]})
    kind = kinds.get(request.json.get("kind"))
    if kind is None:
        return error(400, "Invalid input.", fields={"kind": [f"One of {', '.join(kinds.KINDS)}."]})
    data = {k: v for k, v in request.json.items() if k != "kind" and v != MASK and v is not None}
    form = kind.form(data=data)
    if not form.is_valid():
        return invalid_form(form)
    provider = providers.save_provider(form, request=request)
    provider, _ = providers.run_validation(provider, request=request)
    return json_answer(provider_json(provider), status=201)


@user_api("GET", "PATCH")
def provider_item(request: Any, provider_id: int) -> HttpResponse:
    provider = _get(Provider, pk=provider_id)
    if provider is None:
        return error(404, "No such provider.")
    if request.method == "GET":
        return json_answer(provider_json(provider))
    form_class = kinds.of(provider).form
    current = form_class(instance=provider)
    # What the form would show: the stored values (a field's own initial is its default).
    data = {
        name: current[name].value()
        for name in current.fields
        if name not in form_class.secret_names and not name.startswith("clear_")
    }
    data["revision"] = provider.revision
    enabled = request.json.get("enabled", provider.enabled)
    if not isinstance(enabled, bool):
        return error(400, "Invalid input.", fields={"enabled": ["true or false."]})
    for name, value in request.json.items():
        if (name in READ_ONLY and name not in data) or name == "enabled":
            continue  # derived here (a generic provider's issuer is its own field)
        if name in form_class.secret_names:
            if value is None:
                data[f"clear_{name}"] = "on"
            elif value != MASK:  # the mask sent back keeps the stored secret
                data[name] = value
        elif name in data:
            data[name] = value
        else:
            return error(400, "Invalid input.", fields={name: ["Unknown field."]})
    form = form_class(data=data, instance=provider)
    if not form.is_valid():
        return invalid_form(form)
    try:
        provider = providers.save_provider(form, request=request)
    except providers.EditConflict as conflict:
        return error(
            409,
            f"The provider changed since revision {data['revision']}.",
            changes=[{"by": e.actor_label, "changes": e.changes} for e in conflict.events],
        )
    if provider.enabled != enabled:
        provider = providers.set_enabled(provider, enabled, request=request)
    provider, _ = providers.run_validation(provider, request=request)
    return json_answer(provider_json(provider))


@user_api("POST")
def provider_validate(request: Any, provider_id: int) -> HttpResponse:
    provider = _get(Provider, pk=provider_id)
    if provider is None:
        return error(404, "No such provider.")
    provider, report = providers.run_validation(provider, request=request)
    return json_answer({"ok": report.ok, "checks": report.as_list()})


@user_api("POST")
def provider_publish(request: Any, provider_id: int) -> HttpResponse:
    provider = _get(Provider, pk=provider_id)
    if provider is None:
        return error(404, "No such provider.")
    form = PublishForm(request.json, provider=provider)
    if not form.is_valid():
        return error(400, "Invalid input.", fields=form.errors)
    try:
        version = versions.publish(provider, request=request, **form.cleaned_data)
    except versions.PublishRefused as refusal:
        return error(409, f"Not published: {refusal}")
    return json_answer(version_json(version), status=201)


@user_api("GET")
def provider_versions(request: Any, provider_id: int) -> HttpResponse:
    if not Provider.objects.filter(pk=provider_id).exists():
        return error(404, "No such provider.")
    versions = ConfigVersion.objects.filter(provider_id=provider_id).select_related(
        "rollout", "rollback_of"
    )
    return json_answer({"versions": [version_json(v) for v in versions]})


@user_api("GET")
def provider_version(request: Any, provider_id: int, number: int) -> HttpResponse:
    version = (
        ConfigVersion.objects.select_related("rollout", "rollback_of")
        .filter(provider_id=provider_id, number=number)
        .first()
    )
    if version is None:
        return error(404, "No such version.")
    return json_answer(version_json(version))


@user_api("GET")
def provider_diff(request: Any, provider_id: int) -> HttpResponse:
    def number(name: str) -> int | None:
        value = request.GET.get(name, "")
        return int(value) if value.isdigit() else None

    old = _get(ConfigVersion, provider_id=provider_id, number=number("from"))
    new = _get(ConfigVersion, provider_id=provider_id, number=number("to"))
    if old is None or new is None:
        return error(404, "Give ?from=N&to=M, two existing version numbers of this provider.")
    return json_answer(
        {"from": old.number, "to": new.number, "diff": versions.version_diff(old, new)}
    )


# --- instances and history ----------------------------------------------------------------------


@user_api("GET")
def instances_collection(request: Any) -> HttpResponse:
    fleet = Instance.objects.select_related("provider", "assigned_version")
    return json_answer({"instances": [instance_json(i) for i in fleet]})


@user_api("GET")
def instance_item(request: Any, instance_id: int) -> HttpResponse:
    instance = (
        Instance.objects.select_related("provider", "assigned_version")
        .filter(pk=instance_id)
        .first()
    )
    if instance is None:
        return error(404, "No such instance.")
    return json_answer(instance_json(instance))


@user_api("GET")
def history(request: Any) -> HttpResponse:
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return invalid_form(form)
    events = form.filter(AuditEvent.objects.all()).order_by("-id")
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(id__lt=int(before))
    page = list(events[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return json_answer(
        {
            "events": [{**e.hashed_fields(), "hash": e.hash} for e in page],
            "next_before": page[-1].id if more else None,
        }
    )
