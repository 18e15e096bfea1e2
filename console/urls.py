from django.urls import path
from django.views.generic import RedirectView

from console.roles import role_not_required
from console.views import accounts, health, history, pages, providers

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="providers", permanent=False), name="home"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", role_not_required(accounts.LogoutView.as_view()), name="logout"),
    path("providers/", providers.provider_list, name="providers"),
    path("providers/new/", providers.provider_new, name="provider-new"),
    path("providers/new/<str:kind>/", providers.provider_create, name="provider-create"),
    path("providers/discover/", providers.provider_discover, name="provider-discover"),
    path("providers/<int:provider_id>/", providers.provider_detail, name="provider-detail"),
    path("providers/<int:provider_id>/edit/", providers.provider_edit, name="provider-edit"),
    path(
        "providers/<int:provider_id>/validate/",
        providers.provider_validate,
        name="provider-validate",
    ),
    path("providers/<int:provider_id>/toggle/", providers.provider_toggle, name="provider-toggle"),
    path("providers/<int:provider_id>/delete/", providers.provider_delete, name="provider-delete"),
    path("instances/", pages.instances, name="instances"),
    path("history/", history.history, name="history"),
    path("history/verify/", history.verify, name="history-verify"),
    path("history/export.<str:export_format>", history.export, name="history-export"),
    path("history/<int:event_id>/", history.event_detail, name="history-event"),
    path("healthz", health.healthz, name="healthz"),
]
