"""Forms for the console's local users (the users page and `manage.py create_user`)."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import ASCIIUsernameValidator

from console.roles import ADMIN, AUDITOR

ROLE_CHOICES = [
    (AUDITOR, "auditor: read-only, may read and export history"),
    (ADMIN, "admin: may change configuration"),
]


class LocalUserForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        # Plain ASCII: a local name must not look like another one in the history.
        validators=[ASCIIUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
    )
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial=AUDITOR)
    email = forms.EmailField(required=False)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(f"A user named {username} exists already.")
        return username


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES)
