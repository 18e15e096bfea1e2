"""System checks run at start-up (and by `manage.py check`)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from console import encryption


@register()
def check_field_encryption_keys(app_configs, **kwargs):
    return [
        Error(problem, hint="Generate one with: python -c \"from cryptography.fernet import "
              "Fernet; print(Fernet.generate_key().decode())\"", id="console.E001")
        for problem in encryption.key_problems(settings.FIELD_ENCRYPTION_KEYS)
    ]  # fmt: skip


@register(Tags.security, deploy=True)
def check_shared_cache(app_configs, **kwargs):
    if settings.PULL_STATE_REDIS_URL:
        return []
    backend = settings.CACHES["default"]["BACKEND"]
    local = backend.endswith(("LocMemCache", "DummyCache"))
    return [
        Warning(
            (
                "The cache is local to each process, so rate limits and cached JWKS are not "
                "shared between web processes; and without"
                if local
                else "Without"
            )
            + " Redis the pull API reads the database on every poll.",
            hint="Set CACHE_URL=redis://host:6379/1",
            id="console.W001",
        )
    ]
