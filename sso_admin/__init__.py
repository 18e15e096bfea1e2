# The Celery app (sso_admin/celery.py) is imported by the modules that use it (console/tasks.py,
# console/broker.py), not here as Celery's Django guide suggests: every process would then load
# Celery at start-up, management commands that send no task included (console/signals.py).
