"""One shape for every error under /api/, whatever raised it: a refused token, a form's field
errors, an unknown id, a method the path does not take, a body too large, a crash.

    {"error": "what went wrong", "code": "not_found", "request_id": "…", "fields": {"name": ["…"]}}

`fields` only for invalid input, `changes` only for an edit conflict (409). The request id is
the one in the console's logs (X-Request-ID), so an integrator's report can be traced."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Literal

from django.http import HttpRequest, HttpResponse, JsonResponse
from pydantic import BaseModel, Field

from console import log_context

logger = logging.getLogger(__name__)

CODES = {
    400: "invalid", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "too_large",
    415: "unsupported_media_type", 429: "rate_limited", 500: "server_error",
    502: "upstream_error",
}  # fmt: skip
Code = Literal[
    "invalid", "unauthenticated", "forbidden", "not_found", "method_not_allowed", "conflict",
    "too_large", "unsupported_media_type", "rate_limited", "server_error", "upstream_error",
    "error",
]  # fmt: skip


class ErrorOut(BaseModel):
    """Every error answer under /api/."""

    error: str = Field(description="What went wrong, and what to do, for a person to read.")
    code: Code
    request_id: str = Field(description="The request id in the console's logs (X-Request-ID).")
    fields: dict[str, list[str]] = Field(
        default_factory=dict, description="Invalid input: the messages of each field."
    )
    changes: list[dict[str, Any]] = Field(
        default_factory=list, description="An edit conflict: who changed what meanwhile."
    )


class ApiError(Exception):
    """Raised anywhere in an API operation: answered as `error(status, message, ...)`."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


def invalid_form(form: Any) -> ApiError:
    """A form's field errors as the API's 400 (the same messages the page shows)."""
    return ApiError(400, "Invalid input.", fields={k: list(v) for k, v in form.errors.items()})


def error(status: int, message: str, *, fields: dict[str, Any] | None = None,
          **extra: Any) -> JsonResponse:  # fmt: skip
    """A JSON error in the one shape; a 401 says how to authenticate."""
    body: dict[str, Any] = {
        "error": message,
        "code": CODES.get(status, "error"),
        "request_id": log_context.request_id(),
    }
    if fields:
        body["fields"] = {
            name: [str(m) for m in (messages if isinstance(messages, list | tuple) else [messages])]
            for name, messages in fields.items()
        }
    body.update(extra)
    response = JsonResponse(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="diffgram-sso-console"'
    return response


class ApiErrorsMiddleware:
    """Whatever answered a request under /api/ with an error page (Django's 404 for an unknown
    path, a 405, a CSRF refusal, the 500 of a crash), the client gets the one JSON shape."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            status = response.status_code
            replaced = error(status, _MESSAGES.get(status) or HTTPStatus(status).phrase + ".")
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replaced[header] = response[header]
            return replaced
        return response


_MESSAGES = {
    404: "No such resource: see /api/v1/openapi.json for the paths.",
    405: "This path does not take that method (see Allow).",
    500: "The console failed to answer; the request id is in its logs.",
}
