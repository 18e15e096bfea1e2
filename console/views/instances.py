"""Diffgram instances: the fleet view, registration, credentials, pushes."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from console import agent_setup, encryption, instances, verification
from console.instance_forms import FleetFilterForm, InstanceForm
from console.models import Instance, PushRequest


def get_instance(request, instance_id):
    """The instance, or 404. Every instance view starts here."""
    return get_object_or_404(
        instances.with_state(Instance.objects.select_related("provider", "assigned_version")),
        pk=instance_id,
    )


PAGE_SIZE = 50


@require_safe
@never_cache
def instance_list(request):
    """The fleet, a page at a time in its order (group, then name), searched and filtered by the
    database: a few queries whatever its size."""
    form = FleetFilterForm(request.GET)
    rows, previous_name, next_name = [], None, None
    if form.is_valid():
        searched = form.search(Instance.objects.all())
        fleet = form.in_state(
            instances.with_state(searched.select_related("provider", "assigned_version"))
        )
        page, previous_name, next_name = _fleet_page(
            fleet, after=request.GET.get("after"), before=request.GET.get("before")
        )
        rows = _fleet_rows(page)
    template = "console/_fleet_table.html" if request.htmx else "console/instances.html"
    return render(
        request,
        template,
        {
            "form": form,
            "rows": rows,
            "previous_name": previous_name,
            "next_name": next_name,
            "filtered": form.is_valid() and any(form.cleaned_data.values()),
            "in_flight": any(_settling(row) for row in rows),
            "stale_minutes": settings.INSTANCE_STALE_AFTER_MINUTES,
        },
    )


@require_safe
@never_cache
def instance_counts(request):
    """How many instances of the search are in each state: the fleet page loads it after
    itself (htmx), since counting reads every instance searched, where a page reads fifty."""
    form = FleetFilterForm(request.GET)
    # ({} for a query the page refused: shown without counts, and not asked for again.)
    counts = instances.fleet_counts(form.search(Instance.objects.all())) if form.is_valid() else {}
    return render(request, "console/_fleet_counts.html", {"form": form, "counts": counts})


def _fleet_page(fleet, *, after=None, before=None):
    """One page, keyed on the instance's name (unique) and group rather than an offset, so that
    the last page of 100,000 instances is as fast as the first. Returns (instances, name for a
    "previous" link or None, name for a "next" link or None)."""
    bound = after or before
    group = (
        Instance.objects.filter(name=bound).values_list("rollout_group", flat=True).first()
        if bound
        else None
    )
    if group is None:  # no bound, or that instance is gone: the first page
        after = before = None
    if before:
        earlier = Q(rollout_group__lt=group) | Q(rollout_group=group, name__lt=before)
        page = list(fleet.filter(earlier).order_by("-rollout_group", "-name")[: PAGE_SIZE + 1])
        has_previous, has_next = len(page) > PAGE_SIZE, True
        page = page[:PAGE_SIZE][::-1]
    else:
        if after:
            later = Q(rollout_group__gt=group) | Q(rollout_group=group, name__gt=after)
            fleet = fleet.filter(later)
        page = list(fleet.order_by("rollout_group", "name")[: PAGE_SIZE + 1])
        has_previous, has_next = after is not None, len(page) > PAGE_SIZE
        page = page[:PAGE_SIZE]
    return (
        page,
        page[0].name if page and has_previous else None,
        page[-1].name if page and has_next else None,
    )


def _settling(row) -> bool:
    """Whether the row is about to change by itself, so the page refreshes itself: a push in
    flight, or a version published within ROLLOUT_VERIFY_TIMEOUT_MINUTES that the instance has
    not yet verified with a sign-in (the agent's next poll and its sign-in are seconds away)."""
    if row["last_push"] and row["last_push"].state == "pending":
        return True
    version = row["instance"].assigned_version
    recent = timezone.now() - timedelta(minutes=settings.ROLLOUT_VERIFY_TIMEOUT_MINUTES)
    return (
        version is not None
        and version.created_at > recent
        and row["verification"] in ("pending", "offers")
    )


def _fleet_rows(page):
    """Each instance of a page with its last push, drift and verification (from
    instances.with_state) and the defects that block its version."""
    pushes = PushRequest.objects.only(
        "id", "instance_id", "state", "last_error", "attempts", "created_at", "due_at"
    ).in_bulk([instance.last_push_id for instance in page if instance.last_push_id])
    blocking = {}
    for instance in page:
        if instance.assigned_version_id not in blocking:
            blocking[instance.assigned_version_id] = instances.blocking_defects(
                instance.assigned_version
            )
    return [
        {
            "instance": instance,
            "last_push": pushes.get(instance.last_push_id),
            "drift": instances.drift_reasons(instance),
            "verification": instance.verification,
            "blocking": blocking[instance.assigned_version_id],
        }
        for instance in page
    ]


def instance_create(request):
    form = InstanceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        instance, token = instances.create_instance(form, request=request)
        return _show_credentials(request, instance, token=token, created=True)
    return render(request, "console/instance_form.html", {"form": form})


def instance_edit(request, instance_id):
    instance = get_instance(request, instance_id)
    form = InstanceForm(request.POST or None, instance=instance)
    if request.method == "POST" and form.is_valid():
        instance = instances.update_instance(form, request=request)
        messages.success(request, f"Saved {instance}.")
        return redirect("instance-detail", instance.pk)
    return render(request, "console/instance_form.html", {"form": form, "instance": instance})


@require_safe
def instance_detail(request, instance_id):
    instance = get_instance(request, instance_id)
    pushes = instance.pushes.select_related("version").prefetch_related("attempt_log")[:10]
    return render(
        request,
        "console/instance_detail.html",
        {
            "instance": instance,
            "pushes": pushes,
            "row": {
                "verification": instances.verification_state(instance),
                "blocking": instances.blocking_defects(instance.assigned_version),
            },
            **_agent_context(request, instance),
        },
    )


def _agent_context(request, instance, **secrets):
    console_url = request.build_absolute_uri("/")
    return {
        "console_url": console_url,
        "agent_commands": agent_setup.setup_commands(instance, console_url, **secrets)
        if agent_setup.uses_agent(instance)
        else "",
        "agent_sha256": agent_setup.agent_sha256(),
    }


@login_not_required
@require_safe
def agent_download(request):
    """The agent file, for `curl` on a Diffgram host (public, like the code it is; the pages
    show its SHA-256 to check it against)."""
    response = HttpResponse(agent_setup.agent_source(), content_type="text/x-python")
    response["Content-Disposition"] = f'attachment; filename="{agent_setup.AGENT_DOWNLOAD_NAME}"'
    return response


@require_POST
def instance_rotate_token(request, instance_id):
    instance, token = instances.rotate_token(get_instance(request, instance_id), request=request)
    return _show_credentials(request, instance, token=token)


@require_POST
def instance_rotate_signing_secret(request, instance_id):
    instance, secret = instances.rotate_signing_secret(
        get_instance(request, instance_id), request=request
    )
    return _show_credentials(request, instance, signing_secret=secret)


@require_POST
def instance_verify(request, instance_id):
    """Ask the instance's Diffgram and identity provider now, from the console (through its
    HTTP module and guards); the answer is shown and recorded."""
    instance = get_object_or_404(
        Instance.objects.select_related("provider", "assigned_version"), pk=instance_id
    )
    try:
        result = verification.verify_from_console(instance)
    except verification.NothingToVerify as error:
        messages.error(request, str(error))
    else:
        if not result["ok"]:
            messages.error(
                request, f"{instance} failed verification at {result['step']}: {result['detail']}"
            )
        elif result["kind"] == "signin":
            messages.success(request, f"{instance}: signed in and out. {result['detail']}.")
        else:
            messages.warning(
                request,
                f"{instance} offers sign-in, but nobody signed in: {result['detail']}. Set up a "
                "test account on the provider's page to sign in for real.",
            )
    return redirect("instance-detail", instance.pk)


@require_POST
def instance_push(request, instance_id):
    """Push the assigned version again (after a failure, or to repair an instance)."""
    instance = get_instance(request, instance_id)
    if not instance.assigned_version_id or instance.push_target == Instance.PushTarget.NONE:
        messages.error(request, f"{instance} has no assigned version or no push target.")
    else:
        instances.repush(instance, request=request)
        messages.success(request, f"Pushing v{instance.assigned_number} to {instance} again.")
    return redirect("instance-detail", instance.pk)


def instance_delete(request, instance_id):
    instance = get_instance(request, instance_id)
    if request.method == "POST":
        instances.delete_instance(instance, request=request)
        messages.success(request, f"Deleted {instance}.")
        return redirect("instances")
    return render(request, "console/instance_delete.html", {"instance": instance})


# The session key of credentials waiting to be shown once, encrypted like every stored secret.
HANDOVER = "instance_credentials_handover"


def _show_credentials(request, instance, *, token=None, signing_secret=None, created=False):
    """Hand a new token or signing secret to the page after the POST's redirect (a reload
    then neither posts again nor shows them twice)."""
    if created and instance.push_target == Instance.PushTarget.WEBHOOK:
        signing_secret = instance.signing_secret()
    request.session[HANDOVER] = {
        "instance": instance.pk,
        "created": created,
        "token": encryption.encrypt(token) if token else "",
        "signing_secret": encryption.encrypt(signing_secret) if signing_secret else "",
    }
    return redirect("instance-credentials", instance.pk)


@require_safe
def instance_credentials(request, instance_id):
    """The one and only time a token or signing secret is shown (not cached; taken out of the
    session as it is shown)."""
    instance = get_instance(request, instance_id)
    handover = request.session.get(HANDOVER) or {}
    if handover.get("instance") != instance.pk:
        messages.info(
            request,
            "A new token or signing secret is shown only once, right after it is made: rotate "
            "it to get another.",
        )
        return redirect("instance-detail", instance.pk)
    del request.session[HANDOVER]
    token = encryption.decrypt(handover["token"]) if handover["token"] else None
    secret = encryption.decrypt(handover["signing_secret"]) if handover["signing_secret"] else None
    response = render(
        request,
        "console/instance_credentials.html",
        {
            "instance": instance,
            "token": token,
            "signing_secret": secret,
            "created": handover["created"],
            **_agent_context(request, instance, token=token or "", signing_secret=secret or ""),
        },
    )
    response["Cache-Control"] = "no-store"
    return response
