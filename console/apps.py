from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Diffgram SSO console"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from console import (
            checks,  # noqa: F401 - registers the system checks
            tasks,  # noqa: F401 - dispatches the pushes publishing queues
        )
        from console.pull_state import forget_instance

        # Saving or deleting an instance changes what its pulls answer (token, URL, version).
        post_save.connect(forget_instance, sender="console.Instance")
        post_delete.connect(forget_instance, sender="console.Instance")
