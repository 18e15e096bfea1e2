from django.contrib.auth import views as auth_views
from django.shortcuts import render

from console.roles import role_not_required


def providers(request):
    return render(request, "console/providers.html")


def instances(request):
    return render(request, "console/instances.html")


def history(request):
    return render(request, "console/history.html")


logout = role_not_required(auth_views.LogoutView.as_view())
