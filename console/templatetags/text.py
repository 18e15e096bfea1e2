"""Template filters for how text wraps on the pages."""

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def url_breaks(url: str) -> SafeString:
    """The URL with a line-break opportunity after each "/", so that a narrow table cell wraps
    it between its parts, never inside a host ("127.0.0.1:8100") or a word."""
    return mark_safe(escape(url).replace("/", "/<wbr>"))  # noqa: S308 - escaped just before
