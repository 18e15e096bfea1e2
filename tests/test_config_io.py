"""Configuration as code: export, import (dry run, plan, errors), and the round trip."""

from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console import config_io
from console.models import AuditEvent, Instance, Provider
from tests.support import make_instance

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
