"""Secrets kept encrypted in a model's `<name>_encrypted` columns (console/encryption.py):
written once, read back only to be sent to where they belong, never shown."""

from console import encryption


class WriteOnlySecrets:
    """Mixed into models that hold secrets; SECRET_NAMES lists them."""

    SECRET_NAMES = ()

    def secret(self, name):
        return encryption.decrypt(getattr(self, f"{name}_encrypted"))

    def set_secret(self, name, value):
        setattr(self, f"{name}_encrypted", encryption.encrypt(value))

    def has_secret(self, name):
        return bool(getattr(self, f"{name}_encrypted"))
