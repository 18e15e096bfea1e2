"""Error pages that need the request (htmx requests get a fragment, not a second layout)."""

from django.shortcuts import render


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: Django's own page has inline styles, which the CSP refuses."""
    return render(request, "403_csrf.html", {"reason": reason}, status=403)
