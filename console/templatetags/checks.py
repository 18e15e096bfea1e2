"""Template filters for lists of checks (console/oidc_checks.py)."""

from django import template

from console.oidc_checks import failures_first as order_failures_first

register = template.Library()


@register.filter
def failures_first(checks):
    """The checks with what failed first (templates/console/_checklist.html)."""
    return order_failures_first(checks)
