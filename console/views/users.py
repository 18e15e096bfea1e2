"""Users and roles: who can use the console, with which role and where it comes from. Admins
create local users, reset their passwords, change their roles, disable and enable anyone, and
revoke anyone's API tokens; auditors read the page."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from console import api_tokens, roles, users
from console.forms import SearchForm
from console.roles import MUST_CHOOSE_PASSWORD, own_account_view
from console.user_forms import LocalUserForm, RoleForm, RoleGroupsForm


def _page(request, form=None, handed_over=None, status=200, role_groups_form=None):
    search = SearchForm(
        request.GET,
        fields=("username", "email", "groups__name", "external_identities__issuer",
                "external_identities__subject"),
        help_text="Name, email, role, or the issuer or subject of a single sign-on identity.",
    )  # fmt: skip
    mapping = roles.group_mapping()
    response = render(
        request,
        "console/users.html",
        {
            "rows": users.user_rows(search),
            "search": search,
            "form": form or LocalUserForm(),
            "role_form": RoleForm(),
            "mapping": mapping,
            "groups_claim": settings.CONSOLE_OIDC_GROUPS_CLAIM,
            "role_groups_form": role_groups_form
            or RoleGroupsForm(
                initial={
                    "admin_groups": "\n".join(mapping.admin),
                    "auditor_groups": "\n".join(mapping.auditor),
                }
            ),
            "handed_over": handed_over,
            "valid_days": users.ONE_TIME_PASSWORD_VALID_FOR.days,
        },
        status=status,
    )
    add_never_cache_headers(response)  # a one-time password may be on it
    return response


def user_list(request):
    if request.method != "POST":
        return _page(request)
    form = LocalUserForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    user, password = users.create_local_user(
        form.cleaned_data["username"],
        form.cleaned_data["role"],
        form.cleaned_data["email"],
        request=request,
    )
    return _page(request, handed_over={"user": user, "password": password, "created": True})


@require_POST
def role_groups(request):
    form = RoleGroupsForm(request.POST, user=request.user)
    if not form.is_valid():
        return _page(request, role_groups_form=form, status=400)
    users.set_role_groups(
        form.cleaned_data["admin_groups"], form.cleaned_data["auditor_groups"], request=request
    )
    messages.success(
        request,
        "Saved which groups give the roles; each single-sign-on user gets theirs at their next "
        "sign-in.",
    )
    return redirect(reverse("users") + "#role-groups")


def _user(user_id):
    return get_object_or_404(get_user_model(), pk=user_id)


def _refused(request, refusal):
    messages.error(request, str(refusal))
    return redirect("users")


@require_POST
def user_reset_password(request, user_id):
    user = _user(user_id)
    try:
        password = users.reset_password(user, request=request)
    except users.UserChangeRefused as refusal:
        return _refused(request, refusal)
    return _page(request, handed_over={"user": user, "password": password, "created": False})


@require_POST
def user_set_role(request, user_id):
    user = _user(user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose admin or auditor.")
        return redirect("users")
    try:
        users.set_role(user, form.cleaned_data["role"], request=request)
    except users.UserChangeRefused as refusal:
        return _refused(request, refusal)
    messages.success(request, f"{user.get_username()} is now {form.cleaned_data['role']}.")
    return redirect("users")


@require_POST
def user_set_active(request, user_id):
    user = _user(user_id)
    active = request.POST.get("active") == "1"
    try:
        users.set_active(user, active, request=request)
    except users.UserChangeRefused as refusal:
        return _refused(request, refusal)
    state = "enabled" if active else "disabled: they can no longer sign in or use API tokens"
    messages.success(request, f"{user.get_username()} is {state}.")
    return redirect("users")


@require_POST
def user_revoke_tokens(request, user_id):
    user = _user(user_id)
    count = api_tokens.revoke_all(user, request=request)
    text = ngettext(
        "Revoked %(count)d API token of %(user)s.",
        "Revoked %(count)d API tokens of %(user)s.",
        count,
    )
    messages.success(request, text % {"count": count, "user": user.get_username()})
    return redirect("users")


@own_account_view
@never_cache
def choose_password(request):
    """Choose your own password: right after signing in with a one-time password (the session
    goes nowhere else until then), or any time for a local account."""
    if users.is_sso_user(request.user):
        raise Http404("Single-sign-on accounts have no console password.")
    one_time = request.session.get(MUST_CHOOSE_PASSWORD, False)
    form_class = SetPasswordForm if one_time else PasswordChangeForm
    form = form_class(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        users.choose_password(request.user, form.cleaned_data["new_password1"], request=request)
        update_session_auth_hash(request, request.user)  # stay signed in
        request.session.pop(MUST_CHOOSE_PASSWORD, None)
        messages.success(request, "Your password is set.")
        return redirect("home")
    return render(request, "console/choose_password.html", {"form": form, "one_time": one_time})
