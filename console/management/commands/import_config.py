from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from console import config_io
from console.management.commands._cli import cli_actor


class Command(BaseCommand):
    help = (
        "Create or update providers and instances (by name) from an export_config YAML file. "
        "Secrets come from the environment ({env: NAME}). Prints the plan, then applies it in "
        "one transaction and validates the providers; --dry-run only prints the plan. An "
        "invalid file changes nothing (exit 1, naming the line and field)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, file, dry_run=False, **options):
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror}", returncode=2) from None
        try:
            changes = config_io.plan(text)
        except config_io.ConfigImportError as error:
            raise CommandError(
                f"{file} was not imported; nothing changed:\n  " + "\n  ".join(error.problems)
            ) from None
        for line in config_io.describe_plan(changes):
            self.stdout.write(line)
        if dry_run:
            self.stdout.write("Dry run: nothing changed.")
            return
        actor = cli_actor("import_config")
        tokens = config_io.apply(changes, actor=actor)
        for name, report in config_io.validate_imported(changes, actor=actor).items():
            outcome = "passed" if report.ok else "FAILED"
            self.stdout.write(f"validation of {name}: {outcome}")
        for name, token in tokens.items():
            self.stdout.write(f"token for new instance {name} (shown once): {token}")
        self.stdout.write("Imported.")
