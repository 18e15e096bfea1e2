from django.db import migrations, models
from django.db.models import F


def from_latest_validation(apps, schema_editor):
    """Providers whose latest validation passed last passed then (earlier passes were not kept)."""
    Provider = apps.get_model("console", "Provider")
    Provider.objects.filter(validation_passed=True).update(last_passed_at=F("validated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0010_audit_request_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="last_passed_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(from_latest_validation, migrations.RunPython.noop),
    ]
