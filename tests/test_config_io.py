"""Configuration as code: export, import (dry run, plan, errors), and the round trip."""

import re
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console import config_io
from console.models import (
    AuditEvent,
    Instance,
    Provider,
)
from tests import idp_server
from tests.support import (
    make_instance,
)

pytestmark = pytest.mark.django_db

SECRET_ENV = {
    "DIFFGRAM_SSO_LAB_KEYCLOAK_KEYCLOAK_MASTER_PASSWORD": "kc-master-canary",
    "DIFFGRAM_SSO_LAB_KEYCLOAK_KEYCLOAK_DIFFGRAM_PASSWORD": "kc-diffgram-canary",
}


def export():
    out = StringIO()
    call_command("export_config", stdout=out)
    return out.getvalue()


def import_file(tmp_path, text, *extra):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    out = StringIO()
    call_command("import_config", str(path), *extra, stdout=out)
    return out.getvalue()


def wipe():
    Instance.objects.all().delete()
    Provider.objects.all().delete()


def test_export_writes_references_never_secrets(keycloak_provider):
    make_instance(
        keycloak_provider, "lab", push_target="webhook", webhook_url="http://127.0.0.1:9/"
    )
    text = export()
    assert "kc-diffgram-canary" not in text and "kc-master-canary" not in text
    document = yaml.safe_load(text)
    provider = document["providers"][0]
    assert provider["keycloak_master_password"] == {
        "env": "DIFFGRAM_SSO_LAB_KEYCLOAK_KEYCLOAK_MASTER_PASSWORD"
    }
    assert provider["keycloak_master_user"] == "admin"
    assert provider["keycloak_diffgram_user"] == "diffgram-admin"
    assert provider["keycloak_realm"] == "diffgram-realm"
    assert document["instances"] == [
        {
            "name": "lab", "url_base": "https://lab.example.test/", "shape": "compose",
            "rollout_group": "default", "provider": "Lab Keycloak", "push_target": "webhook",
            "webhook_url": "http://127.0.0.1:9/", "signin_runner": "console",
        }
    ]  # fmt: skip


def test_export_then_import_into_an_empty_database_exports_the_same(
    keycloak_provider, tmp_path, monkeypatch
):
    make_instance(keycloak_provider, "lab", rollout_group="canary")
    make_instance(keycloak_provider, "prod", shape="helm")
    first = export()
    wipe()
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    output = import_file(tmp_path, first)
    assert "create    provider Lab Keycloak" in output
    assert "create    instance lab" in output
    assert "validation of Lab Keycloak: passed" in output
    assert "token for new instance lab (shown once): dgi_" in output
    assert export() == first
    provider = Provider.objects.get()
    assert provider.secret("keycloak_diffgram_password") == "kc-diffgram-canary"
    assert provider.validation_passed
    event = AuditEvent.objects.get(action="config.imported")
    assert event.context["created"] == [
        "provider:Lab Keycloak", "instance:lab", "instance:prod",
    ]  # fmt: skip


