"""The database: SQLModel tables, the engine and its transactions, Alembic migrations."""
