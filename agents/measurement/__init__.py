"""The timing loop. No runtime, no Celery, no hardware imports (statistics: agents.contract)."""
