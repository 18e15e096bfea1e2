"""Cognito in AWS: inspect the app client, fix it, read the domain, add SAML providers."""

import json

from django import forms
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from console import cognito
from console.models import Provider
from console.views.providers import get_provider


def get_cognito_provider(request, provider_id):
    provider = get_provider(request, provider_id)
    if provider.kind != Provider.Kind.COGNITO:
        raise Http404("Not a Cognito provider")
    return provider


class SAMLProviderForm(forms.Form):
    name = forms.RegexField(
        regex=r"^[\w.-]{1,32}$",
        help_text="As users will see it on the hosted UI, e.g. EntraID (letters, digits, . - _).",
    )
    metadata_url = forms.URLField(required=False, label="Metadata URL", assume_scheme="https")
    metadata_file = forms.FileField(required=False, label="or metadata XML file")
    email_attribute = forms.CharField(
        initial="http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
        help_text="The SAML attribute that carries the user's email.",
    )

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("metadata_url")) == bool(cleaned.get("metadata_file")):
            raise forms.ValidationError("Give either a metadata URL or a metadata file.")
        upload = cleaned.get("metadata_file")
        if upload:
            if upload.size > 512 * 1024:
                raise forms.ValidationError("The metadata file is larger than 512 KiB.")
            cleaned["metadata_xml"] = upload.read().decode("utf-8", "replace")
        return cleaned


@require_safe
def inspect(request, provider_id):
    provider = get_cognito_provider(request, provider_id)
    context = {"provider": provider, "saml_form": SAMLProviderForm()}
    try:
        found = cognito.inspect(provider)
    except cognito.AWSError as error:
        context["error"] = str(error)
    else:
        context["inspection"] = found
        context["domain_url"] = cognito.hosted_ui_url(found.domain, provider.aws_region)
    return render(request, "console/cognito_inspect.html", context)


def fix(request, provider_id):
    provider = get_cognito_provider(request, provider_id)
    try:
        if request.method == "POST":
            changes = cognito.apply_fix(provider, request=request)
            messages.success(
                request,
                f"Updated the app client: {', '.join(changes) or 'nothing needed changing'}.",
            )
            return redirect("cognito-inspect", provider.pk)
        before, after = cognito.fix_plan(provider)
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
    return render(request, "console/cognito_fix.html", {"provider": provider, "rows": rows})


@require_POST
def add_saml(request, provider_id):
    provider = get_cognito_provider(request, provider_id)
    form = SAMLProviderForm(request.POST, request.FILES)
    if not form.is_valid():
        for error in form.errors.values():
            messages.error(request, " ".join(error))
        return redirect("cognito-inspect", provider.pk)
    try:
        cognito.add_saml_provider(
            provider,
            name=form.cleaned_data["name"],
            metadata_url=form.cleaned_data.get("metadata_url") or "",
            metadata_file=form.cleaned_data.get("metadata_xml", ""),
            email_attribute=form.cleaned_data["email_attribute"],
            request=request,
        )
    except cognito.AWSError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request, f"Added {form.cleaned_data['name']} and enabled it on the client."
        )
    return redirect("cognito-inspect", provider.pk)


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
