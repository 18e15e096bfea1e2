"""Template filters for lists of checks (console/oidc_checks.py)."""

from django import template

from console import oidc_checks

register = template.Library()
# {% for check in checks|failures_first %}: templates/console/_checklist.html
register.filter("failures_first", oidc_checks.failures_first)
