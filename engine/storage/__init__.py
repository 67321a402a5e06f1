"""Storage adapter: one SQLAlchemy Core store for SQLite and PostgreSQL."""
