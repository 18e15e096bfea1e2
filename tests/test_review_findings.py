"""Regression tests for the second adversarial review (issue 15): each reproduces an attack that
worked before its fix. The numbers are the review's."""

import re
import time
import urllib.parse
from io import StringIO

import pytest
import yaml
from django.urls import reverse

from console import config_io
from console.models import AuditEvent, Provider
from console.views import oidc as oidc_views
from tests import idp_server

pytestmark = pytest.mark.django_db


# --- 1. the web import must not read the server's environment --------------------------------


def oidc_document(issuer, secret_reference):
    return yaml.safe_dump(
        {
            "providers": [
                {
                    "name": "Probe",
                    "kind": "oidc",
                    "issuer": issuer,
                    "client_id": "probe",
                    "client_secret": secret_reference,
                }
            ]
        }
    )


def upload(client, text):
    file = StringIO(text)
    file.name = "config.yaml"
    return client.post(reverse("config-import"), {"file": file})


class TestWebImportDoesNotReadTheEnvironment:
    def test_env_references_become_secrets_to_type_never_server_values(
        self, admin_client, idp, monkeypatch
    ):
        monkeypatch.setenv("CONSOLE_ONLY_SECRET", "server-side-value")
        issuer = idp_server.serve_okta(idp)
        plan = upload(admin_client, oidc_document(issuer, {"env": "CONSOLE_ONLY_SECRET"}))
        assert plan.status_code == 200
        assert plan.context["requested"][0]["secret"] == "client_secret"
        assert "server-side-value" not in plan.content.decode()

        refused = admin_client.post(reverse("config-import"), {"confirm": "1"})
        assert refused.status_code == 400
        assert "Probe: type its client_secret" in refused.content.decode()
        assert not Provider.objects.exists()

        done = admin_client.post(
            reverse("config-import"), {"confirm": "1", "secret_0": "typed-by-the-admin"}
        )
        assert done.status_code == 200
        assert Provider.objects.get().secret("client_secret") == "typed-by-the-admin"

    def test_the_answer_does_not_tell_which_variables_exist(self, admin_client, idp):
        issuer = idp_server.serve_okta(idp)
        answers = []
        for name in ("SECRET_KEY", "DATABASE_URL", "SURELY_NOT_SET_ANYWHERE_42"):
            page = upload(admin_client, oidc_document(issuer, {"env": name}))
            text = re.sub(r'name="csrfmiddlewaretoken" value="\w+"', "", page.content.decode())
            answers.append(text.replace(name, "NAME"))
        assert answers[0] == answers[1] == answers[2]
        assert "is not set" not in answers[2]

    def test_the_command_line_import_still_reads_its_environment(self, idp, tmp_path, monkeypatch):
        from django.core.management import call_command

        monkeypatch.setenv("PROBE_SECRET", "from-the-operators-shell")
        path = tmp_path / "config.yaml"
        path.write_text(oidc_document(idp_server.serve_okta(idp), {"env": "PROBE_SECRET"}))
        call_command("import_config", str(path), stdout=StringIO())
        assert Provider.objects.get().secret("client_secret") == "from-the-operators-shell"


# --- 11. YAML that expands without bound ----------------------------------------------------------

LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 9)}]\n" for n in range(6)
)


def test_nested_aliases_are_refused_before_anything_expands_them(admin_client):
    response = upload(admin_client, LAUGHS)
    assert response.status_code == 400
    assert response.context["problems"] == [
        "line 1: YAML anchors and aliases (&, *) are not accepted in a config file"
    ]
    with pytest.raises(config_io.ImportError_):
        config_io.parse(LAUGHS)  # the command line's path too


def test_a_file_over_one_mebibyte_is_refused(admin_client):
    response = upload(admin_client, "# " + "x" * (1024 * 1024))
    assert "larger than 1 MiB" in response.content.decode()
    with pytest.raises(config_io.ImportError_, match="larger than 1024 KiB"):
        config_io.parse("# " + "x" * (1024 * 1024))


# --- 2. nobody can write to the history through the callback -----------------------------------


def callback_error(client, state=None, description="d" * 500):
    query = {"error": "access_denied", "error_description": description}
    if state:
        query["state"] = state
    return client.get(reverse("oidc_authentication_callback"), query, follow=True)


def pending_state(client):
    start = client.get(reverse("oidc_authentication_init"))
    return urllib.parse.parse_qs(urllib.parse.urlsplit(start["Location"]).query)["state"][0]


def failures():
    return list(AuditEvent.objects.filter(action="login.failed").order_by("id"))


class TestForgedIdentityProviderErrors:
    def test_an_error_nobody_asked_for_writes_nothing_and_shows_nothing(self, client):
        for _ in range(30):
            page = callback_error(client, state="made-up", description="FORGED " * 70)
        assert failures() == []
        assert b"FORGED" not in page.content
        assert b"start it again" in page.content

    def test_real_failures_are_capped_and_counted_per_address(self, client, sso, monkeypatch):
        monkeypatch.setattr(oidc_views, "FAILED_EVENTS_PER_IP", "2/s")
        for _ in range(4):
            callback_error(client, pending_state(client))
        recorded = failures()
        assert len(recorded) == 2  # the next two were left out...
        assert len(recorded[0].context["reason"]) < 300  # the IdP's text, capped
        time.sleep(1.1)  # ...until the window has passed,
        callback_error(client, pending_state(client))
        assert failures()[-1].context["suppressed_before"] == 2  # ...and are then counted
