"""What a log line and an audit event know about the request they come from: its request id
(django-guid: the proxy's X-Request-ID when it is a UUID, else a new one; carried into Celery
tasks), who is signed in, and the Diffgram instance calling the API.

`LOG_FORMAT=json` (sso_admin/settings.py) prints them as fields of one JSON object per line;
the text format shows the request id.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from django_guid import get_guid

user_label: ContextVar[str | None] = ContextVar("user_label", default=None)
instance_id: ContextVar[int | None] = ContextVar("instance_id", default=None)


def request_id() -> str:
    """The current request's (or Celery task's) id, "" outside both."""
    return get_guid() or ""


class RequestContext(logging.Filter):
    """Adds request_id, user and instance_id to every record (None where unknown)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = get_guid()
        record.user = user_label.get()
        record.instance_id = instance_id.get()
        return True


class RequestContextMiddleware:
    """Outermost: starts each request with nothing known (django-guid then sets its id). The
    values stay until the thread's next request, so that Django's own line about a 4xx or 5xx
    answer, written after every middleware returned, still carries them. The user is known once
    the authentication middleware ran, i.e. when the view is about to run."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user_label.set(None)
        instance_id.set(None)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            user_label.set(user.get_username())
