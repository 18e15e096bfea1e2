"""Sign in and out, with every attempt in the audit history."""

from django.contrib.auth import views as auth_views

from console import audit
from console.models import AuditEvent


def user_target(user):
    return (AuditEvent.TargetType.USER, user.pk, user.get_username())


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.get_user()
        audit.record(
            audit.Action.LOGIN_SUCCEEDED,
            request=self.request,
            actor=user,
            target=user_target(user),
            context={"method": "local"},
        )
        return response

    def form_invalid(self, form):
        audit.record(
            audit.Action.LOGIN_FAILED,
            request=self.request,
            actor=audit.anonymous(form.data.get("username", "")),
            context={"method": "local"},
        )
        return super().form_invalid(form)


class LogoutView(auth_views.LogoutView):
    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            audit.record(audit.Action.LOGOUT, request=request, target=user_target(request.user))
        return super().post(request, *args, **kwargs)
