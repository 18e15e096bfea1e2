"""A trigram index for the fleet page's search, on PostgreSQL only: a fragment of a name or URL
is then found among 100,000 instances by the index rather than by reading every row
(docs/BENCHMARKS.md, F). The expression is the one console/instances.py searches
(search_text()); tests/test_instances.py checks that the database uses this index.

pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it. Where the
console's role may not, the search still works, reading every row, and this says so."""

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger(__name__)
INDEX_NAME = "fleet_search"


# console/instances.search_text() as Django writes it for PostgreSQL (Concat coalesces each
# part); the query planner uses the index only for this exact expression.
SEARCH_TEXT = (
    """UPPER((COALESCE("name", '') || COALESCE((COALESCE(' ', '') || COALESCE((COALESCE("""
    """"url_base", '') || COALESCE((COALESCE(' ', '') || COALESCE("rollout_group", '')), """
    """'')), '')), '')))"""
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            schema_editor.execute(
                f"CREATE INDEX {INDEX_NAME} ON console_instance USING gin "
                f"(({SEARCH_TEXT}) gin_trgm_ops)"
            )
    except DatabaseError as error:
        logger.warning(
            "The fleet's search index was not created (%s): searching reads every instance. "
            "A database owner can run CREATE EXTENSION pg_trgm, then `manage.py migrate "
            "console 0017` and `manage.py migrate` create it.",
            str(error).strip().splitlines()[0],
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX_NAME}")


class Migration(migrations.Migration):
    dependencies = [("console", "0017_fleet_indexes")]
    operations = [migrations.RunPython(create, drop)]
