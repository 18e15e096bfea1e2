import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from console import audit
from console.roles import ADMIN

BOOTSTRAP_USERNAME = "admin"


class Command(BaseCommand):
    help = (
        "On a database with no users, create the local admin 'admin' and print its password "
        "once (it is stored hashed only). Does nothing when any user exists."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        with transaction.atomic():
            if User.objects.exists():
                self.stdout.write("Users exist already: no bootstrap admin created.")
                return
            password = secrets.token_urlsafe(18)
            user = User.objects.create_user(username=BOOTSTRAP_USERNAME, password=password)
            user.groups.add(Group.objects.get_or_create(name=ADMIN)[0])
            audit.record(
                audit.Action.USER_CREATED,
                target=audit.user_target(user),
                changes={"groups": [[], [ADMIN]]},
                context={"reason": "bootstrap admin on an empty database"},
            )
        self.stdout.write(
            self.style.WARNING(
                "\n"
                "*************************************************************\n"
                "A local admin was created. Sign in with:\n\n"
                f"    username: {BOOTSTRAP_USERNAME}\n"
                f"    password: {password}\n\n"
                "This password is shown only this once and stored hashed.\n"
                "*************************************************************\n"
            )
        )
