"""Campaign specs, matrix expansion and device matching: pure functions, no SQL, no Celery."""
