from pathlib import Path

from django.apps import AppConfig
from django.conf import settings


def create_local_folders() -> None:
    """The folders the embedded defaults write to (SQLite, the filesystem broker, DEBUG's
    static files), made at start-up rather than when the settings are read: a production
    configuration names none of them and may run on a read-only disk."""
    folders = []
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        folders.append(Path(database["NAME"]).parent)
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folders += [
            Path(options[key]) for key in ("data_folder_in", "processed_folder", "control_folder")
        ]
    if settings.DEBUG:
        folders.append(Path(settings.STATIC_ROOT))  # WhiteNoise warns before collectstatic
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)


# Receivers of console/signals.py. Each imports the module that does the work when it is first
# called, not at start-up (see console/signals.py).


def dispatch_queued_pushes(sender, push_request_ids, **kwargs) -> None:
    from console import tasks

    tasks.dispatch_after_commit(push_request_ids)


def send_queued_alerts(sender, alert_ids, **kwargs) -> None:
    from console import tasks

    for alert_id in alert_ids:
        tasks.send_alert.delay(alert_id)


def alert_on_audit_events(sender, events, **kwargs) -> None:
    from console import alerts

    alerts.raise_for_audit_events(events)


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Diffgram SSO console"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        create_local_folders()

        from console import (
            audit,
            checks,  # noqa: F401 - registers the system checks
            signals,
        )
        from console.pull_state import forget_instance

        signals.pushes_queued.connect(dispatch_queued_pushes)
        signals.alerts_queued.connect(send_queued_alerts)
        audit.event_recorded.connect(alert_on_audit_events)

        # Saving or deleting an instance changes what its pulls answer (token, URL, version).
        post_save.connect(forget_instance, sender="console.Instance")
        post_delete.connect(forget_instance, sender="console.Instance")
