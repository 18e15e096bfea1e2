"""Sign in and out, with every attempt in the audit history.

The local login form is for local users (auditors from outside the identity provider, for one),
the only way in before single sign-on is set up, and, for a local admin once it is, the
break-glass way in: that sign-in is audited as login.break_glass, alerted on, and its session
carries a banner. CONSOLE_LOCAL_LOGIN=false turns the form off.
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse

from console import audit, auth, ratelimits, users
from console.roles import ADMIN, BREAK_GLASS_SESSION_KEY, MUST_CHOOSE_PASSWORD, role_of


class ConsoleAuthenticationForm(AuthenticationForm):
    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if users.one_time_password_expired(user):
            raise ValidationError(
                "This one-time password has expired: ask a console admin for a new one.",
                code="one_time_password_expired",
            )
        if not users.use_one_time_password(user):
            raise ValidationError(
                "This one-time password was used already: it signs in once. Ask a console "
                "admin for a new one.",
                code="one_time_password_used",
            )


def single_sign_on_configured() -> bool:
    """Whether the console has a single sign-on to use, working or not (a broken one is when
    break-glass is needed most)."""
    try:
        return auth.login_config() is not None
    except auth.LoginError:
        return True


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True
    authentication_form = ConsoleAuthenticationForm

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["local_login"] = settings.CONSOLE_LOCAL_LOGIN
        # Nobody has signed in yet: say where the first password is (issue 29: a new admin
        # looked for it on this page).
        context["first_sign_in"] = settings.CONSOLE_LOCAL_LOGIN and not (
            get_user_model().objects.filter(last_login__isnull=False).exists()
        )
        context["bootstrap_username"] = users.BOOTSTRAP_USERNAME
        try:
            context["sso"] = auth.login_config()
        except auth.LoginError as error:
            context["sso_error"] = str(error)
        return context

    def post(self, request, *args, **kwargs):
        if not settings.CONSOLE_LOCAL_LOGIN:
            return self.render_to_response(
                {**self.get_context_data(), "local_refused": True}, status=403
            )
        verdict = ratelimits.login_verdict(request)
        if verdict.refused:
            response = self.render_to_response(
                {**self.get_context_data(), "rate_limited": verdict}, status=429
            )
            response["Retry-After"] = str(verdict.retry_after)
            return response
        if verdict.slow_down:
            ratelimits.pause(verdict.slow_down)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.get_user()
        break_glass = role_of(user) == ADMIN and single_sign_on_configured()
        self.request.session[BREAK_GLASS_SESSION_KEY] = break_glass
        audit.record(
            audit.Action.LOGIN_BREAK_GLASS if break_glass else audit.Action.LOGIN_SUCCEEDED,
            request=self.request,
            actor=user,
            target=audit.user_target(user),
            context={"method": "local"},
        )
        if users.must_choose_password(user):
            self.request.session[MUST_CHOOSE_PASSWORD] = True
            return redirect("choose-password")
        return response

    def form_invalid(self, form):
        ratelimits.login_failed(self.request)
        audit.record(
            audit.Action.LOGIN_FAILED,
            request=self.request,
            actor=audit.anonymous(form.data.get("username", "")),
            context={"method": "local"},
        )
        return super().form_invalid(form)


class LogoutView(auth_views.LogoutView):
    """Sign out of the console and, for an SSO session, of the identity provider too."""

    def post(self, request, *args, **kwargs):
        end_session_url = _end_session_url(request)
        if request.user.is_authenticated:
            audit.record(
                audit.Action.LOGOUT, request=request, target=audit.user_target(request.user)
            )
        response = super().post(request, *args, **kwargs)
        if end_session_url:
            # A page, not a redirect: the CSP's form-action allows only this console, and
            # browsers apply it to redirects that follow a form submission.
            return render(request, "registration/signing_out.html", {"url": end_session_url})
        return response


def _end_session_url(request):
    endpoint = request.session.get("oidc_end_session_endpoint")
    if not endpoint:
        return ""
    query = urlencode(
        {
            "id_token_hint": request.session.get("oidc_id_token", ""),
            "client_id": request.session.get("oidc_client_id", ""),
            "post_logout_redirect_uri": request.build_absolute_uri(reverse("login")),
        }
    )
    return f"{endpoint}?{query}"
