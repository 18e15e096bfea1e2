"""Import configuration as code from the UI: upload, see the plan, confirm."""

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_safe

from console import config_io


class ImportForm(forms.Form):
    file = forms.FileField(label="YAML file from export_config")


@require_safe
def export(request):
    response = HttpResponse(config_io.export_yaml(), content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="diffgram-sso-config.yaml"'
    return response


SESSION_KEY = "config_import"


@sensitive_post_parameters()
def import_config(request):
    """Step 1 (POST file): show the plan, with a password field for every secret the file
    refers to as {env: NAME}. Step 2 (POST confirm): apply the same text with those secrets.
    The server's own environment is never read (console/config_io.py)."""
    if request.method == "POST" and "confirm" in request.POST:
        pending = request.session.get(SESSION_KEY)
        if pending is None:
            messages.error(request, "Upload the file again: the plan expired.")
            return redirect("config-import")
        typed = {
            (provider, secret): request.POST.get(f"secret_{index}", "")
            for index, (provider, secret, _name) in enumerate(pending["requested"])
        }
        secrets = config_io.TypedSecrets(typed)
        try:
            changes = config_io.plan(pending["text"], secrets)
            if secrets.requested:
                raise config_io.ConfigImportError(
                    [
                        f"{provider}: type its {secret} (the file refers to {{env: {name}}}), "
                        "or write {unchanged: true} in the file"
                        for provider, secret, name in secrets.requested
                    ]
                )
            tokens = config_io.apply(changes, request=request)
        except config_io.ConfigImportError as error:
            return _show_plan(request, pending, problems=error.problems, status=400)
        del request.session[SESSION_KEY]
        config_io.validate_imported(changes, request=request)
        return render(request, "console/config_import.html", {"done": changes, "tokens": tokens})
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > config_io.MAX_BYTES:
            form.add_error("file", "The file is larger than 1 MiB.")
        else:
            text = upload.read().decode("utf-8", "replace")
            secrets = config_io.TypedSecrets()
            try:
                config_io.plan(text, secrets)
            except config_io.ConfigImportError as error:
                return render(
                    request,
                    "console/config_import.html",
                    {"form": form, "problems": error.problems},
                    status=400,
                )
            pending = {"text": text, "requested": secrets.requested}
            request.session[SESSION_KEY] = pending
            return _show_plan(request, pending)
    return render(request, "console/config_import.html", {"form": form})


def _show_plan(request, pending, problems=None, status=200):
    changes = config_io.plan(pending["text"], config_io.TypedSecrets())
    return render(
        request,
        "console/config_import.html",
        {
            "plan": changes,
            "lines": config_io.describe_plan(changes),
            "requested": [
                {"field": f"secret_{index}", "provider": provider, "secret": secret, "name": name}
                for index, (provider, secret, name) in enumerate(pending["requested"])
            ],
            "problems": problems,
        },
        status=status,
    )
