"""The JSON API (/api/v1/) on django-ninja: the OpenAPI document (/api/v1/openapi.json) is
generated from the same schemas that check requests and shape answers. Personal API tokens act
with their owner's role (auditors read, admins also change); instance tokens pull.

Operations live with their resource: providers.py (providers, versions, diffs), fleet.py
(instances and the history), federation.py (a Cognito pool's identity providers), pull.py (what
instances pull and acknowledge; plain Django views for speed, documented here)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from console.api import federation, fleet, providers, pull
from console.api.auth import READ
from console.api.errors import ApiError, error

logger = logging.getLogger(__name__)


api = NinjaAPI(
    title="Diffgram SSO console",
    version="1",
    description=__doc__,
    urls_namespace="api-v1",
    docs_url=None,
    auth=READ,
)


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error(exc.status, str(exc), **exc.extra)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    fields: dict[str, list[str]] = {}
    for problem in exc.errors:
        # The field is the last name in the location (the body's union names its kind first).
        names = [str(part) for part in problem.get("loc", ()) if isinstance(part, str)]
        field = names[-1] if names and names[-1] not in ("body", "query", "path") else "body"
        discriminator = (problem.get("ctx") or {}).get("discriminator")
        if discriminator:  # a body told apart by a field (a provider's kind) without a valid one
            field = str(discriminator).strip("'\"")
        if problem.get("type") == "json_invalid":
            return error(400, "The body must be JSON.")
        message = (
            "Unknown field." if problem.get("type") == "extra_forbidden" else problem.get("msg")
        )
        fields.setdefault(field, []).append(str(message))
    return error(400, "Invalid input.", fields=fields)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error(401, "Missing, expired or revoked API token.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, ValueError):  # the body did not parse (JSON, UTF-8)
        return error(400, "The body must be JSON.")
    return error(exc.status_code, str(exc))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error(404, str(exc) or "No such resource.")


@api.exception_handler(RequestDataTooBig)
def _too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error(413, "The request body is too large.")


@api.exception_handler(Exception)
def _crash(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("API operation failed", exc_info=exc)
    return error(500, "The console failed to answer; the request id is in its logs.")


api.add_router("/providers", providers.router)
api.add_router("/providers", federation.router)
api.add_router("/", fleet.router)
api.add_router("/instances", pull.router)


def urls() -> tuple[list[Any], str, str]:
    """The API's URL patterns, authenticated by token (console/api/auth.py): the console's
    session sign-in and role pages do not apply to them."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        if pattern.callback is not None:
            login_not_required(pattern.callback)
    return patterns, app_name, namespace
