"""What every API endpoint shares (healthchecks' hc/api/decorators.py is the model): the bearer
token, the allowed methods, a JSON object body, and errors as JSON with the right status.
Endpoints are token-authenticated, so they need no session, no CSRF and no console role."""

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

# A view: the request (with what the decorators add to it) and the URL's arguments.
View = Callable[..., HttpResponse]
BODY_METHODS = ("POST", "PATCH", "PUT")


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    """A JSON error: {"error": message, ...}; a 401 says how to authenticate."""
    response = JsonResponse({"error": message, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="diffgram-sso-console"'
    return response


def bearer_token(request: HttpRequest) -> str:
    """The request's bearer token, or "" (read from META: building request.headers costs)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return header[7:].strip() if header.startswith("Bearer ") else ""


def json_object(request: HttpRequest) -> tuple[Any, JsonResponse | None]:
    """(the body as a dict, None) or (None, a JSON error response)."""
    try:
        document = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        return None, error(413, "The request body is too large.")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, error(400, "The body must be JSON.")
    if not isinstance(document, dict):
        return None, error(400, "The body must be a JSON object.")
    return document, None


def allowed(methods: tuple[str, ...], request: HttpRequest) -> JsonResponse | None:
    """None when the method is allowed, else the 405 answer with its Allow header."""
    if request.method in methods:
        return None
    response = error(405, f"Use {' or '.join(methods)}.")
    response["Allow"] = ", ".join(methods)
    return response


def token_api(view: View) -> View:
    """A token-authenticated endpoint: no session, no CSRF, no console role."""
    return login_not_required(csrf_exempt(view))


def with_json_body(view: View) -> View:
    """Parse a JSON object body for POST, PATCH and PUT into request.json (None otherwise)."""

    @wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        request.json = None
        if request.method in BODY_METHODS:
            request.json, problem = json_object(request)
            if problem:
                return problem
        return view(request, *args, **kwargs)

    return wrapper
