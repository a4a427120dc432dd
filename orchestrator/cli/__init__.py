"""The `edgebench` command line. Heavy imports (SQLAlchemy, Celery) happen inside commands."""
