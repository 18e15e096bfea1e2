"""The usernames single sign-on gives (console/sso_names.py): never a local account's, never two
that look alike in the history."""

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console import sso_names
from console.models import (
    ExternalIdentity,
)
from tests.support import (
    set_claims,
    sso_login,
)  # fmt: skip

pytestmark = pytest.mark.django_db


class TestNames:
    def test_an_sso_user_named_breakglass_cannot_take_over_the_break_glass_account(
        self, client, sso, mock_op
    ):
        set_claims(mock_op, "alice-sub", preferred_username="breakglass")
        sso_login(client, "alice-sub")
        sso_user = ExternalIdentity.objects.get(subject="alice-sub").user
        assert sso_user.username == "breakglass~127.0.0.1"
        out = StringIO()
        call_command("breakglass", stdout=out)  # creates its own, separate account
        local = get_user_model().objects.get(username="breakglass")
        assert local != sso_user and not local.external_identities.exists()
        with pytest.raises(CommandError, match="Enter a valid username"):  # "~" is SSO's
            call_command("breakglass", "--username", sso_user.username, stdout=StringIO())
        # An SSO account with a plain name (made before SSO names had their "~") is not adopted.
        legacy = get_user_model().objects.create_user("legacy")
        legacy.external_identities.create(issuer=mock_op, subject="legacy-sub")
        with pytest.raises(CommandError, match="is a single-sign-on account"):
            call_command("breakglass", "--username", "legacy", stdout=StringIO())

    @pytest.mark.parametrize(
        ("preferred", "expected"),
        [
            ("redadmin ", "redadmin@example.test~127.0.0.1"),  # trailing space: not fit
            ("red\u200badmin", "redadmin@example.test~127.0.0.1"),  # zero-width space
            ("ｒｅｄadmin", "redadmin~127.0.0.1"),  # full-width letters: NFKC
        ],
    )
    def test_look_alike_names_are_normalised_or_not_used(
        self, client, sso, mock_op, preferred, expected
    ):
        set_claims(
            mock_op, "alice-sub", preferred_username=preferred, email="redadmin@example.test"
        )
        sso_login(client, "alice-sub")
        assert ExternalIdentity.objects.get(subject="alice-sub").user.username == expected

    def test_the_history_shows_which_idp_vouches_for_an_sso_actor(self, client, sso, mock_op):
        sso_login(client, "alice-sub")
        page = client.get(reverse("history")).content.decode()
        assert f"alice-sub at {mock_op}" in page

    def test_a_break_glass_name_must_be_plain(self):
        with pytest.raises(CommandError, match="--username"):
            call_command("breakglass", "--username", "rеdadmin", stdout=StringIO())  # Cyrillic е


def test_a_name_mixing_scripts_is_not_taken_as_a_username():
    """A Cyrillic "е" in a Latin name survives NFKC and looks like the Latin one in the
    history: such a name is passed over for the next candidate (the email)."""
    issuer = "https://login.example.test"
    assert sso_names.sso_username(issuer, "alic\u0435", "alice@example.test") == (
        "alice@example.test~login.example.test"
    )
    assert sso_names.sso_username(issuer, "alice", "x") == "alice~login.example.test"
    assert sso_names.clean_name("Zoë-Łukasz") == "Zoë-Łukasz"  # one script, with its accents
