"""Bearer tokens the console hands out once and keeps only as hashes."""

import hashlib
import hmac
import secrets

from django.db import models


def hash_token(token: str) -> str:
    """Tokens are random (256 bits), so a plain SHA-256 is enough to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


class HashedToken(models.Model):
    """A model holding one token as its hash; TOKEN_PREFIX says what kind of token it is."""

    TOKEN_PREFIX = ""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)

    class Meta:
        abstract = True

    def new_token(self) -> str:
        """Set a new token and return it; only its hash is kept."""
        token = self.TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        return token

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_hash, hash_token(token))
