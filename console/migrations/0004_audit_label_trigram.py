"""History's "target name contains" filter is a case-insensitive substring search; on
PostgreSQL a trigram index keeps it fast at millions of events (SQLite scans, which is fine at
the sizes SQLite is meant for)."""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS audit_label_trgm ON console_auditevent "
    "USING gin (UPPER(target_label::text) gin_trgm_ops)",
]
BACKWARD = ["DROP INDEX IF EXISTS audit_label_trgm"]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("console", "0003_audit_append_only")]

    operations = [migrations.RunPython(forward, backward)]
