"""Users and roles: the users page, local users with one-time passwords, disabling, revoking
tokens, `manage.py create_user`, and the "no access" page that says whom to ask."""

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.models import AuditEvent, ExternalIdentity, OneTimePassword
from console.roles import role_of
from tests.support import PASSWORD, make_user, sso_login, token_for

pytestmark = pytest.mark.django_db

User = get_user_model()


def handed_over_password(response):
    match = re.search(r'id="one-time-password">([^<]+)<', response.content.decode())
    assert match, "no one-time password on the page"
    return match.group(1)


def sign_in(username, password):
    client = Client()
    response = client.post(reverse("login"), {"username": username, "password": password})
    return client, response


def row_of(response, username):
    page = response.content.decode()
    start = page.index(f'data-username="{username}"')
    return page[start : page.index("</tr>", start)]


# --- the page -----------------------------------------------------------------------------------


def test_the_page_lists_every_user_with_source_role_and_where_the_role_comes_from(
    admin_client, admin_user, auditor_user, client, sso
):
    sso_client = Client()
    sso_login(sso_client, "oscar-sub")  # an SSO auditor, by the IdP group sso-auditors
    token_for(auditor_user)
    response = admin_client.get(reverse("users"))
    assert response.status_code == 200

    sso_row = row_of(response, "oscar@example.test~127.0.0.1")
    assert "single sign-on: 127.0.0.1" in sso_row
    assert "auditor" in sso_row and "IdP group sso-auditors" in sso_row
    assert "Set role" not in sso_row and "Reset password" not in sso_row  # the IdP decides

    local_row = row_of(response, auditor_user.username)
    assert ">local<" in local_row and "set locally" in local_row
    assert "1 active" in local_row and "Revoke API tokens" in local_row
    assert "never" in local_row  # not signed in yet


def test_auditors_read_the_page_without_any_form_and_cannot_post(auditor_client, admin_user):
    response = auditor_client.get(reverse("users"))
    assert response.status_code == 200
    page = response.content.decode()
    assert admin_user.username in page
    main = page.split("<main", 1)[1].replace('action="/logout/"', "")
    # Only the search box, which changes nothing.
    assert re.findall(r"<form[^>]*>", main) == [
        '<form method="get" class="filters" aria-label="Search users">'
    ]
    refused = auditor_client.post(reverse("users"), {"username": "mallory", "role": "admin"})
    assert refused.status_code == 403
    assert not User.objects.filter(username="mallory").exists()


# --- local users and one-time passwords ---------------------------------------------------------


