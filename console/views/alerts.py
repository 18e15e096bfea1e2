"""Alerts: where they go (admins add, change, test and remove destinations; auditors read) and
what was sent."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from console import alerts
from console.alert_forms import AlertDestinationForm
from console.forms import SearchForm
from console.models import AlertDestination

PRINTED_ONLY = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
}


def _page(request, form=None, editing=None, status=200):
    search = SearchForm(
        request.GET, fields=("subject", "destination_name", "event", "text"),
        help_text="Subject, destination, event or text of the sent alerts.",
    )  # fmt: skip
    return render(
        request,
        "console/alerts.html",
        {
            "destinations": AlertDestination.objects.all(),
            "alerts": alerts.recent_alerts(search),
            "search": search,
            "form": form or AlertDestinationForm(),
            "editing": editing,
            # Without EMAIL_URL, mail is only printed in the worker's log: say so.
            "email_printed_only": settings.EMAIL_BACKEND in PRINTED_ONLY,
        },
        status=status,
    )


def alert_list(request):
    if request.method != "POST":
        return _page(request)
    form = AlertDestinationForm(request.POST)
    if not form.is_valid():
        return _page(request, form=form, status=400)
    destination = alerts.save_destination(form, request=request)
    messages.success(request, f"Alerts now go to {destination}.")
    return redirect("alerts")


def alert_destination_edit(request, destination_id):
    destination = get_object_or_404(AlertDestination, pk=destination_id)
    if request.method != "POST":
        form = AlertDestinationForm(instance=destination)
        return _page(request, form=form, editing=destination)
    form = AlertDestinationForm(request.POST, instance=destination)
    if not form.is_valid():
        return _page(request, form=form, editing=destination, status=400)
    alerts.save_destination(form, request=request)
    messages.success(request, f"Saved {destination}.")
    return redirect("alerts")


@require_POST
def alert_destination_delete(request, destination_id):
    destination = get_object_or_404(AlertDestination, pk=destination_id)
    alerts.delete_destination(destination, request=request)
    messages.success(request, f"Removed {destination}; its alerts stay listed.")
    return redirect("alerts")


@require_POST
def alert_destination_test(request, destination_id):
    destination = get_object_or_404(AlertDestination, pk=destination_id)
    alerts.send_test(destination)
    messages.success(request, f"A test alert to {destination} is on its way; see below.")
    return redirect("alerts")
