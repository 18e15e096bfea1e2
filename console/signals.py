"""The signals by which one part of the console hands work to another without importing it:
publishing and alerting queue work for Celery (console/tasks.py), and alerts hear audit events
(audit.event_recorded). Their receivers are in console/apps.py, which imports the module doing
the work only when a signal first arrives: a process that sends none, such as
`manage.py verify_audit`, starts without Celery's tasks and what they import (boto3, the
provider kinds, the JOSE library); docs/BENCHMARKS.md, P3, `--since-checkpoint`."""

from __future__ import annotations

from django.dispatch import Signal

from console import audit

Action = audit.Action

# Sent by console/versions.py with the ids of new push requests.
pushes_queued = Signal()
# Sent by console/alerts.py with the ids of new alerts, once their transaction commits.
alerts_queued = Signal()

# The audit actions console/alerts.py raises alerts for (alerts_for): only events of these are
# sent with audit.event_recorded, so a bulk write such as seed_audit keeps no list of them all.
audit.LISTENED_TO.update(
    {
        Action.PROVIDER_VALIDATION_CHANGED,
        Action.PUSH_FAILED,
        Action.ROLLOUT_HALTED,
        Action.LOGIN_BREAK_GLASS,
        Action.INSTANCE_SIGNIN_FAILED,
        Action.INSTANCE_SIGNIN_RECOVERED,
    }
)
