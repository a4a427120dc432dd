"""Timing loop and statistics. No runtime, no Celery, no hardware imports."""
