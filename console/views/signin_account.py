"""A provider's test account for synthetic sign-ins: create, enter, rotate, remove."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from console import signin_accounts
from console.signin_forms import RotatePasswordForm, SigninAccountForm
from console.views.providers import get_provider


@sensitive_post_parameters("password")
def signin_account(request, provider_id):
    """The account's page: what it is, and the form to set it up (or replace it)."""
    provider = get_provider(request, provider_id)
    account = signin_accounts.account_of(provider.pk)
    can_create = signin_accounts.can_create(provider)
    form = SigninAccountForm(
        request.POST or None, can_create=can_create,
        initial={"email": account.email if account else ""},
    )  # fmt: skip
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if data["how"] == SigninAccountForm.CREATE:
                signin_accounts.create_at_provider(
                    provider, username=data["username"], email=data["email"], request=request
                )
            else:
                signin_accounts.enter(
                    provider, username=data["username"], email=data["email"],
                    password=data["password"], request=request,
                )  # fmt: skip
        except signin_accounts.AccountError as error:
            form.add_error(None, str(error))
        else:
            messages.success(
                request,
                f"{provider} has the test account {data['username']}: synthetic sign-ins use it "
                "from now on.",
            )
            return redirect("provider-detail", provider.pk)
    return render(
        request,
        "console/signin_account.html",
        {
            "provider": provider, "account": account, "form": form,
            "rotate_form": RotatePasswordForm(), "can_create": can_create,
        },
    )  # fmt: skip


@require_POST
@sensitive_post_parameters("password")
def signin_account_rotate(request, provider_id):
    provider = get_provider(request, provider_id)
    form = RotatePasswordForm(request.POST)
    form.is_valid()
    try:
        account = signin_accounts.rotate(
            provider, password=form.cleaned_data.get("password", ""), request=request
        )
    except signin_accounts.AccountError as error:
        messages.error(request, str(error))
        return redirect("provider-signin-account", provider.pk)
    messages.success(request, f"The password of {account.username} changed.")
    return redirect("provider-detail", provider.pk)


@require_POST
def signin_account_remove(request, provider_id):
    provider = get_provider(request, provider_id)
    try:
        signin_accounts.remove(provider, request=request)
    except signin_accounts.AccountError as error:
        messages.error(request, str(error))
        return redirect("provider-signin-account", provider.pk)
    messages.success(
        request, f"{provider} has no test account any more: instances are probed, not signed in to."
    )
    return redirect("provider-detail", provider.pk)
