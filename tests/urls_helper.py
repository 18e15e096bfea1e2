"""Every URL pattern of the project, so access tests cover views nobody remembered to list."""

from django.urls import URLPattern, URLResolver, get_resolver


def iter_patterns(patterns=None, prefix="", namespace=""):
    """(name, route, view); a namespaced name as reverse() takes it, e.g. api-v1:providers."""
    if patterns is None:
        patterns = get_resolver().url_patterns
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from iter_patterns(entry.url_patterns, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else entry.name
            yield name, prefix + str(entry.pattern), entry.callback


def all_named_urls():
    """(name, route, view) for every pattern; unnamed patterns are a bug we want to see."""
    found = list(iter_patterns())
    unnamed = [route for name, route, _ in found if not name]
    assert not unnamed, f"every URL pattern needs a name: {unnamed}"
    return found
