"""Forms for the console's local users (the users page and `manage.py create_user`)."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.validators import ASCIIUsernameValidator

from console import users
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


def _group_names(text: str) -> list[str]:
    """Group names, one per line or separated by commas, in order, each once."""
    names = [name.strip() for line in text.splitlines() for name in line.split(",")]
    return list(dict.fromkeys(name for name in names if name))


class RoleGroupsForm(forms.Form):
    """Which identity-provider groups give the console's roles (the Users page)."""

    admin_groups = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="One per line or separated by commas, exactly as the groups claim sends them.",
    )
    auditor_groups = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Members of an admin group are admins even when also listed here.",
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_admin_groups(self) -> list[str]:
        groups = _group_names(self.cleaned_data["admin_groups"])
        # An admin who signs in through single sign-on keeps a group that makes them admin,
        # or loses the role at their next sign-in.
        own = users.sso_role_groups(self.user) if self.user is not None else []
        if own and not set(own) & set(groups):
            raise forms.ValidationError(
                f"You are an admin through {', '.join(own)}: keep "
                f"{'it' if len(own) == 1 else 'one of them'} here, or you lose the admin role "
                "at your next sign-in."
            )
        return groups

    def clean_auditor_groups(self) -> list[str]:
        return _group_names(self.cleaned_data["auditor_groups"])

    def clean(self):
        cleaned = super().clean()
        both = set(cleaned.get("admin_groups") or ()) & set(cleaned.get("auditor_groups") or ())
        if both:
            self.add_error(
                "auditor_groups",
                f"{', '.join(sorted(both))} cannot give both roles: keep it in one list.",
            )
        return cleaned
