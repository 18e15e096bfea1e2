from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from console import versions
from console.management.commands._cli import cli_actor
from console.models import Provider


class Command(BaseCommand):
    help = (
        "Publish a provider's current settings as a new version to its instances (or one rollout "
        "group first). Prints the version number; exits 1 with the failing checks when the "
        "provider's validation fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("provider", help="provider name")
        parser.add_argument("--group", default="", help="publish to this rollout group first")
        parser.add_argument("--note", default="", help="why (shown in the history)")
        parser.add_argument(
            "--auto-halt",
            action="store_true",
            help="halt after the first group by itself if it fails to apply or verify the "
            "version, or has not verified it within ROLLOUT_VERIFY_TIMEOUT_MINUTES",
        )
        parser.add_argument(
            "--auto-rollback", action="store_true",
            help="when it halts by itself, publish the previous version to the group again",
        )  # fmt: skip

    def handle(self, *args, **options):
        provider = Provider.objects.filter(name=options["provider"]).first()
        if provider is None:
            raise CommandError(f"No provider named {options['provider']!r}", returncode=2)
        try:
            version = versions.publish(
                provider, group=options["group"], note=options["note"],
                auto_halt=options["auto_halt"], auto_rollback=options["auto_rollback"],
                actor=cli_actor("publish"),
            )  # fmt: skip
        except versions.PublishRefused as refusal:
            for check in provider.validation_checks:
                if check.get("status") == "fail":
                    self.stderr.write(f"FAIL  {check['id']:<20} {check['message']}")
            raise CommandError(f"Not published: {refusal}", returncode=1) from None
        except DatabaseError as error:  # nothing was half made: the transaction rolled back
            said = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            raise CommandError(
                f"Not published: the database refused the change ({said}). Nothing was "
                "published; try again once it accepts writes.",
                returncode=1,
            ) from None
        self.stdout.write(str(version.number))
