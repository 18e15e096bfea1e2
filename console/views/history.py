"""Auditor views of the audit history: list with filters, detail, verification, export."""

import csv
import json

from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_safe

from console import audit, audit_anchor
from console.forms import HistoryFilterForm
from console.models import HASHED_FIELDS, AuditEvent, ExternalIdentity

PAGE_SIZE = 50
EXPORT_COLUMNS = (*HASHED_FIELDS, "hash")
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _page_bound(request, name):
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


@require_safe
def history(request):
    form = HistoryFilterForm(request.GET)  # every filter is optional: no filter is valid
    events, newer, older = [], None, None
    if form.is_valid():
        events, newer, older = _keyset_page(
            form.filter(AuditEvent.objects.all()),
            before=_page_bound(request, "before"),
            after=_page_bound(request, "after"),
        )
    _note_sso_identities(events)
    return render(
        request,
        "console/history.html",
        {"form": form, "events": events, "newer": newer, "older": older},
    )


def _note_sso_identities(events):
    """Set `sso_identity` ("subject at issuer") on events by single-sign-on users, so that two
    actors whose names look alike can be told apart. One query per page."""
    user_ids = {e.actor_id for e in events if e.actor_type == "user" and e.actor_id.isdigit()}
    identities: dict[str, str] = {}
    for identity in ExternalIdentity.objects.filter(user_id__in=user_ids):
        identities.setdefault(str(identity.user_id), f"{identity.subject} at {identity.issuer}")
    for event in events:
        event.sso_identity = identities.get(event.actor_id, "")


def _keyset_page(events, before=None, after=None):
    """One page, newest first, keyed on id (no OFFSET, so deep pages stay fast).

    Returns (events, id for a "newer" link or None, id for an "older" link or None).
    """
    if after is not None:
        rows = list(events.filter(id__gt=after).order_by("id")[: PAGE_SIZE + 1])
        has_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        has_older = True
    else:
        if before is not None:
            events = events.filter(id__lt=before)
        rows = list(events.order_by("-id")[: PAGE_SIZE + 1])
        has_older = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        has_newer = before is not None
    if not rows:
        return [], None, None
    return rows, rows[0].id if has_newer else None, rows[-1].id if has_older else None


@require_safe
def event_detail(request, event_id):
    event = get_object_or_404(AuditEvent, pk=event_id)
    diff = [
        {"field": field, "before": values[0], "after": values[1]}
        if isinstance(values, list) and len(values) == 2
        else {"field": field, "before": "", "after": values}
        for field, values in sorted(event.changes.items())
    ]
    return render(
        request,
        "console/history_event.html",
        {"event": event, "diff": diff, "context_json": json.dumps(event.context, indent=2)},
    )


@require_safe
def verify(request):
    report = audit.verify_chain(processes=1)  # never fork a web worker
    anchors = anchor_error = None
    if audit_anchor.configured_sinks():
        try:
            anchors = audit_anchor.verify_against_checkpoints()
        except audit_anchor.CheckpointError as error:
            anchor_error = str(error)
    return render(
        request,
        "console/history_verify.html",
        {"report": report, "anchors": anchors, "anchor_error": anchor_error},
    )


@require_safe
def export(request, export_format):
    if export_format not in ("csv", "jsonl"):
        raise Http404("Unknown export format")
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return render(request, "console/history.html", {"form": form, "events": []}, status=400)
    events = form.filter(AuditEvent.objects.all()).order_by("id")
    audit.record(
        audit.Action.HISTORY_EXPORTED,
        request=request,
        target=(AuditEvent.TargetType.HISTORY, "", "audit history"),
        context={"format": export_format, "filters": form.active_filters()},
    )
    rows = (_export_row(event) for event in events.iterator(chunk_size=2000))
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if export_format == "csv":
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(
            (json.dumps(row, sort_keys=True) + "\n" for row in rows),
            content_type="application/jsonl; charset=utf-8",
        )
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{export_format}"'
    return response


def _export_row(event):
    """The hashed fields plus the hash: a JSON lines export can be re-verified offline."""
    return {**event.hashed_fields(), "hash": event.hash}


class _Echo:
    def write(self, value):
        return value


def _csv_lines(rows):
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        yield writer.writerow([_csv_cell(row[column]) for column in EXPORT_COLUMNS])


def _csv_cell(value):
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    value = str(value)
    # Spreadsheets run cells starting with these as formulas; neutralise them (CSV injection).
    return "'" + value if value.startswith(CSV_FORMULA_PREFIXES) else value
