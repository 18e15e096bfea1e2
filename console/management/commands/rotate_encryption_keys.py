from django.core.management.base import BaseCommand
from django.utils.translation import ngettext

from console import audit, encryption
from console.management.commands._cli import cli_actor
from console.models import AuditEvent, encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEYS. Put the new "
        "key first, run this, then remove the old key."
    )

    def handle(self, *args, **options):
        rotated = 0
        with audit.change():
            for model, fields in encrypted_fields():
                for row in model.objects.select_for_update().values("pk", *fields):
                    new_values = {
                        name: encryption.rotate(row[name]) for name in fields if row[name]
                    }
                    if new_values:
                        # A queryset update: re-encryption changes no content, and immutable
                        # models (configuration versions) refuse save() on purpose.
                        model.objects.filter(pk=row["pk"]).update(**new_values)
                        rotated += len(new_values)
            audit.record(
                audit.Action.ENCRYPTION_KEYS_ROTATED,
                actor=cli_actor("rotate_encryption_keys"),
                target=(AuditEvent.TargetType.KEYS, "", "field encryption keys"),
                context={"secrets_reencrypted": rotated},
            )
        self.stdout.write(
            ngettext(
                "Re-encrypted %d secret with the first key.",
                "Re-encrypted %d secrets with the first key.",
                rotated,
            )
            % rotated
        )
