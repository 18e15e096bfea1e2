"""System checks run at start-up (and by `manage.py check`)."""

from django.conf import settings
from django.core.checks import Error, register

from console import encryption


@register()
def check_field_encryption_keys(app_configs, **kwargs):
    return [
        Error(problem, hint="Generate one with: python -c \"from cryptography.fernet import "
              "Fernet; print(Fernet.generate_key().decode())\"", id="console.E001")
        for problem in encryption.key_problems(settings.FIELD_ENCRYPTION_KEYS)
    ]  # fmt: skip
