from pathlib import Path

from django.core.management.base import BaseCommand

from console import config_io


class Command(BaseCommand):
    help = (
        "Write every provider and instance as one YAML document (not versions or history). "
        "Secrets are never written, only references such as {env: NAME}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", metavar="FILE", help="write here instead of stdout")

    def handle(self, *args, output=None, **options):
        text = config_io.export_yaml()
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"Wrote {output}")
        else:
            self.stdout.write(text, ending="")
