import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from console.models import OneTimePassword
from console.roles import ADMIN, role_of

pytestmark = pytest.mark.django_db


def printed_password(output):
    for line in output.splitlines():
        if line.strip().startswith("password:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no password printed in:\n{output}")


def test_it_creates_the_bootstrap_admin_once_on_an_empty_database(capsys):
    call_command("bootstrap_admin")
    first = capsys.readouterr().out
    password = printed_password(first)

    user = get_user_model().objects.get(username="admin")
    assert role_of(user) == ADMIN
    assert user.password.startswith("pbkdf2_sha256$")  # hashed only
    assert password not in user.password
    assert authenticate(username="admin", password=password) == user
    assert OneTimePassword.objects.filter(user=user).exists()  # chosen anew at first sign-in

    call_command("bootstrap_admin")
    second = capsys.readouterr().out
    assert "password:" not in second
    assert "no bootstrap admin created" in second
    assert get_user_model().objects.count() == 1
    assert authenticate(username="admin", password=password) == user  # password unchanged


def test_it_does_not_create_an_admin_when_users_exist(capsys, auditor_user):
    call_command("bootstrap_admin")
    assert "password:" not in capsys.readouterr().out
    assert not get_user_model().objects.filter(username="admin").exists()
