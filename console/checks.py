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


PLACEHOLDER_SECRET_KEYS = {"changeme", "change-me", "secret", "secret-key", "please-change-me"}


@register(Tags.security, deploy=True)
def check_development_keys(app_configs, **kwargs):
    """The development keys are public (they are in this repository): never in production."""
    errors = []
    if settings.DEVELOPMENT_FIELD_ENCRYPTION_KEY in settings.FIELD_ENCRYPTION_KEYS:
        errors.append(
            Error(
                "FIELD_ENCRYPTION_KEYS holds the public development key: anyone can decrypt "
                "the stored secrets.",
                hint="Generate a new Fernet key, put it first, run rotate_encryption_keys, "
                "then remove the development key.",
                id="console.E002",
            )
        )
    key = settings.SECRET_KEY
    if (
        key == settings.DEVELOPMENT_SECRET_KEY
        or key.startswith("django-insecure")
        or key.lower() in PLACEHOLDER_SECRET_KEYS
        or len(key) < 50
    ):
        errors.append(
            Error(
                "SECRET_KEY is a development placeholder or too short: sessions and the "
                "version content hashes can be forged.",
                hint='Set SECRET_KEY to 50 or more random characters, e.g. python -c "import '
                'secrets; print(secrets.token_urlsafe(50))".',
                id="console.E003",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def check_shared_cache(app_configs, **kwargs):
    if settings.PULL_STATE_REDIS_URL:
        return []
    backend = settings.CACHES["default"]["BACKEND"]
    local = backend.endswith(("LocMemCache", "DummyCache"))
    return [
        Warning(
            (
                "The cache is local to each process, so rate limits (sign-ins, bad tokens), the "
                "cap on failed-sign-in events in the history and cached JWKS are not shared "
                "between web processes: each process allows its own share; and without"
                if local
                else "Without"
            )
            + " Redis the pull API reads the database on every poll.",
            hint="Set CACHE_URL=redis://host:6379/1",
            id="console.W001",
        )
    ]
