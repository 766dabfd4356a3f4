"""Alembic revisions of the state database, run by ``open_database``."""
