"""Creating and upgrading a system database without launching anything (Keeptime).

``DBOS.launch()`` and ``DBOSClient(...)`` migrate the system database themselves; this is for an
operator's explicit step (``keeptime db migrate``) or a deployment script.
"""

from __future__ import annotations

from typing import NamedTuple

from engine.storage.database import Database, parse_database_url
from engine.storage.migrations import migrate_system_database
from engine.storage.schema import SCHEMA_VERSION

__all__ = ["SchemaMigration", "migrate_system_database_url"]


class SchemaMigration(NamedTuple):
    """What :func:`migrate_system_database_url` did: the schema version it found (0 for a new
    database) and the one the database has now."""

    found_version: int
    schema_version: int

    @property
    def changed(self) -> bool:
        """Whether anything was created or upgraded."""
        return self.found_version != self.schema_version


def migrate_system_database_url(
    system_database_url: str, *, dbos_system_schema: str = "dbos"
) -> SchemaMigration:
    """Create the system database (and its schema on PostgreSQL) if missing, and bring its tables
    to this engine's schema version.

    Raises DBOSConfigError for a URL that is not a supported database URL, and
    DBOSSchemaVersionError if the database was written by a newer version.
    """
    db = Database(parse_database_url(system_database_url), schema=dbos_system_schema)
    try:
        found = migrate_system_database(db)
    finally:
        db.dispose()
    return SchemaMigration(found, SCHEMA_VERSION)
