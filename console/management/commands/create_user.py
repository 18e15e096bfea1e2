from django.core.management.base import BaseCommand, CommandError

from console import users
from console.management.commands._cli import cli_actor
from console.roles import ROLES
from console.user_forms import LocalUserForm


class Command(BaseCommand):
    help = (
        "Create a local console user with a role and print a one-time password once (stored "
        "hashed only); the user chooses their own password at the first sign-in."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, email, **options):
        form = LocalUserForm({"username": username, "role": role, "email": email})
        if not form.is_valid():
            problems = "; ".join(
                f"{name}: {' '.join(errors)}" for name, errors in form.errors.items()
            )
            raise CommandError(problems)
        user, password = users.create_local_user(
            form.cleaned_data["username"],
            form.cleaned_data["role"],
            form.cleaned_data["email"],
            actor=cli_actor("create_user"),
        )
        self.stdout.write(
            self.style.WARNING(
                f"Created {user.username} ({role}).\n"
                f"    password: {password}\n"
                f"A one-time password, shown only now: it signs in once within "
                f"{users.ONE_TIME_PASSWORD_VALID_FOR.days} days, then {user.username} chooses "
                "their own."
            )
        )
