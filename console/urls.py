from django.urls import path
from django.views.generic import RedirectView

from console.roles import role_not_required
from console.views import accounts, health, history, pages

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="providers", permanent=False), name="home"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", role_not_required(accounts.LogoutView.as_view()), name="logout"),
    path("providers/", pages.providers, name="providers"),
    path("instances/", pages.instances, name="instances"),
    path("history/", history.history, name="history"),
    path("history/verify/", history.verify, name="history-verify"),
    path("history/export.<str:export_format>", history.export, name="history-export"),
    path("history/<int:event_id>/", history.event_detail, name="history-event"),
    path("healthz", health.healthz, name="healthz"),
]
