"""/api/v1/providers: identity providers, their validation, publishing, versions and diffs.

A provider's body and answer depend on its kind: each kind brings its schemas
(console/kinds/base.py, from its form), and the form validates what the schema let through, as
on the pages. Secrets are masked on read ("********"); a masked value sent back keeps the
stored secret, so a read-modify-write round trip never loses one; null clears one."""

from __future__ import annotations

import copy
import datetime
from typing import Annotated, Any, Literal, Optional, Union

from django.http import HttpRequest
from ninja import Query, Router, Status
from pydantic import BaseModel, ConfigDict, Field, create_model

from console import kinds, providers, versions
from console.api.auth import WRITE
from console.api.errors import ApiError, ErrorOut, invalid_form
from console.forms import PublishForm
from console.models import ConfigVersion, Provider, Rollout

MASK = "********"
router = Router(tags=["providers"])

# One schema per kind, told apart by "kind".
# (Built at run time from the registry: mypy sees Any.)
ProviderCreate: Any = Annotated[
    Union[tuple(kind.api_create for kind in kinds.KINDS.values())],  # noqa: UP007
    Field(discriminator="kind"),
]
ProviderOut: Any = Annotated[
    Union[tuple(kind.api_read for kind in kinds.KINDS.values())],  # noqa: UP007
    Field(discriminator="kind"),
]


def _change_model() -> type[BaseModel]:
    """A PATCH body: any kind's fields, each optional (the provider's kind refuses the others),
    and what a GET answered, so that it can be sent back as it is (read-only fields ignored)."""
    fields: dict[str, Any] = {}
    for kind in kinds.KINDS.values():
        for name, info in kind.api_create.model_fields.items():
            if name != "kind":
                optional = copy.copy(info)
                optional.default = None
                fields[name] = (Optional[info.annotation], optional)  # noqa: UP045
    fields |= {
        "enabled": (bool, Field(None, description="Sign-ins through this provider allowed.")),
        "revision": (
            int,
            Field(
                None,
                ge=0,
                le=2**63 - 1,
                description="The revision the change was made on (409 if it moved).",
            ),
        ),
        "id": (int, Field(None, description="Ignored (read-only).")),
        "kind": (Literal[tuple(kinds.KINDS)], Field(None, description="Ignored (read-only).")),
        "issuer": (str | None, Field(None, description="Set for generic OIDC; else derived.")),
        "console_login": (bool, Field(None, description="Ignored: marked from the page.")),
        "validation": (dict[str, Any], Field(None, description="Ignored (read-only).")),
    }
    model: type[BaseModel] = create_model(
        "ProviderChange", __config__=ConfigDict(extra="forbid", strict=True), **fields
    )
    return model


ProviderChange = _change_model()
READ_ONLY = {"id", "kind", "console_login", "validation"}


class ProviderList(BaseModel):
    providers: list[ProviderOut]


class ValidationReport(BaseModel):
    ok: bool
    checks: list[dict[str, str]]


class VersionOut(BaseModel):
    provider: int
    number: int
    created_at: datetime.datetime
    created_by: str
    note: str
    content_hash: str
    rollout: Literal[tuple(Rollout.State.values)] | None  # type: ignore[valid-type]
    rollback_of: int | None
    settings: dict[str, str]


class VersionList(BaseModel):
    versions: list[VersionOut]


class PublishIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    group: str = Field("", max_length=100, description="Publish to this rollout group first.")
    note: str = Field("", max_length=500, description="Why (shown in the history).")
    auto_halt: bool = False
    auto_rollback: bool = False


class DiffQuery(BaseModel):
    from_: int = Field(..., alias="from", ge=1, le=2**31 - 1)
    to: int = Field(..., ge=1, le=2**31 - 1)


class DiffOut(BaseModel):
    from_: int = Field(..., alias="from")
    to: int
    diff: list[dict[str, Any]]

    model_config = ConfigDict(populate_by_name=True)


ProviderId = Annotated[int, Field(ge=1, le=2**63 - 1)]


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


def get_provider(provider_id: int) -> Provider:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise ApiError(404, "No such provider.")
    return provider


# Every operation with a path parameter: 400 for one that is not a valid id.
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}


@router.get(
    "",
    operation_id="listProviders",
    response={200: ProviderList, 401: ErrorOut, 403: ErrorOut},
    url_name="providers",
)
def list_providers(request: HttpRequest) -> dict[str, Any]:
    return {"providers": [provider_json(p) for p in Provider.objects.all()]}


@router.post(
    "",
    operation_id="createProvider",
    auth=WRITE,
    url_name="providers-create",
    response={201: ProviderOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut},
)
def create_provider(request: HttpRequest, body: ProviderCreate) -> Status[dict[str, Any]]:
    """Create a provider and validate it at once (its validation is in the answer)."""
    kind = kinds.KINDS[body.kind]
    data = {
        k: v
        for k, v in body.model_dump(exclude_unset=True).items()
        if k != "kind" and v != MASK and v is not None
    }
    form = kind.form(data=data)
    if not form.is_valid():
        raise invalid_form(form)
    provider = providers.save_provider(form, request=request)
    provider, _ = providers.run_validation(provider, request=request)
    return Status(201, provider_json(provider))


@router.get(
    "/{provider_id}",
    operation_id="getProvider",
    response={200: ProviderOut, **ERRORS},
    url_name="provider",
)
def read_provider(request: HttpRequest, provider_id: ProviderId) -> dict[str, Any]:
    return provider_json(get_provider(provider_id))