def test_a_dry_run_prints_the_plan_field_by_field_and_changes_nothing(keycloak_provider, tmp_path):
    make_instance(keycloak_provider, "lab")
    document = yaml.safe_load(export())
    document["providers"][0]["client_id"] = "diffgram-2"
    document["providers"][0]["keycloak_master_password"] = {"unchanged": True}
    document["providers"][0]["keycloak_diffgram_password"] = {"unchanged": True}
    document["instances"].append({"name": "new", "url_base": "https://new.example.test/"})
    before = AuditEvent.objects.count()
    output = import_file(tmp_path, yaml.safe_dump(document), "--dry-run")
    assert "change    provider Lab Keycloak" in output
    assert "client_id: 'diffgram-{instance}' -> 'diffgram-2'" in output
    assert "unchanged instance lab" in output
    assert "create    instance new" in output
    assert "Dry run: nothing changed." in output
    assert Provider.objects.get().client_id == "diffgram-{instance}"
    assert not Instance.objects.filter(name="new").exists()
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("providers: [", "line 1: not valid YAML"),
        (
            "providers:\n  - name: X\n    kind: keycloak\n    keycloak_server_url: nope\n"
            "    keycloak_realm: r\n    client_id: c\n",
            "line 4: providers.0.keycloak_server_url: Enter the Keycloak server URL as a full URL",
        ),
        (
            "providers:\n  - name: X\n    kind: oidc\n    issuer: https://x.example.test\n"
            "    client_id: c\n    client_secret: plain-text-secret\n",
            "line 6: providers.0.client_secret: a secret must be {env: NAME}",
        ),
        (
            "providers:\n  - name: X\n    kind: oidc\n    issuer: https://x.example.test\n"
            "    client_id: c\n    client_secret: {env: NOT_SET_HERE_123}\n",
            "line 6: providers.0.client_secret: environment variable NOT_SET_HERE_123 is not set",
        ),
        (
            "instances:\n  - name: lab\n    url_base: https://lab.example.test\n",
            "line 3: instances.0.url_base: End URL_BASE with /",
        ),
        (
            "instances:\n  - name: lab\n    url_base: https://lab.example.test/\n"
            "    provider: Missing\n",
            "line 4: instances.0.provider: no provider named 'Missing'",
        ),
        ("providers:\n  - name: X\n    kind: saml\n", "line 3: providers.0.kind: must be one of"),
    ],
)
def test_an_invalid_file_changes_nothing_and_names_the_line(tmp_path, text, message):
    with pytest.raises(CommandError) as caught:
        import_file(tmp_path, text)
    assert "nothing changed" in str(caught.value)
    assert message in str(caught.value)
    assert not Provider.objects.exists() and not Instance.objects.exists()
    assert not AuditEvent.objects.exists()


def test_the_import_page_shows_the_plan_then_applies_it(admin_client, keycloak_provider):
    make_instance(keycloak_provider, "lab")
    document = yaml.safe_load(export())
    document["instances"][0]["rollout_group"] = "canary"
    document["providers"][0]["keycloak_master_password"] = {"unchanged": True}
    document["providers"][0]["keycloak_diffgram_password"] = {"unchanged": True}
    upload = StringIO(yaml.safe_dump(document))
    upload.name = "config.yaml"
    page = admin_client.post(reverse("config-import"), {"file": upload})
    assert "rollout_group: &#x27;default&#x27; -&gt; &#x27;canary&#x27;" in page.content.decode()
    assert Instance.objects.get().rollout_group == "default"  # not yet
    done = admin_client.post(reverse("config-import"), {"confirm": "1"})
    assert b"Imported: unchanged provider Lab Keycloak; change instance lab." in done.content
    assert Instance.objects.get().rollout_group == "canary"


def test_auditors_may_export_but_not_import(auditor_client):
    assert auditor_client.get(reverse("config-export")).status_code == 200
    assert auditor_client.post(reverse("config-import"), {}).status_code == 403


def test_the_plan_function_reports_every_problem_at_once():
    with pytest.raises(config_io.ConfigImportError) as caught:
        config_io.plan("providers:\n  - kind: oidc\ninstances:\n  - url_base: x\n")
    assert len(caught.value.problems) == 2


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


def test_nested_aliases_are_refused_before_anything_expands_them(admin_client):
    response = upload(admin_client, LAUGHS)
    assert response.status_code == 400
    assert response.context["problems"] == [
        "line 1: YAML anchors and aliases (&, *) are not accepted in a config file"
    ]
    with pytest.raises(config_io.ConfigImportError):
        config_io.parse(LAUGHS)  # the command line's path too


def test_a_file_over_one_mebibyte_is_refused(admin_client):
    response = upload(admin_client, "# " + "x" * (1024 * 1024))
    assert "larger than 1 MiB" in response.content.decode()
    with pytest.raises(config_io.ConfigImportError, match="larger than 1024 KiB"):
        config_io.parse("# " + "x" * (1024 * 1024))


LAUGHS = "a: &a ['x','x','x','x','x','x','x','x','x']\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 9)}]\n" for n in range(6)
)
