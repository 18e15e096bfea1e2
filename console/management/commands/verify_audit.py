import json

from django.core.management.base import BaseCommand, CommandError

from console import audit, audit_anchor


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain and, when checkpoints are configured, compare it with the "
        "newest signed checkpoints (truncation or rewriting shows there even when the chain "
        "itself was recomputed). Exit 0 when intact; exit 1 naming the first event that does "
        "not verify. --since-checkpoint verifies only the events after the newest good "
        "checkpoint. With --jsonl, verify an unfiltered JSON lines export instead."
    )
    # The system checks import every view and the API to check the URLs, the larger part of
    # this command's start-up (docs/BENCHMARKS.md, P3); verifying the history needs none of them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--jsonl", metavar="FILE", help="a JSON lines export of the history")
        parser.add_argument(
            "--since-checkpoint", action="store_true",
            help="only the events after the newest checkpoint that matches the database",
        )  # fmt: skip

    def handle(self, *args, jsonl=None, since_checkpoint=False, **options):
        if jsonl:
            return self._finish(audit.verify_rows(self._read_export(jsonl)))
        anchors = None
        if audit_anchor.configured_sinks():
            try:
                anchors = audit_anchor.verify_against_checkpoints()
            except audit_anchor.CheckpointError as error:
                raise CommandError(str(error)) from None
            if not anchors.ok:
                self.stderr.write(str(anchors))
                raise SystemExit(1)
        elif since_checkpoint:
            raise CommandError("--since-checkpoint needs AUDIT_CHECKPOINT_FILE or _S3.")
        since = anchors.newest_good if anchors and since_checkpoint else None
        report = audit.verify_chain(since=since)
        self._finish(report, anchors, since)

    def _finish(self, report, anchors=None, since=None):
        if not report.ok:
            self.stderr.write(str(report))
            raise SystemExit(1)
        if since is not None:
            self.stdout.write(
                f"Audit chain intact after checkpoint #{since.event_id}: {report.checked} "
                "newer events verified."
            )
        else:
            self.stdout.write(str(report))
        if anchors is not None:
            self.stdout.write(str(anchors))

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
