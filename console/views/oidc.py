"""Signing in to the console through OIDC, and "Test login" against any provider."""

import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.functional import cached_property
from django.views.decorators.http import require_POST, require_safe
from mozilla_django_oidc.utils import generate_code_challenge
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from console import audit, auth, providers, roles
from console.views.providers import get_provider

TEST_STATES = "oidc_test_states"
TEST_PASSED = "oidc_test_logins_passed"
TEST_RESULTS = "oidc_test_login_results"  # by provider: what its latest test login showed
TEST_LOGIN_VALID_FOR = 30 * 60  # a test login lets the same admin mark the provider for 30 min
MAX_IDP_TEXT = 200  # characters of an IdP's error description shown (never recorded)
ERROR_CODE = re.compile(r"[a-z_]{1,64}")  # an OAuth error code, as RFC 6749 spells them


class AuthenticateView(OIDCAuthenticationRequestView):
    """Start the sign-in: mozilla-django-oidc builds the request (state, nonce, PKCE), its
    get_settings hook answering with this request's provider (a view instance serves one
    request)."""

    @cached_property
    def login(self) -> auth.LoginConfig | None:
        return auth.login_config_or_none()

    def get_settings(self, attr: str, *args: Any) -> Any:
        return auth.per_request_setting(self.login, attr, *args)

    def get(self, request: HttpRequest) -> HttpResponse:
        if self.login is None:
            try:
                auth.login_config()  # raises LoginError saying why
            except auth.LoginError as error:
                messages.error(request, str(error))
            return redirect("login")
        return super().get(request)


