"""Import configuration as code from the UI: upload, see the plan, confirm."""

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_safe

from console import config_io


class ImportForm(forms.Form):
    file = forms.FileField(label="YAML file from export_config")


@require_safe
def export(request):
    response = HttpResponse(config_io.export_yaml(), content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="diffgram-sso-config.yaml"'
    return response


def import_config(request):
    """Step 1 (POST file): show the plan. Step 2 (POST confirm): apply the same text."""
    if request.method == "POST" and "confirm" in request.POST:
        text = request.session.pop("config_import", None)
        if text is None:
            messages.error(request, "Upload the file again: the plan expired.")
            return redirect("config-import")
        try:
            changes = config_io.plan(text)
            tokens = config_io.apply(changes, request=request)
        except config_io.ImportError_ as error:
            return render(
                request,
                "console/config_import.html",
                {"form": ImportForm(), "problems": error.problems},
                status=400,
            )
        config_io.validate_imported(changes, request=request)
        return render(request, "console/config_import.html", {"done": changes, "tokens": tokens})
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > 1024 * 1024:
            form.add_error("file", "The file is larger than 1 MiB.")
        else:
            text = upload.read().decode("utf-8", "replace")
            try:
                changes = config_io.plan(text)
            except config_io.ImportError_ as error:
                return render(
                    request,
                    "console/config_import.html",
                    {"form": form, "problems": error.problems},
                    status=400,
                )
            request.session["config_import"] = text
            return render(
                request,
                "console/config_import.html",
                {"plan": changes, "lines": config_io.describe_plan(changes)},
            )
    return render(request, "console/config_import.html", {"form": form})
