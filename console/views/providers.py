"""Identity provider pages: list, create/edit per kind, detail with checks and Diffgram
settings, validate, disable, delete, and the htmx discovery preview."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import ngettext
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST, require_safe

from console import (
    diffgram,
    discovery,
    getting_started,
    kinds,
    providers,
    roles,
    signin_accounts,
    versions,
)
from console.forms import PublishForm, SearchForm, diffgram_url_base
from console.models import Provider


def get_provider(request, provider_id):
    """The provider, or 404. Every provider view starts here."""
    return get_object_or_404(Provider, pk=provider_id)


@require_safe
def provider_list(request):
    search = SearchForm(
        request.GET, fields=("name", "kind", "issuer", "client_id"),
        help_text="Name, kind, issuer or client id.",
    )  # fmt: skip
    steps = getting_started.steps() if request.role == roles.ADMIN else []
    return render(
        request,
        "console/providers.html",
        {
            "providers": search.search(Provider.objects.all()),
            "search": search,
            # Until the whole path has been walked once.
            "getting_started": steps if not all(step.done for step in steps) else [],
        },
    )


@require_safe
def provider_new(request):
    return render(request, "console/provider_new.html", {"kinds": kinds.KINDS.values()})


# Error reports (DEBUG pages, mailed 500s) must not carry the secrets typed into these forms.
hide_secrets = sensitive_post_parameters(*Provider.SECRET_NAMES)


@hide_secrets
def provider_create(request, kind):
    chosen = kinds.get(kind)
    if chosen is None:
        raise Http404("Unknown provider kind")
    form = chosen.form(request.POST or None)
    if request.method == "POST" and form.is_valid():
        return _validate_and_show(request, providers.save_provider(form, request=request))
    return render(
        request,
        "console/provider_form.html",
        {"form": form, "kind": chosen, "kind_label": with_article(chosen.label)},
    )


@hide_secrets
def provider_edit(request, provider_id):
    provider = get_provider(request, provider_id)
    kind = kinds.of(provider)
    form = kind.form(request.POST or None, instance=provider)
    conflict = None
    if request.method == "POST" and form.is_valid():
        was_console_login = provider.console_login
        try:
            provider = providers.save_provider(form, request=request)
        except providers.EditConflict as error:
            conflict = error
        else:
            if was_console_login and not provider.console_login:
                messages.warning(
                    request,
                    f"{provider} no longer signs admins in to the console: it now points "
                    "elsewhere. Run a Test login, then mark it again.",
                )
            return _validate_and_show(request, provider)
    return render(
        request,
        "console/provider_form.html",
        {
            "form": form,
            "provider": provider,
            "kind": kind,
            "kind_label": with_article(kind.label),
            "conflict": conflict,
        },
        status=409 if conflict else 200,
    )


@require_safe
def provider_detail(request, provider_id):
    provider = get_provider(request, provider_id)
    url_base = request.GET.get("url_base", provider.diffgram_url_base).strip()
    url_base_error = ""
    if url_base:
        try:
            url_base = diffgram_url_base(url_base)
        except ValidationError as error:
            # Nothing derived from a URL_BASE Diffgram would break on is shown, or offered to copy.
            url_base_error, url_base = error.messages[0], ""
    kind, config = kinds.of(provider), provider.diffgram_config()
    variables = kind.diffgram_settings(config, url_base)
    return render(
        request,
        "console/provider_detail.html",
        {
            "provider": provider,
            "kind": kind,
            "url_base": url_base or request.GET.get("url_base", provider.diffgram_url_base),
            "url_base_error": url_base_error,
            "variables": diffgram.masked(variables),
            "unknown_variables": kind.unknown_variables(config, url_base),
            "registrations": kind.registrations(url_base),
            "discovery_json": _pretty(provider.discovery_snapshot),
            "publish_form": PublishForm(provider=provider),
            "publish_refusal": versions.why_not_publishable(provider),
            "console_callback": request.build_absolute_uri(reverse("oidc_authentication_callback")),
            "versions": provider.versions.select_related("rollout")[:20],
            "jwks_json": _pretty(provider.jwks_snapshot),
            "instance_rows": _instance_rows(provider),
            "signin_account": signin_accounts.account_of(provider.pk),
        },
    )


def _instance_rows(provider):
    """What each instance of the provider receives that is its own, and must be registered."""
    kind = kinds.of(provider)
    return [
        {
            "instance": instance,
            "client_id": diffgram.instance_client_id(provider.client_id, instance.name),
            "registrations": kind.registrations(instance.url_base),
        }
        for instance in provider.instances.order_by("rollout_group", "name")
    ]


@require_POST
def provider_validate(request, provider_id):
    return _validate_and_show(request, get_provider(request, provider_id))


@require_POST
def provider_toggle(request, provider_id):
    provider = get_provider(request, provider_id)
    provider = providers.set_enabled(provider, not provider.enabled, request=request)
    messages.success(request, f"{provider} is now {'enabled' if provider.enabled else 'disabled'}.")
    return redirect("provider-detail", provider.pk)


def provider_delete(request, provider_id):
    provider = get_provider(request, provider_id)
    if request.method == "POST":
        try:
            providers.delete_provider(provider, request=request)
        except providers.DeleteRefused as refusal:
            messages.error(request, str(refusal))
            return redirect("provider-detail", provider.pk)
        messages.success(request, f"Deleted {provider}.")
        return redirect("providers")
    return render(request, "console/provider_delete.html", {"provider": provider})


@require_POST
def provider_discover(request):
    """htmx: read the discovery document for what is typed in the form and show its endpoints."""
    kind = kinds.get(request.GET.get("kind", kinds.OIDC.slug))
    if kind is None:
        raise Http404("Unknown provider kind")
    draft = kind.draft({name: request.POST.get(name, "").strip() for name in kind.editable_fields})
    spec = kind.spec(draft, url_base="")
    report = None
    if spec.issuer.strip("/") and not spec.issuer.endswith(("realms/", "amazonaws.com/")):
        report = kind.validate(spec)
    document = report.discovery.document if report and report.discovery else None
    endpoints = (
        [(key, document[key]) for key in discovery.ENDPOINT_KEYS if key in document]
        if isinstance(document, dict)
        else []
    )
    return render(
        request,
        "console/_discovery_preview.html",
        {"issuer": spec.issuer, "report": report, "endpoints": endpoints},
    )


def _validate_and_show(request, provider):
    """Validate (after a save, or on demand) and show the outcome on the provider's page."""
    provider, _report = providers.run_validation(provider, request=request)
    return show_validation(request, provider)


def with_article(label) -> str:
    """ "an AWS Cognito", "a Keycloak": the article follows the first letter's sound."""
    return f"{'an' if label[:1].upper() in 'AEIO' else 'a'} {label}"


def show_validation(request, provider):
    """The provider's page, with a message saying how its latest validation ended."""
    counts = provider.validation_counts
    if provider.validation_passed:
        messages.success(
            request,
            f"{provider} passed validation: "
            + ngettext("%d check passed", "%d checks passed", counts["pass"]) % counts["pass"]
            + ", "
            + ngettext("%d warning.", "%d warnings.", counts["warn"]) % counts["warn"],
        )
    else:
        messages.error(
            request,
            f"{provider} failed validation ("
            + ngettext("%d failing check", "%d failing checks", counts["fail"]) % counts["fail"]
            + "). It cannot be published to instances until the checks pass.",
        )
    return redirect("provider-detail", provider.pk)


def _pretty(document):
    return json.dumps(document, indent=2, sort_keys=True) if document is not None else ""