class CallbackView(OIDCAuthenticationCallbackView):
    """The one redirect URI to register: sign-ins and test logins both come back here."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("state") in request.session.get(TEST_STATES, {}):
            return test_login_result(request)
        # mozilla-django-oidc forgets the state before login_failure() runs: note it first.
        self.state_was_pending = request.GET.get("state") in request.session.get("oidc_states", {})
        try:
            return super().get(request)
        except auth.NoRole as refusal:
            self._audit_failure(str(refusal))
            return roles.no_access(request, refused_sso=True)
        except auth.LoginError as error:
            self._audit_failure(str(error))
            messages.error(request, f"Sign-in failed: {error}")
            return redirect("login")

    def login_success(self) -> HttpResponse:
        response = super().login_success()
        claims, config = self.request.oidc_claims, self.request.oidc_config
        session = self.request.session
        # Re-check when the ID token itself expires, not after a fixed interval.
        session["oidc_id_token_expiration"] = claims.id_token["exp"]
        session["oidc_id_token"] = claims.raw_id_token
        session["oidc_end_session_endpoint"] = config.end_session_endpoint
        session["oidc_client_id"] = config.client_id
        audit.record(
            audit.Action.LOGIN_SUCCEEDED,
            request=self.request,
            actor=self.user,
            target=audit.user_target(self.user),
            context={"method": "oidc", "issuer": config.issuer, "role": claims.role},
        )
        return response

    def login_failure(self):
        error = self.request.GET.get("error")
        if error and self.state_was_pending:
            # Only an answer to a sign-in this browser started is the IdP's: anyone can send
            # this URL any error text. Even so, anyone can start a sign-in, so the history
            # keeps only the error's code, and only when it looks like one.
            code = error if ERROR_CODE.fullmatch(error) else "unrecognised_error"
            description = self.request.GET.get("error_description", "")
            self._audit_failure(f"The identity provider answered {code}")
            messages.error(
                self.request,
                f"Sign-in failed. The identity provider answered: {code}"
                + (f" ({description[:MAX_IDP_TEXT]})" if description else ""),
            )
        elif error:
            messages.error(self.request, "Sign-in failed: start it again from this page.")
        return redirect("login")

    def _audit_failure(self, reason: str) -> None:
        audit.record_failed_sign_in(self.request, reason)


authenticate = login_not_required(AuthenticateView.as_view())
callback = login_not_required(CallbackView.as_view())


# --- test login ---------------------------------------------------------------------------------


@require_safe
def test_login_start(request, provider_id):
    """Run the authorization-code flow against this provider with the console's callback,
    without signing anyone in or out. A link (GET), not a form: the CSP's form-action allows
    only this console, and browsers apply it to the redirect that follows a form post."""
    provider = get_provider(request, provider_id)
    config = auth.config_for_provider(provider)
    if config is None:
        messages.error(request, f"Validate {provider} successfully before a test login.")
        return redirect("provider-detail", provider.pk)
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)[:86]
    states = request.session.get(TEST_STATES, {})
    states[state] = {
        "provider": provider.pk,
        "nonce": nonce,
        "verifier": verifier,
        "at": time.time(),
    }
    request.session[TEST_STATES] = dict(list(states.items())[-5:])
    query = urlencode(
        {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": request.build_absolute_uri(reverse("oidc_authentication_callback")),
            "scope": config.scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": generate_code_challenge(verifier, "S256"),
            "code_challenge_method": "S256",
            "prompt": "login",
        }
    )
    return redirect(f"{config.authorization_endpoint}?{query}")


def test_login_result(request):
    """The callback of a test login: exchange the code and check what the provider sent back
    (the session's user stays as it was), keep the outcome in the session and redirect to it,
    so that a reload shows it again instead of sending a used code back."""
    test = request.session[TEST_STATES].pop(request.GET["state"])
    request.session.modified = True
    provider = get_provider(request, test["provider"])
    error, outcome = None, None
    if not request.user.is_authenticated:
        error = "Sign in to the console before running a test login."
    elif request.GET.get("error"):
        error = f"The provider answered: {request.GET['error']}" + (
            f" ({request.GET['error_description']})" if "error_description" in request.GET else ""
        )
    else:
        try:
            outcome = auth.test_login(
                auth.config_for_provider(provider),
                request,
                nonce=test["nonce"],
                code_verifier=test["verifier"],
            )
        except auth.LoginError as failure:
            error = str(failure)
    if outcome is not None and outcome.role == roles.ADMIN:
        # Only a test as an admin lets the provider sign admins in.
        passed = request.session.get(TEST_PASSED, {})
        passed[str(provider.pk)] = {"user": request.user.pk, "at": time.time()}
        request.session[TEST_PASSED] = passed
    audit.record(
        audit.Action.PROVIDER_TEST_LOGIN,
        request=request,
        target=provider,
        context={
            "passed": outcome is not None,
            **({"error": error[:500]} if error else {}),
            **({"role": outcome.role, "sub": outcome.id_token.get("sub")} if outcome else {}),
        },
    )
    if not request.user.is_authenticated:
        return render(request, "console/test_login.html", {"provider": provider, "error": error})
    # The claims, never the tokens: what the page shows.
    results = request.session.get(TEST_RESULTS, {})
    results[str(provider.pk)] = {
        "error": error,
        "id_token": outcome.id_token if outcome else None,
        "userinfo": outcome.userinfo if outcome else None,
    }
    request.session[TEST_RESULTS] = results
    return redirect("provider-test-login-result", provider.pk)


@require_safe
def test_login_outcome(request, provider_id):
    """The latest test login of this provider in this session, as the callback left it."""
    provider = get_provider(request, provider_id)
    result = request.session.get(TEST_RESULTS, {}).get(str(provider.pk))
    if result is None:
        messages.info(request, f"No test login of {provider} in this session: run one.")
        return redirect("provider-detail", provider.pk)
    context = {"provider": provider, "error": result["error"], "outcome": None}
    if result["id_token"] is not None:
        outcome = auth.SignInClaims(result["id_token"], result["userinfo"], "")
        context |= {
            "outcome": outcome,
            "claims_json": json.dumps(outcome.id_token, indent=2, sort_keys=True),
            "userinfo_json": json.dumps(outcome.userinfo, indent=2, sort_keys=True),
            "groups_claim_name": settings.CONSOLE_OIDC_GROUPS_CLAIM,
            # Only when no group came back: with groups in hand, the scopes are not the problem.
            "scopes_lack_groups": not outcome.groups and "groups" not in provider.scopes.split(),
            "mapping": roles.group_mapping(),
        }
    return render(
        request, "console/test_login.html", context, status=200 if context["outcome"] else 400
    )


@require_POST
def mark_console_login(request, provider_id):
    provider = get_provider(request, provider_id)
    passed = request.session.get(TEST_PASSED, {}).get(str(provider.pk))
    if (
        not passed
        or passed["user"] != request.user.pk
        or time.time() - passed["at"] > TEST_LOGIN_VALID_FOR
    ):
        messages.error(
            request,
            "Run a test login with this provider that maps to the admin role first (within "
            "the last 30 minutes).",
        )
        return redirect("provider-detail", provider.pk)
    providers.mark_console_login(provider, request=request)
    messages.success(request, f"The console's admins now sign in with {provider}.")
    return redirect("provider-detail", provider.pk)
