"""Cognito in AWS: inspect the app client, fix it, read the domain, and the identity
providers federated into the pool (add, change, enable or disable, remove)."""

import json

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST, require_safe

from console import cognito, cognito_provisioning, federation, kinds
from console.federation_forms import SHORT_NAMES, TYPES_BY_SHORT_NAME, FederationForm
from console.kinds import ProvisionCognitoForm
from console.models import FederatedIdentityProvider
from console.views.providers import get_provider, show_validation


def get_cognito_provider(request, provider_id):
    provider = get_provider(request, provider_id)
    if not kinds.of(provider).aws_user_pool:
        raise Http404("Not a Cognito provider")
    return provider


@require_safe
def inspect(request, provider_id):
    provider = get_cognito_provider(request, provider_id)
    context = {
        "provider": provider,
        # A stand-in such as moto serves a discovery document without the hosted-UI endpoints.
        "aws_stand_in": bool(settings.AWS_ENDPOINT_URL_COGNITO_IDP or settings.AWS_ENDPOINT_URL),
        "federation_types": [
            (SHORT_NAMES[FederatedIdentityProvider.Type(value)], label)
            for value, label in FederatedIdentityProvider.Type.choices
        ],
    }
    try:
        found = cognito.inspect(provider)
    except cognito.AWSError as error:
        context["error"] = str(error)
    else:
        domain_url = cognito.hosted_ui_url(found.domain, provider.aws_region)
        context |= {
            "inspection": found,
            "domain_url": domain_url,
            "federations": federation.overview(provider, found),
            "idp_redirect_uri": federation.redirect_uri(domain_url),
        }
    return render(request, "console/cognito_inspect.html", context)


def fix(request, provider_id):
    provider = get_cognito_provider(request, provider_id)
    keep_implicit = (request.POST if request.method == "POST" else request.GET).get(
        "keep_implicit"
    ) == "1"
    try:
        if request.method == "POST":
            changes = cognito.apply_fix(provider, keep_implicit=keep_implicit, request=request)
            messages.success(
                request,
                f"Updated the app client: {', '.join(changes) or 'nothing needed changing'}.",
            )
            return redirect("cognito-inspect", provider.pk)
        before, after = cognito.fix_plan(provider, keep_implicit=keep_implicit)
    except cognito.AWSError as error:
        messages.error(request, str(error))
        return redirect("cognito-inspect", provider.pk)
    rows = [
        {
            "name": name,
            "before": json.dumps(before.get(name)),
            "after": json.dumps(after.get(name)),
            "changed": before.get(name) != after.get(name),
        }
        for name in sorted(after)
    ]
    return render(
        request,
        "console/cognito_fix.html",
        {
            "provider": provider,
            "rows": rows,
            "keep_implicit": keep_implicit,
            "has_implicit": "implicit" in before.get("AllowedOAuthFlows", []),
        },
    )


@require_POST
def use_domain(request, provider_id):
    provider = get_cognito_provider(request, provider_id)
    try:
        found = cognito.describe(provider)
    except cognito.AWSError as error:
        messages.error(request, str(error))
        return redirect("cognito-inspect", provider.pk)
    url = cognito.hosted_ui_url(found.domain, provider.aws_region)
    if url:
        cognito.save_domain(provider, url, request=request)
        messages.success(request, f"Saved the hosted-UI domain {url}.")
    return redirect("cognito-inspect", provider.pk)


# --- federated identity providers ------------------------------------------------------------

hide_federation_secrets = sensitive_post_parameters(*FederatedIdentityProvider.SECRET_NAMES)


@hide_federation_secrets
def federation_new(request, provider_id, idp_type):
    provider = get_cognito_provider(request, provider_id)
    if idp_type not in TYPES_BY_SHORT_NAME:
        raise Http404("Unknown identity provider type")
    kind = TYPES_BY_SHORT_NAME[idp_type]
    existing = provider.federations.filter(name=kind.value, type=kind).first()
    if existing is not None:  # a social provider exists once per pool: change that one
        return redirect("federation-edit", provider.pk, existing.name)
    form = FederationForm(
        request.POST or None, request.FILES or None, idp_type=kind, cognito=provider
    )
    return _federation_form(request, provider, form)


@hide_federation_secrets
def federation_edit(request, provider_id, name):
    provider = get_cognito_provider(request, provider_id)
    record = get_object_or_404(provider.federations, name=name)
    form = FederationForm(
        request.POST or None, request.FILES or None, instance=record, idp_type=record.type,
        cognito=provider,
    )  # fmt: skip
    if request.method != "POST":
        try:
            app, _ = cognito.app_client(provider, cognito.client_for(provider))
            form.fields["enabled"].initial = name in app.get("SupportedIdentityProviders", [])
        except cognito.AWSError as error:
            messages.warning(request, str(error))
    return _federation_form(request, provider, form)


def _federation_form(request, provider, form):
    if request.method == "POST" and form.is_valid():
        try:
            record = federation.federate(form, request=request)
        except (cognito.AWSError, federation.FederationRefused) as error:
            form.add_error(None, str(error))  # nothing changed; the input stays in the form
        else:
            state = "enabled" if form.cleaned_data.get("enabled") else "not enabled"
            messages.success(
                request, f"Federated {record.name} into the pool ({state} on the app client)."
            )
            return redirect("cognito-inspect", provider.pk)
    try:
        idp_redirect_uri = federation.redirect_uri_at_aws(provider, form.idp_type)
    except cognito.AWSError:
        idp_redirect_uri = ""  # the page says where it would be
    return render(
        request,
        "console/federation_form.html",
        {"provider": provider, "form": form, "idp_redirect_uri": idp_redirect_uri},
    )


@require_POST
def federation_toggle(request, provider_id, name):
    provider = get_cognito_provider(request, provider_id)
    enabled = request.POST.get("enabled") == "1"
    try:
        federation.set_enabled(provider, name, enabled, request=request)
    except cognito.AWSError as error:
        messages.error(request, str(error))
    else:
        verb = "Enabled" if enabled else "Disabled"
        messages.success(request, f"{verb} {name} on the app client.")
    return redirect("cognito-inspect", provider.pk)


def federation_remove(request, provider_id, name):
    provider = get_cognito_provider(request, provider_id)
    if request.method == "POST":
        try:
            federation.remove(provider, name, request=request)
        except (cognito.AWSError, federation.FederationRefused) as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Removed {name} from the pool.")
        return redirect("cognito-inspect", provider.pk)
    return render(request, "console/federation_remove.html", {"provider": provider, "name": name})


# --- creating the app client -----------------------------------------------------------------


def provision(request):
    """Add a Cognito provider by creating its app client (and domain) in an existing pool."""
    form = ProvisionCognitoForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            provider, _report = cognito_provisioning.provision(form, request=request)
        except cognito.AWSError as error:
            form.add_error(None, str(error))  # nothing was created or stored
        else:
            messages.success(
                request, f"Created app client {provider.client_id} in {provider.user_pool_id}."
            )
            return show_validation(request, provider)
    return render(request, "console/cognito_provision.html", {"form": form})
