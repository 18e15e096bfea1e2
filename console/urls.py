from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from console.views import health, pages

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="providers", permanent=False), name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", pages.logout, name="logout"),
    path("providers/", pages.providers, name="providers"),
    path("instances/", pages.instances, name="instances"),
    path("history/", pages.history, name="history"),
    path("healthz", health.healthz, name="healthz"),
]
