import json

from django.core.management.base import BaseCommand, CommandError

from console import audit


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain. Exit 0 when intact; exit 1 naming the first event that does "
        "not verify (changed, removed or reordered). With --jsonl, verify an unfiltered JSON "
        "lines export instead of the database."
    )

    def add_arguments(self, parser):
        parser.add_argument("--jsonl", metavar="FILE", help="a JSON lines export of the history")

    def handle(self, *args, jsonl=None, **options):
        report = audit.verify_rows(self._read_export(jsonl)) if jsonl else audit.verify_chain()
        if not report.ok:
            self.stderr.write(str(report))
            raise SystemExit(1)
        self.stdout.write(str(report))

    def _read_export(self, path):
        try:
            with open(path, encoding="utf-8") as export:
                for number, line in enumerate(export, start=1):
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise CommandError(f"{path}:{number}: not JSON: {error}") from error
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from error
