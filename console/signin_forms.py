"""The form of a provider's test account (console/signin_accounts.py)."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from console.signin_accounts import DEFAULT_USERNAME

USERNAME = re.compile(r"[A-Za-z0-9._@+-]{1,128}")


class SigninAccountForm(forms.Form):
    """Create the account at the identity provider, or enter an existing one."""

    CREATE, ENTER = "create", "enter"
    CREATING = (CREATE, "Create it at the identity provider (a new password, never shown)")
    ENTERING = (ENTER, "Enter an existing account (for people federated from elsewhere)")
    how = forms.ChoiceField(
        label="The account", choices=[CREATING, ENTERING], initial=CREATE,
        widget=forms.RadioSelect,
    )  # fmt: skip
    username = forms.CharField(
        max_length=128,
        initial=DEFAULT_USERNAME,
        help_text="Letters, digits and . _ @ + -",
    )
    email = forms.EmailField(
        max_length=254,
        help_text="Diffgram finds or creates its user by this address.",
    )
    password = forms.CharField(
        required=False,
        strip=False,
        max_length=256,
        widget=forms.PasswordInput(render_value=False),
        help_text="Only for an existing account. Kept encrypted, never shown again.",
    )

    def __init__(self, *args: Any, can_create: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not can_create:
            how = self.fields["how"]
            assert isinstance(how, forms.ChoiceField)
            how.choices, how.initial = [self.ENTERING], self.ENTER

    def clean_username(self) -> str:
        username = self.cleaned_data["username"].strip()
        if not USERNAME.fullmatch(username):
            raise ValidationError("Use letters, digits and . _ @ + - only.")
        return username

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("how") == self.ENTER and not cleaned.get("password"):
            self.add_error("password", "Enter the account's password.")
        return cleaned


class RotatePasswordForm(forms.Form):
    password = forms.CharField(
        required=False,
        strip=False,
        max_length=256,
        widget=forms.PasswordInput(render_value=False),
        label="New password",
        help_text="Only for an account you entered: change it at the identity provider, then "
        "type it here. One the console made gets a new random password set for it.",
    )
