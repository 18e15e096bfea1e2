"""The silent re-check of a console session signed in through single sign-on."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.crypto import get_random_string
from django.utils.functional import cached_property
from mozilla_django_oidc.utils import (
    add_state_and_verifier_and_nonce_to_session,
    generate_code_challenge,
)

from console.auth import ConsoleOIDCBackend, login_config_or_none

SSO_BACKEND = f"{ConsoleOIDCBackend.__module__}.{ConsoleOIDCBackend.__qualname__}"


class SessionRecheck:
    """Re-checks an SSO session silently (prompt=none) once its ID token expires, so an account
    disabled at the IdP loses access within the token's lifetime. mozilla-django-oidc's
    SessionRefresh reads the provider once at start-up, with no hook for one chosen per
    request; this middleware keeps nothing of a request on itself (one instance serves every
    thread) and hands the answer to the library's callback view."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    @cached_property
    def exempt_paths(self) -> set[str]:
        names = [
            *settings.OIDC_EXEMPT_URLS,
            "oidc_authentication_init",
            "oidc_authentication_callback",
        ]
        return {reverse(name) for name in names}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.recheck(request) or self.get_response(request)

    def recheck(self, request: HttpRequest) -> HttpResponse | None:
        if (
            request.method != "GET"
            or not request.user.is_authenticated
            or request.session.get(BACKEND_SESSION_KEY) != SSO_BACKEND
            or request.path in self.exempt_paths
            or request.session.get("oidc_id_token_expiration", 0) > time.time()
        ):
            return None
        config = login_config_or_none()
        if config is None:
            return None
        state, nonce = get_random_string(32), get_random_string(32)
        verifier = get_random_string(64)
        params = {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": request.build_absolute_uri(reverse("oidc_authentication_callback")),
            "state": state,
            "scope": config.scopes,
            "prompt": "none",
            "nonce": nonce,
            "code_challenge": generate_code_challenge(verifier, "S256"),
            "code_challenge_method": "S256",
        }
        add_state_and_verifier_and_nonce_to_session(request, state, params, verifier)
        request.session["oidc_login_next"] = request.get_full_path()
        url = f"{config.authorization_endpoint}?{urlencode(params, quote_via=quote)}"
        if request.headers.get("HX-Request") or request.headers.get("X-Requested-With"):
            # A script cannot follow a redirect to a sign-in page: it gets where to send the
            # browser instead.
            return JsonResponse({"refresh_url": url}, status=403, headers={"HX-Redirect": url})
        return HttpResponseRedirect(url)