def test_an_admin_creates_an_auditor_who_signs_in_once_and_chooses_a_password(admin_client):
    response = admin_client.post(
        reverse("users"), {"username": "ext-auditor", "role": "auditor", "email": "a@corp.test"}
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    one_time = handed_over_password(response)
    user = User.objects.get(username="ext-auditor")
    assert role_of(user) == "auditor" and user.email == "a@corp.test"

    created = AuditEvent.objects.get(action="user.created", target_id=str(user.pk))
    assert created.changes == {"role": [None, "auditor"], "password": ["[not set]", "[set]"]}
    assert one_time not in str(created.changes) + str(created.context)
    assert admin_client.get(reverse("users")).content.decode().count(one_time) == 0  # once

    colleague, signed_in = sign_in("ext-auditor", one_time)
    assert signed_in["Location"] == reverse("choose-password")
    assert colleague.get(reverse("providers"))["Location"] == reverse("choose-password")
    weak = colleague.post(
        reverse("choose-password"), {"new_password1": "short", "new_password2": "short"}
    )
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    chosen = colleague.post(
        reverse("choose-password"), {"new_password1": PASSWORD, "new_password2": PASSWORD}
    )
    assert chosen["Location"] == reverse("home")
    assert colleague.get(reverse("providers")).status_code == 200  # still signed in
    assert not OneTimePassword.objects.filter(user=user).exists()
    assert AuditEvent.objects.filter(action="user.password_changed", actor_label="ext-auditor")

    _, again = sign_in("ext-auditor", one_time)
    assert again.status_code == 200 and "Please enter a correct username" in again.content.decode()
    _, own = sign_in("ext-auditor", PASSWORD)
    assert own["Location"] == reverse("providers")


def test_an_expired_one_time_password_is_refused_with_what_to_do(admin_client):
    one_time = handed_over_password(
        admin_client.post(reverse("users"), {"username": "late", "role": "auditor"})
    )
    OneTimePassword.objects.filter(user__username="late").update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    client, response = sign_in("late", one_time)
    assert response.status_code == 200
    assert "one-time password has expired: ask a console admin" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_bad_input_shows_field_errors_and_creates_nothing(admin_client, auditor_user):
    for data, field, message in [
        ({"username": auditor_user.username.upper(), "role": "auditor"}, "username", "exists"),
        ({"username": "zoë", "role": "auditor"}, "username", "Enter a valid username"),
        ({"username": "new", "role": "owner"}, "role", "Select a valid choice"),
        ({"username": "new", "role": "auditor", "email": "nope"}, "email", "valid email"),
    ]:
        response = admin_client.post(reverse("users"), data)
        assert response.status_code == 400
        assert message in " ".join(response.context["form"].errors[field])
    assert User.objects.count() == 2  # the admin and the auditor
    assert not AuditEvent.objects.filter(action="user.created").exists()


def test_resetting_a_password_stops_the_old_one_at_once(admin_client, auditor_user):
    response = admin_client.post(reverse("user-reset-password", args=[auditor_user.pk]))
    one_time = handed_over_password(response)
    assert "password was reset" in response.content.decode()
    _, old = sign_in(auditor_user.username, PASSWORD)
    assert old.status_code == 200  # the form again: wrong password
    _, new = sign_in(auditor_user.username, one_time)
    assert new["Location"] == reverse("choose-password")
    event = AuditEvent.objects.get(action="user.password_reset")
    assert event.changes == {"password": ["[set]", "[changed]"]}


def test_a_local_role_changes_and_an_sso_role_stays_with_the_idp(admin_client, auditor_user, sso):
    response = admin_client.post(
        reverse("user-set-role", args=[auditor_user.pk]), {"role": "admin"}
    )
    assert response.status_code == 302 and role_of(auditor_user) == "admin"
    event = AuditEvent.objects.get(action="user.role_changed", target_id=str(auditor_user.pk))
    assert event.changes == {"role": ["auditor", "admin"]}

    sso_login(Client(), "oscar-sub")
    sso_user = ExternalIdentity.objects.get(subject="oscar-sub").user
    refused = admin_client.post(
        reverse("user-set-role", args=[sso_user.pk]), {"role": "admin"}, follow=True
    )
    assert "comes from their identity provider groups" in refused.content.decode()
    assert role_of(sso_user) == "auditor"
    reset = admin_client.post(reverse("user-reset-password", args=[sso_user.pk]), follow=True)
    assert "reset it at the identity provider" in reset.content.decode()


def test_admins_cannot_lock_the_console_out(admin_client, admin_user):
    for url, data in [
        (reverse("user-set-active", args=[admin_user.pk]), {"active": "0"}),
        (reverse("user-set-role", args=[admin_user.pk]), {"role": "auditor"}),
    ]:
        response = admin_client.post(url, data, follow=True)
        assert "You cannot" in response.content.decode()
    admin_user.refresh_from_db()
    assert admin_user.is_active and role_of(admin_user) == "admin"


def test_the_last_admin_cannot_be_disabled_by_the_command_line(admin_user):
    from console import users

    with pytest.raises(users.UserChangeRefused, match="only admin"):
        users.set_active(admin_user, False)


# --- disabling and tokens -----------------------------------------------------------------------


def test_a_disabled_local_user_loses_the_session_the_sign_in_and_the_api(
    admin_client, auditor_user
):
    session = Client()
    session.force_login(auditor_user)
    token = token_for(auditor_user)
    response = admin_client.post(
        reverse("user-set-active", args=[auditor_user.pk]), {"active": "0"}, follow=True
    )
    assert "is disabled" in response.content.decode()
    assert session.get(reverse("providers")).status_code == 302  # signed out
    _, signed_in = sign_in(auditor_user.username, PASSWORD)
    assert signed_in.status_code == 200  # refused: the form again
    api = Client().get(reverse("api-v1:providers"), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api.status_code == 401
    assert AuditEvent.objects.filter(action="user.disabled", target_id=str(auditor_user.pk))

    admin_client.post(reverse("user-set-active", args=[auditor_user.pk]), {"active": "1"})
    _, back = sign_in(auditor_user.username, PASSWORD)
    assert back.status_code == 302


def test_a_disabled_sso_user_is_refused_at_the_next_sign_in(admin_client, sso):
    sso_client = Client()
    sso_login(sso_client, "oscar-sub")
    user = ExternalIdentity.objects.get(subject="oscar-sub").user
    admin_client.post(reverse("user-set-active", args=[user.pk]), {"active": "0"})
    assert sso_client.get(reverse("providers")).status_code == 302  # the session ended
    response, _ = sso_login(Client(), "oscar-sub")
    assert response.status_code == 302 and response["Location"] == reverse("login")
    user.refresh_from_db()
    assert not user.is_active  # signing in again does not enable the account
    failed = AuditEvent.objects.filter(action="login.failed").first()
    assert "disabled by a console admin" in failed.context["reason"]


def test_revoking_a_users_tokens_stops_them(admin_client, auditor_user):
    tokens = [token_for(auditor_user), token_for(auditor_user)]
    response = admin_client.post(reverse("user-revoke-tokens", args=[auditor_user.pk]), follow=True)
    assert f"Revoked 2 API tokens of {auditor_user.username}." in response.content.decode()
    for token in tokens:
        api = Client().get(reverse("api-v1:providers"), HTTP_AUTHORIZATION=f"Bearer {token}")
        assert api.status_code == 401
    assert AuditEvent.objects.filter(action="api_token.revoked").count() == 2


# --- command line -------------------------------------------------------------------------------


def test_create_user_prints_the_one_time_password_once():
    out = StringIO()
    call_command(
        "create_user", "ext-auditor", "--role", "auditor", "--email", "x@corp.test", stdout=out
    )
    (password,) = re.findall(r"password: (\S+)", out.getvalue())
    user = User.objects.get(username="ext-auditor")
    assert role_of(user) == "auditor" and user.check_password(password)
    assert OneTimePassword.objects.filter(user=user).exists()
    event = AuditEvent.objects.get(action="user.created")
    assert event.actor_label.startswith("manage.py create_user")
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_user", "ext-auditor", "--role", "admin")


# --- no access ----------------------------------------------------------------------------------


def test_no_access_says_what_to_ask_for_and_whom(client, django_user_model, admin_user, settings):
    settings.CONSOLE_ADMIN_GROUPS = ["console-admins"]
    settings.CONSOLE_AUDITOR_GROUPS = ["console-auditors"]
    admin_user.first_name, admin_user.last_name = "Alice", "Admin"
    admin_user.save()
    make_user(django_user_model, "second-admin", "admin")
    client.force_login(make_user(django_user_model, "nobody"))
    page = client.get(reverse("providers")).content.decode()
    assert "give you the <strong>auditor</strong> role" in page
    assert "Console admins: Alice Admin, second-admin." in page


def test_refused_sso_users_are_told_which_idp_groups_to_ask_for(client, sso):
    response, _ = sso_login(client, "nora-sub")
    page = response.content.decode()
    assert response.status_code == 403
    assert "<code>sso-admins</code>: admin" in page and "<code>sso-auditors</code>: auditor" in page
    assert "<code>groups</code> claim" in page


def test_the_page_searches_users_by_name_email_role_and_identity(admin_client, auditor_user, sso):
    make_user(get_user_model(), "dana", "admin")
    get_user_model().objects.filter(username="dana").update(email="dana@corp.test")
    sso_login(Client(), "oscar-sub")  # an SSO auditor, whose identity is at 127.0.0.1

    def found(term):
        page = admin_client.get(reverse("users"), {"q": term}).content.decode()
        return sorted(re.findall(r'data-username="([^"]+)"', page)), page

    assert found("DANA")[0] == ["dana"]
    assert found("corp.test")[0] == ["dana"]
    assert found("auditor")[0] == sorted([auditor_user.username, "oscar@example.test~127.0.0.1"])
    assert found("oscar-sub")[0] == ["oscar@example.test~127.0.0.1"]  # the identity's subject
    names, page = found("nobody-like-this")
    assert names == [] and "No users match “nobody-like-this”" in page


# --- which identity-provider groups give the roles ---------------------------------------------


def test_role_groups_set_on_the_page_replace_the_bootstrap_defaults_and_are_audited(
    admin_client, sso, settings
):
    page = admin_client.get(reverse("users")).content.decode()
    assert "These are the bootstrap defaults from <code>CONSOLE_ADMIN_GROUPS</code>" in page
    response = admin_client.post(
        reverse("role-groups"),
        {"admin_groups": "sso-admins", "auditor_groups": "sso-auditors,  engineering\n\n"},
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="roles.groups_changed")
    assert event.changes == {"auditor_groups": [["sso-auditors"], ["sso-auditors", "engineering"]]}
    assert event.context == {"before": "environment"}
    assert event.actor_label == "alice-admin"

    # nora (engineering) is now an auditor at her next sign-in; the variables are not read.
    settings.CONSOLE_AUDITOR_GROUPS = []
    response, _ = sso_login(Client(), "nora-sub")
    assert response.status_code == 302
    assert role_of(ExternalIdentity.objects.get(subject="nora-sub").user) == "auditor"
    page = admin_client.get(reverse("users")).content.decode()
    assert "Set here by alice-admin" in page
    assert "are no longer read" in page


def test_bad_role_groups_show_field_errors_and_change_nothing(admin_client, sso):
    response = admin_client.post(
        reverse("role-groups"), {"admin_groups": "sso-admins", "auditor_groups": "sso-admins"}
    )
    assert response.status_code == 400
    assert "sso-admins cannot give both roles" in response.content.decode()
    assert not AuditEvent.objects.filter(action="roles.groups_changed").exists()


def test_an_sso_admin_cannot_take_away_the_group_that_makes_them_admin(sso):
    client = Client()
    sso_login(client, "alice-sub")  # admin through sso-admins
    response = client.post(
        reverse("role-groups"), {"admin_groups": "someone-else", "auditor_groups": ""}
    )
    assert response.status_code == 400
    assert "You are an admin through sso-admins: keep it here" in response.content.decode()
    response = client.post(
        reverse("role-groups"), {"admin_groups": "someone-else, sso-admins", "auditor_groups": ""}
    )
    assert response.status_code == 302


def test_auditors_read_the_role_groups_and_cannot_change_them(auditor_client, sso):
    page = auditor_client.get(reverse("users")).content.decode()
    assert "<dt>admin</dt><dd><code>sso-admins</code>" in page
    assert "Save role groups" not in page
    refused = auditor_client.post(reverse("role-groups"), {"admin_groups": "x"})
    assert refused.status_code == 403
    assert not AuditEvent.objects.filter(action="roles.groups_changed").exists()
