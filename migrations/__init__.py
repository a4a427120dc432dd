"""Alembic environment and versions for the edgebench store."""
