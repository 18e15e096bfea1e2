"""The signed-in user's own things: personal API tokens for automation (and, for admins,
everyone's tokens, to revoke)."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from console import api_tokens as token_service
from console.models import ApiToken
from console.roles import ADMIN, own_account_view


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. terraform-ci.")
    expires_in_days = forms.TypedChoiceField(
        coerce=int,
        choices=[(30, "30 days"), (90, "90 days"), (365, "1 year")],
        initial=90,
        label="Expires in",
    )


@own_account_view
def api_tokens(request):
    form = ApiTokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        _, new_token = token_service.create(
            request.user,
            form.cleaned_data["name"],
            form.cleaned_data["expires_in_days"],
            request=request,
        )
        form = ApiTokenForm()
    others = None
    if request.role == ADMIN:  # admins see, and may revoke, everyone's active tokens
        others = [
            token
            for token in ApiToken.objects.select_related("user")
            .exclude(user=request.user)
            .filter(revoked_at=None)
            if token.active
        ]
    response = render(
        request,
        "console/api_tokens.html",
        {
            "form": form,
            "tokens": request.user.api_tokens.all(),
            "new_token": new_token,
            "others": others,
            "recheck_hours": settings.API_TOKEN_SSO_RECHECK_HOURS,
        },
    )
    response["Cache-Control"] = "no-store"
    return response


@own_account_view
@require_POST
def api_token_revoke(request, token_id):
    """Revoke one of your own tokens; admins may revoke anyone's."""
    tokens = ApiToken.objects.select_related("user").filter(revoked_at=None)
    if request.role != ADMIN:
        tokens = tokens.filter(user=request.user)
    token = get_object_or_404(tokens, pk=token_id)
    token_service.revoke(token, request=request)
    owner = "" if token.user == request.user else f" of {token.user.username}"
    messages.success(request, f"Revoked the token {token.name}{owner}.")
    return redirect("api-tokens")
