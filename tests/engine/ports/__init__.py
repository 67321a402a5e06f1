"""Contract tests of the storage ports (engine/storage/ports.py), on SQLite and PostgreSQL."""
