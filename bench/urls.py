from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.urls import include, path


@login_not_required
def trivial(request):
    """The fastest Django view on this stack: the ceiling for the pull API."""
    return HttpResponse("ok")


urlpatterns = [
    path("bench/trivial", trivial, name="bench-trivial"),
    path("", include("sso_admin.urls")),
]
