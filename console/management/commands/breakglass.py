import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.validators import ASCIIUsernameValidator
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from console import audit
from console.management.commands._cli import cli_actor
from console.roles import ADMIN


class Command(BaseCommand):
    help = (
        "Create or reset a local break-glass admin and print a new password once (stored "
        "hashed only). For when single sign-on is unavailable; every sign-in with it is "
        "recorded in the history."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="breakglass")

    def handle(self, *args, username, **options):
        User = get_user_model()
        try:  # plain ASCII: a break-glass name must not look like another one in the history
            ASCIIUsernameValidator()(username)
        except ValidationError as error:
            raise CommandError(f"--username {username!r}: {' '.join(error.messages)}") from None
        password = secrets.token_urlsafe(18)
        with audit.change():
            user, created = User.objects.get_or_create(username=username)
            if user.external_identities.exists():
                raise CommandError(
                    f"{username!r} is a single-sign-on account: it is never turned into a "
                    "break-glass account. Choose another --username."
                )
            user.set_password(password)
            user.is_active = True
            user.save()
            user.groups.add(Group.objects.get_or_create(name=ADMIN)[0])
            audit.record(
                audit.Action.USER_CREATED if created else audit.Action.USER_PASSWORD_RESET,
                actor=cli_actor("breakglass"),
                target=audit.user_target(user),
                changes={"password": ["[set]" if not created else "[not set]", "[changed]"]},
                context={"reason": "break-glass account created or reset"},
            )
        self.stdout.write(
            self.style.WARNING(
                f"Break-glass admin {username!r} {'created' if created else 'reset'}.\n"
                f"    password: {password}\n"
                "Shown only this once. Every sign-in with it is recorded in the history."
            )
        )
