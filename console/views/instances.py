"""Diffgram instances: the fleet view, registration, credentials, pushes."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.db.models import Prefetch
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from console import agent_setup, instances, verification
from console.instance_forms import InstanceForm
from console.models import Instance, PushRequest


def get_instance(request, instance_id):
    """The instance, or 404. Every instance view starts here."""
    return get_object_or_404(
        Instance.objects.select_related("provider", "assigned_version"), pk=instance_id
    )


def fleet_rows():
    """Each instance with its assigned version, last push and drift, in a constant number of
    queries whatever the fleet size."""
    fleet = Instance.objects.select_related("provider", "assigned_version").prefetch_related(
        Prefetch(
            "pushes",
            queryset=PushRequest.objects.order_by("-id").only(
                "id", "instance_id", "state", "last_error", "attempts", "created_at", "due_at"
            ),
            to_attr="recent_pushes",
        )
    )
    stale_before = timezone.now() - timedelta(minutes=settings.INSTANCE_STALE_AFTER_MINUTES)
    rows = []
    for instance in fleet:
        last_push = instance.recent_pushes[0] if instance.recent_pushes else None
        rows.append(
            {
                "instance": instance,
                "last_push": last_push,
                "drift": instances.drift_reasons(instance, stale_before),
                "verification": instances.verification_state(instance),
                "blocking": instances.blocking_defects(instance.assigned_version),
            }
        )
    return rows


@require_safe
@never_cache
def instance_list(request):
    rows = fleet_rows()
    in_flight = any(r["last_push"] and r["last_push"].state == "pending" for r in rows)
    # Everything published to and not signed in to: only a synthetic sign-in is a ✓.
    not_verified = [r for r in rows if r["verification"] not in ("signed_in", "none")]
    only_not_verified = request.GET.get("show") == "not-verified"
    template = "console/_fleet_table.html" if request.htmx else "console/instances.html"
    return render(
        request,
        template,
        {
            "rows": not_verified if only_not_verified else rows,
            "only_not_verified": only_not_verified,
            "not_verified_count": len(not_verified),
            "in_flight": in_flight,
            "stale_minutes": settings.INSTANCE_STALE_AFTER_MINUTES,
        },
    )


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


def _show_credentials(request, instance, *, token=None, signing_secret=None, created=False):
    """The one and only time a token or signing secret is shown (not cached, not stored)."""
    if created and instance.push_target == Instance.PushTarget.WEBHOOK:
        signing_secret = instance.signing_secret()
    response = render(
        request,
        "console/instance_credentials.html",
        {
            "instance": instance,
            "token": token,
            "signing_secret": signing_secret,
            "created": created,
            **_agent_context(
                request, instance, token=token or "", signing_secret=signing_secret or ""
            ),
        },
    )
    response["Cache-Control"] = "no-store"
    return response
