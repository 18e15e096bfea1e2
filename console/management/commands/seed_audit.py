import time

from django.core.management.base import BaseCommand

from console import audit
from console.models import AuditEvent

ACTIONS = [
    audit.Action.PROVIDER_CHANGED, audit.Action.PROVIDER_VALIDATED, audit.Action.LOGIN_SUCCEEDED,
    audit.Action.PUSH_SUCCEEDED, audit.Action.INSTANCE_PULLED, audit.Action.INSTANCE_APPLIED,
]  # fmt: skip


class Command(BaseCommand):
    help = (
        "Append N synthetic audit events through the writer's bulk path (the chain stays valid), "
        "for benchmarks. Never run this on a console whose history matters."
    )

    def add_arguments(self, parser):
        parser.add_argument("count", type=int)
        parser.add_argument("--batch", type=int, default=5000)

    def handle(self, *args, count, batch, **options):
        started = time.monotonic()

        def entries():
            for number in range(count):
                yield {
                    "action": ACTIONS[number % len(ACTIONS)],
                    "actor": audit.Actor("user", str(number % 50), f"user-{number % 50}"),
                    "source_ip": f"10.0.{number % 250}.{number % 200 + 1}",
                    "target": ("provider", number % 40, f"Provider {number % 40}"),
                    "changes": {"client_id": [f"old-{number}", f"new-{number}"]},
                    "context": {"seeded": True},
                }

        audit.record_many(entries(), batch_size=batch)
        self.stdout.write(
            f"Appended {count} events in {time.monotonic() - started:.1f} s; "
            f"{AuditEvent.objects.count()} in all."
        )
