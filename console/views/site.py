"""Site-wide odds and ends: the CSRF failure page (it needs the request, so that htmx requests
get a fragment) and /favicon.ico."""

from django.contrib.auth.decorators import login_not_required
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_safe


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: Django's own page has inline styles, which the CSP refuses."""
    return render(request, "403_csrf.html", {"reason": reason}, status=403)


@login_not_required
@require_safe
def favicon(request):
    """Browsers ask for /favicon.ico whatever the page links: no sign-in, no log noise."""
    return redirect(static("console/favicon.svg"), permanent=True)