@router.patch(
    "/{provider_id}",
    operation_id="updateProvider",
    auth=WRITE,
    url_name="provider-change",
    response={200: ProviderOut, 400: ErrorOut, 409: ErrorOut, **ERRORS},
)
def change_provider(
    request: HttpRequest,
    provider_id: ProviderId,
    body: ProviderChange,  # type: ignore[valid-type]
) -> dict[str, Any]:
    """Change what is sent (the rest stays); validated again afterwards. With `revision`, a
    change made meanwhile by someone else is refused (409) rather than overwritten."""
    provider = get_provider(provider_id)
    form_class = kinds.of(provider).form
    current = form_class(instance=provider)
    # What the form would show: the stored values (a field's own initial is its default).
    data = {
        name: current[name].value()
        for name in current.fields
        if name not in form_class.secret_names and not name.startswith("clear_")
    }
    data["revision"] = provider.revision
    sent = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    enabled = sent.pop("enabled", None)
    if enabled is None:
        enabled = provider.enabled
    for name, value in sent.items():
        if name in READ_ONLY or (name == "issuer" and name not in data):
            continue  # derived here (a generic provider's issuer is its own field)
        if name in form_class.secret_names:
            if value is None:
                data[f"clear_{name}"] = "on"
            elif value != MASK:  # the mask sent back keeps the stored secret
                data[name] = value
        elif name in data and value is not None:
            data[name] = value
        elif name not in data:
            raise ApiError(
                400,
                "Invalid input.",
                fields={name: [f"Not a field of a {kinds.of(provider).label} provider."]},
            )
    form = form_class(data=data, instance=provider)
    if not form.is_valid():
        raise invalid_form(form)
    try:
        provider = providers.save_provider(form, request=request)
    except providers.EditConflict as conflict:
        raise ApiError(
            409,
            f"The provider changed since revision {data['revision']}.",
            changes=[{"by": e.actor_label, "changes": e.changes} for e in conflict.events],
        ) from None
    if provider.enabled != enabled:
        provider = providers.set_enabled(provider, enabled, request=request)
    provider, _ = providers.run_validation(provider, request=request)
    return provider_json(provider)


@router.post(
    "/{provider_id}/validate",
    operation_id="validateProvider",
    auth=WRITE,
    url_name="provider-validate",
    response={200: ValidationReport, **ERRORS},
)
def validate_provider(request: HttpRequest, provider_id: ProviderId) -> dict[str, Any]:
    provider, report = providers.run_validation(get_provider(provider_id), request=request)
    return {"ok": report.ok, "checks": report.as_list()}


@router.post(
    "/{provider_id}/publish",
    operation_id="publishProvider",
    auth=WRITE,
    url_name="provider-publish",
    response={201: VersionOut, 400: ErrorOut, 409: ErrorOut, **ERRORS},
)
def publish_provider(
    request: HttpRequest, provider_id: ProviderId, body: PublishIn
) -> Status[dict[str, Any]]:
    """Publish the provider's current settings as a new version (409 when refused: its last
    validation failed, no instance uses it, or instances share a Keycloak client)."""
    provider = get_provider(provider_id)
    form = PublishForm(body.model_dump(), provider=provider)
    if not form.is_valid():
        raise invalid_form(form)
    try:
        version = versions.publish(provider, request=request, **form.cleaned_data)
    except versions.PublishRefused as refusal:
        raise ApiError(409, f"Not published: {refusal}") from None
    return Status(201, version_json(version))


@router.get(
    "/{provider_id}/versions",
    operation_id="listVersions",
    response={200: VersionList, **ERRORS},
    url_name="versions",
)
def list_versions(request: HttpRequest, provider_id: ProviderId) -> dict[str, Any]:
    get_provider(provider_id)
    found = ConfigVersion.objects.filter(provider_id=provider_id).select_related(
        "rollout", "rollback_of"
    )
    return {"versions": [version_json(v) for v in found]}


@router.get(
    "/{provider_id}/versions/{number}",
    operation_id="getVersion",
    response={200: VersionOut, **ERRORS},
    url_name="version",
)
def read_version(
    request: HttpRequest, provider_id: ProviderId, number: Annotated[int, Field(ge=1, le=2**31 - 1)]
) -> dict[str, Any]:
    version = (
        ConfigVersion.objects.select_related("rollout", "rollback_of")
        .filter(provider_id=provider_id, number=number)
        .first()
    )
    if version is None:
        raise ApiError(404, "No such version.")
    return version_json(version)


@router.get(
    "/{provider_id}/diff",
    operation_id="diffVersions",
    response={200: DiffOut, 400: ErrorOut, **ERRORS},
    url_name="diff",
)
def diff_versions(
    request: HttpRequest, provider_id: ProviderId, query: Query[DiffQuery]
) -> dict[str, Any]:
    """What changed between two versions of the provider (?from=N&to=M)."""
    found = {
        v.number: v
        for v in ConfigVersion.objects.filter(
            provider_id=provider_id, number__in=[query.from_, query.to]
        )
    }
    old, new = found.get(query.from_), found.get(query.to)
    if old is None or new is None:
        raise ApiError(404, "Give ?from=N&to=M, two existing version numbers of this provider.")
    return {"from": old.number, "to": new.number, "diff": versions.version_diff(old, new)}
