"""Publishing a provider to its instances: versions, staged rollout, diff, rollback."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from console import diffgram, kinds, verification, versions
from console.forms import PublishForm
from console.models import ConfigVersion
from console.views.providers import get_provider


def get_version(request, provider_id, number):
    return get_object_or_404(
        ConfigVersion.objects.select_related("provider", "rollout"),
        provider_id=provider_id,
        number=number,
    )


@require_POST
def publish(request, provider_id):
    """Publishing takes two steps: the first POST shows what would be published and where
    (the diff, the instances reached now and later); the second, confirmed, publishes. A
    provider changed in between is shown again rather than published unseen."""
    provider = get_provider(request, provider_id)
    form = PublishForm(request.POST, provider=provider)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("provider-detail", provider.pk)
    group, note = form.cleaned_data["group"], form.cleaned_data["note"]
    watch = {name: form.cleaned_data[name] for name in ("auto_halt", "auto_rollback")}
    try:
        preview = versions.publish_preview(provider, group=group)
    except versions.PublishRefused as refusal:
        messages.error(request, f"Not published: {refusal}")
        return redirect("provider-detail", provider.pk)
    confirmed = request.POST.get("confirm") == "yes"
    changed = confirmed and request.POST.get("revision") != str(provider.revision)
    if not confirmed or changed:
        per_instance = diffgram.INSTANCE_PLACEHOLDER in provider.client_id

        def with_client_ids(targets):
            """Each instance with the client id it signs in with, when each has its own."""
            return [
                (i, diffgram.instance_client_id(provider.client_id, i.name) if per_instance else "")
                for i in targets
            ]

        return render(
            request,
            "console/publish_confirm.html",
            {
                "provider": provider, "preview": preview, "note": note, "changed": changed,
                "now": with_client_ids(preview.targets), "later": with_client_ids(preview.later),
                "watch": watch, "verify_minutes": settings.ROLLOUT_VERIFY_TIMEOUT_MINUTES,
                "diffgram_version": settings.DIFFGRAM_VERSION,
                "blocking": kinds.of(provider).blocking_issues(
                    client_secret=provider.has_secret("client_secret")
                ),
            },
        )  # fmt: skip
    try:
        version = versions.publish(provider, group=group, note=note, request=request, **watch)
    except versions.PublishRefused as refusal:
        messages.error(request, f"Not published: {refusal}")
        return redirect("provider-detail", provider.pk)
    messages.success(request, f"Published {version}.")
    return redirect("version-detail", provider.pk, version.number)


@require_safe
def version_detail(request, provider_id, number):
    version = get_version(request, provider_id, number)
    previous = version.provider.versions.filter(number__lt=number).order_by("-number").first()
    instances = version.provider.instances.select_related("assigned_version").order_by(
        "rollout_group", "name"
    )
    rollout = getattr(version, "rollout", None)
    return render(
        request,
        "console/version_detail.html",
        {
            "version": version,
            "previous": previous,
            "diff": versions.version_diff(previous, version) if previous else None,
            "instances": instances,
            "first_group": verification.first_group(rollout)
            if rollout and rollout.first_group
            else [],
        },
    )


@require_safe
def version_diff(request, provider_id):
    provider = get_provider(request, provider_id)
    numbers = sorted(provider.versions.values_list("number", flat=True))
    # Without a choice: the previous version against the latest, what an admin asks first.
    old_number = _int(request.GET.get("from")) or (numbers[-2] if len(numbers) > 1 else None)
    new_number = _int(request.GET.get("to")) or (numbers[-1] if numbers else None)
    old = provider.versions.filter(number=old_number).first()
    new = provider.versions.filter(number=new_number).first()
    return render(
        request,
        "console/version_diff.html",
        {
            "provider": provider,
            "numbers": numbers,
            "old": old,
            "new": new,
            "diff": versions.version_diff(old, new) if old and new else None,
        },
    )


@require_POST
def rollout_continue(request, provider_id, number):
    return _rollout_step(request, provider_id, number, versions.continue_rollout, "Continued")


@require_POST
def rollout_halt(request, provider_id, number):
    return _rollout_step(request, provider_id, number, versions.halt_rollout, "Halted")


@require_POST
def rollout_override(request, provider_id, number):
    """Continue a rollout that halted by itself: the admin's reason is required and audited."""
    reason = request.POST.get("reason", "").strip()[:2000]

    def step(version, request):
        versions.continue_rollout(version, override=reason, request=request)

    return _rollout_step(request, provider_id, number, step, "Continued, overriding the halt,")


@require_POST
def version_rollback(request, provider_id, number):
    version = get_version(request, provider_id, number)
    try:
        new = versions.rollback(version, request=request)
    except versions.PublishRefused as refusal:
        messages.error(request, f"Not rolled back: {refusal}")
        return redirect("version-detail", provider_id, number)
    messages.success(request, f"Published v{new.number} with the content of v{version.number}.")
    return redirect("version-detail", provider_id, new.number)


def _rollout_step(request, provider_id, number, step, verb):
    version = get_version(request, provider_id, number)
    try:
        step(version, request=request)
    except versions.PublishRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, f"{verb} the rollout of {version}.")
    return redirect("version-detail", provider_id, number)


def _int(value):
    return int(value) if value and value.isdigit() else None
