"""Template context every page needs, apart from the role (console/roles.py)."""

from typing import Any

from django.conf import settings


def demo(request) -> dict[str, Any]:
    """`make demo` marks every page, so that nobody mistakes it for a console in use."""
    return {"demo": settings.CONSOLE_DEMO}
