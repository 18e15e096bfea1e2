"""Make the audit table append-only in the database too, and create the chain head row."""

from django.db import migrations

TABLE = "console_auditevent"

POSTGRESQL_FORWARD = f"""
CREATE OR REPLACE FUNCTION console_audit_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused on {TABLE}', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER console_audit_no_update BEFORE UPDATE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION console_audit_refuse_change();
CREATE TRIGGER console_audit_no_delete BEFORE DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION console_audit_refuse_change();
"""
POSTGRESQL_BACKWARD = f"""
DROP TRIGGER IF EXISTS console_audit_no_update ON {TABLE};
DROP TRIGGER IF EXISTS console_audit_no_delete ON {TABLE};
DROP FUNCTION IF EXISTS console_audit_refuse_change();
"""
SQLITE_FORWARD = [
    f"""CREATE TRIGGER IF NOT EXISTS console_audit_no_update BEFORE UPDATE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS console_audit_no_delete BEFORE DELETE ON {TABLE}
        BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS console_audit_no_update",
    "DROP TRIGGER IF EXISTS console_audit_no_delete",
]


def _run(schema_editor, statements):
    for statement in statements:
        schema_editor.execute(statement, params=None)


def add_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        _run(schema_editor, [POSTGRESQL_FORWARD])
    elif vendor == "sqlite":
        _run(schema_editor, SQLITE_FORWARD)
    else:
        raise RuntimeError(f"No append-only triggers for database vendor {vendor!r}")


def remove_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    _run(schema_editor, [POSTGRESQL_BACKWARD] if vendor == "postgresql" else SQLITE_BACKWARD)


def create_chain_head(apps, schema_editor):
    apps.get_model("console", "AuditChainHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("console", "0002_models")]

    operations = [
        migrations.RunPython(add_triggers, remove_triggers),
        migrations.RunPython(create_chain_head, migrations.RunPython.noop),
    ]
