"""Secrets kept encrypted in a model's `<name>_encrypted` columns (console/encryption.py):
written once, read back only to be sent to where they belong, never shown."""

from __future__ import annotations

from console import encryption


class WriteOnlySecrets:
    """Mixed into models that hold secrets; SECRET_NAMES lists them."""

    SECRET_NAMES: tuple[str, ...] = ()

    def secret(self, name) -> str:
        return encryption.decrypt(getattr(self, f"{name}_encrypted"))

    def set_secret(self, name, value) -> None:
        setattr(self, f"{name}_encrypted", encryption.encrypt(value))

    def has_secret(self, name) -> bool:
        return bool(getattr(self, f"{name}_encrypted"))
