from django.core.management.base import BaseCommand, CommandError

from console import audit_anchor


class Command(BaseCommand):
    help = (
        "Sign the audit chain's present end (newest event id and hash, number of events) with "
        "AUDIT_SIGNING_KEY and append it to AUDIT_CHECKPOINT_FILE and/or AUDIT_CHECKPOINT_S3. "
        "Celery beat does this every AUDIT_CHECKPOINT_MINUTES."
    )

    def handle(self, *args, **options):
        try:
            checkpoint = audit_anchor.write_checkpoint()
        except audit_anchor.CheckpointError as error:
            raise CommandError(str(error)) from None
        sinks = ", ".join(str(sink) for sink in audit_anchor.configured_sinks())
        self.stdout.write(
            f"Checkpoint: event #{checkpoint.event_id} ({checkpoint.count} events), "
            f"written to {sinks}."
        )
