"""The usernames of single-sign-on users: readable, never confusable in the history, and never
one a local account can take."""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model

# Characters a name shown in the history must not hold: controls, invisible formatting
# (zero-width spaces and joiners), separators, and "~", which marks single-sign-on names.
UNFIT_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def clean_name(value) -> str:
    """`value` NFKC-normalised, or "" when it holds characters that would let two names look
    the same in the history (trailing spaces, zero-width characters, controls), or letters of
    more than one script (a Cyrillic "е" in a Latin name: NFKC leaves it as it is)."""
    name = unicodedata.normalize("NFKC", str(value or ""))
    if not name or name != name.strip() or "~" in name:
        return ""
    if any(unicodedata.category(char) in UNFIT_CATEGORIES for char in name):
        return ""
    if len(scripts_of(name)) > 1:
        return ""
    return name


def scripts_of(name) -> set[str]:
    """The scripts of the letters in `name` (LATIN, CYRILLIC, GREEK…, from their Unicode
    names); digits and punctuation belong to none."""
    return {
        unicodedata.name(char, "UNKNOWN").split()[0]
        for char in name
        if unicodedata.category(char).startswith("L")
    }


def sso_username(issuer, *candidates) -> str:
    """The username of a new single-sign-on user: the first fit candidate (preferred_username,
    email, sub), "~" and the issuer's host, e.g. alice~login.example.com. Local usernames never
    hold "~" (Django's username validator refuses it), so an SSO account can never take a local
    name such as breakglass, and the history shows which IdP vouches for each SSO actor."""
    host = urlsplit(issuer).hostname or "sso"
    name = next((clean for c in candidates if (clean := clean_name(c))), "user")
    base = f"{name[:100]}~{host}"[:140]
    User = get_user_model()
    username, number = base, 1
    while User.objects.filter(username=username).exists():
        number += 1
        username = f"{base}~{number}"
    return username
