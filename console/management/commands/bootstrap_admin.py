from django.core.management.base import BaseCommand

from console import users


class Command(BaseCommand):
    help = (
        f"On a database with no users, create the local admin '{users.BOOTSTRAP_USERNAME}' and "
        "print its one-time password (stored hashed only; the admin chooses their own at the "
        "first sign-in). Does nothing when any user exists."
    )

    def handle(self, *args, **options):
        password = users.create_bootstrap_admin()
        if password is None:
            self.stdout.write("Users exist already: no bootstrap admin created.")
            return
        self.stdout.write(self.style.WARNING(first_admin_banner(password)))


def first_admin_banner(password, url=""):
    """The lines that hand over the bootstrap admin's one-time password."""
    where = f"Open {url} and sign" if url else "Sign"
    valid_days = users.ONE_TIME_PASSWORD_VALID_FOR.days
    return (
        "\n"
        "*************************************************************\n"
        f"A local admin was created. {where} in with:\n\n"
        f"    username: {users.BOOTSTRAP_USERNAME}\n"
        f"    password: {password}\n\n"
        f"This one-time password is shown only now and works for {valid_days} days;\n"
        "you choose your own password at the first sign-in.\n"
        "*************************************************************\n"
    )
