from importlib import import_module

from django.db import migrations, models

append_only = import_module("console.migrations.0003_audit_append_only")


def restore_sqlite_triggers(apps, schema_editor):
    """SQLite adds this column by copying the table, which drops the append-only triggers
    with the old table: put them back. (PostgreSQL adds it in place.)"""
    if schema_editor.connection.vendor == "sqlite":
        for statement in append_only.SQLITE_FORWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("console", "0009_verified_rollouts"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="request_id",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(restore_sqlite_triggers, migrations.RunPython.noop),
    ]
