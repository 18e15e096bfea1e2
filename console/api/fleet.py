"""/api/v1/instances and /api/v1/history: the fleet as the instances page shows it, and the
audit history as auditors read it (newest first, a page at a time)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Query, Router
from pydantic import BaseModel, Field

from console import instances
from console.api.errors import ApiError, ErrorOut, invalid_form
from console.form_schemas import form_model
from console.forms import HistoryFilterForm
from console.instance_forms import FleetFilterForm
from console.models import AuditEvent, Instance

router = Router(tags=["fleet"])
PAGE_SIZE = 100
ERRORS = {401: ErrorOut, 403: ErrorOut}


class VerifiedOut(BaseModel):
    version: int
    ok: bool
    kind: Literal["probe", "signin"]
    step: str | None
    detail: str
    steps: list[dict[str, Any]]
    at: datetime.datetime | None
    by: str


class InstanceOut(BaseModel):
    id: int
    name: str
    url_base: str
    shape: Literal[tuple(Instance.Shape.values)]  # type: ignore[valid-type]
    rollout_group: str
    provider: str | None
    push_target: Literal[tuple(Instance.PushTarget.values)]  # type: ignore[valid-type]
    webhook_url: str
    webhook_allow_http: bool
    ssm_region: str
    ssm_prefix: str
    console_verifies: bool
    signin_runner: Literal[tuple(Instance.SigninRunner.values)]  # type: ignore[valid-type]
    assigned_version: int | None
    applied_version: int | None
    applied_status: Literal["ok", "error"] | None
    applied_at: datetime.datetime | None
    verification_state: str = Field(
        description='Only "signed_in" means a synthetic sign-in went through Diffgram\'s callback.'
    )
    verified: VerifiedOut | None
    last_pull_at: datetime.datetime | None


class InstanceList(BaseModel):
    instances: list[InstanceOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page.")


FleetQuery = form_model(
    "FleetQuery",
    FleetFilterForm().fields,
    extra={"after": (int, Field(None, ge=1, le=2**63 - 1, description="Instances after this id."))},
)


def _page(rows: Any) -> tuple[list[Any], int | None]:
    """The first PAGE_SIZE rows, and the last one's id if more follow (the next page's key)."""
    page = list(rows[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    return page[:PAGE_SIZE], (page[PAGE_SIZE - 1].pk if more else None)


def instance_json(instance: Instance) -> dict[str, Any]:
    return {
        "id": instance.pk,
        **instance.audit_fields(),
        "assigned_version": instance.assigned_number,
        "applied_version": instance.applied_version_number,
        "applied_status": instance.applied_status or None,
        "applied_at": instance.applied_at,
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


@router.get(
    "instances",
    operation_id="listInstances",
    response={200: InstanceList, 400: ErrorOut, **ERRORS},
    url_name="instances",
)
def list_instances(request: HttpRequest, query: Query[FleetQuery]) -> dict[str, Any]:  # type: ignore[valid-type]
    """The fleet in id order, PAGE_SIZE at a time: the Instances page's search (name, URL, group,
    provider) and state filter."""
    sent = query.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    form = FleetFilterForm({k: v for k, v in sent.items() if k != "after" and v is not None})
    if not form.is_valid():
        raise invalid_form(form)
    fleet = instances.with_state(Instance.objects.select_related("provider", "assigned_version"))
    fleet = form.in_state(form.search(fleet)).order_by("pk")
    if sent.get("after"):
        fleet = fleet.filter(pk__gt=sent["after"])
    page, last = _page(fleet)
    return {"instances": [instance_json(i) for i in page], "next_after": last}


@router.get(
    "instances/{instance_id}",
    operation_id="getInstance",
    response={200: InstanceOut, 400: ErrorOut, 404: ErrorOut, **ERRORS},
    url_name="instance",
)
def read_instance(
    request: HttpRequest, instance_id: Annotated[int, Field(ge=1, le=2**63 - 1)]
) -> dict[str, Any]:
    instance = (
        instances.with_state(Instance.objects.select_related("provider", "assigned_version"))
        .filter(pk=instance_id)
        .first()
    )
    if instance is None:
        raise ApiError(404, "No such instance.")
    return instance_json(instance)


HistoryQuery = form_model(
    "HistoryQuery",
    HistoryFilterForm().fields,
    extra={"before": (int, Field(None, ge=1, le=2**63 - 1, description="Events before this id."))},
)


class EventOut(BaseModel):
    id: int
    created_at: str
    actor_type: str
    actor_id: str
    actor_label: str
    source_ip: str | None
    action: str
    target_type: str
    target_id: str
    target_label: str
    changes: dict[str, Any]
    context: dict[str, Any]
    prev_hash: str
    request_id: str | None = None
    hash: str


class HistoryPage(BaseModel):
    events: list[EventOut]
    next_before: int | None = Field(description="Pass as ?before= for the next page.")


@router.get(
    "history",
    operation_id="listHistory",
    response={200: HistoryPage, 400: ErrorOut, **ERRORS},
    url_name="history",
)
def history(request: HttpRequest, query: Query[HistoryQuery]) -> dict[str, Any]:  # type: ignore[valid-type]
    """The audit history, newest first: the same filters as the History page."""
    sent = query.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    form = HistoryFilterForm({k: v for k, v in sent.items() if k != "before" and v is not None})
    if not form.is_valid():
        raise invalid_form(form)
    events = form.filter(AuditEvent.objects.all()).order_by("-id")
    if sent.get("before"):
        events = events.filter(id__lt=sent["before"])
    page, last = _page(events)
    return {"events": [{**e.hashed_fields(), "hash": e.hash} for e in page], "next_before": last}
