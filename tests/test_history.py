"""What auditors see and take away: the History page, event detail, verification, exports."""

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console import audit
from console.models import AuditEvent
from tests.support import PASSWORD, ROOT

pytestmark = pytest.mark.django_db

OKTA = (AuditEvent.TargetType.PROVIDER, 1, "Corporate Okta")
KEYCLOAK = (AuditEvent.TargetType.PROVIDER, 2, "Lab Keycloak")


def seed(count, target=OKTA, action=audit.Action.PROVIDER_CHANGED, **extra):
    audit.record_many(
        {"action": action, "target": target, "changes": {"n": [i, i + 1]}, **extra}
        for i in range(count)
    )


def ids_on(response):
    return [event.id for event in response.context["events"]]


class TestHistoryPage:
    def test_it_lists_events_newest_first_for_auditors(self, auditor_client):
        seed(3)
        response = auditor_client.get(reverse("history"))
        assert response.status_code == 200
        assert ids_on(response) == [3, 2, 1]
        assert b"Corporate Okta" in response.content

    def test_it_pages_with_keyset_links_in_both_directions(self, auditor_client):
        seed(120)
        first = auditor_client.get(reverse("history"))
        assert ids_on(first) == list(range(120, 70, -1))
        assert first.context["older"] == 71 and first.context["newer"] is None

        second = auditor_client.get(reverse("history"), {"before": 71})
        assert ids_on(second) == list(range(70, 20, -1))
        third = auditor_client.get(reverse("history"), {"before": second.context["older"]})
        assert ids_on(third) == list(range(20, 0, -1))
        assert third.context["older"] is None

        back = auditor_client.get(reverse("history"), {"after": third.context["newer"]})
        assert ids_on(back) == list(range(70, 20, -1))

    def test_it_filters_by_every_field_from_the_url(self, auditor_client, admin_user):
        seed(2, target=OKTA)
        seed(2, target=KEYCLOAK, action=audit.Action.PROVIDER_VALIDATED)
        audit.record_many([{"action": audit.Action.LOGOUT, "actor": admin_user}])
        url = reverse("history")
        assert ids_on(auditor_client.get(url, {"action": "provider.validated"})) == [4, 3]
        assert ids_on(auditor_client.get(url, {"target_type": "provider", "target_id": "1"})) == [
            2,
            1,
        ]
        assert ids_on(auditor_client.get(url, {"q": "keycloak"})) == [4, 3]
        assert ids_on(auditor_client.get(url, {"actor": "alice-admin"})) == [5]
        today = timezone.now().date()
        assert len(ids_on(auditor_client.get(url, {"date_from": today, "date_to": today}))) == 5
        tomorrow = today + timedelta(days=1)
        assert ids_on(auditor_client.get(url, {"date_from": tomorrow})) == []

    def test_it_keeps_filters_in_the_paging_links(self, auditor_client):
        seed(60, target=KEYCLOAK)
        seed(5, target=OKTA)
        response = auditor_client.get(reverse("history"), {"q": "keycloak"})
        assert b"?q=keycloak&amp;before=" in response.content

    def test_it_shows_field_errors_for_bad_filters(self, auditor_client):
        response = auditor_client.get(
            reverse("history"), {"date_from": "2026-05-02", "date_to": "2026-05-01"}
        )
        assert response.status_code == 200
        assert b"The end date is before the start date." in response.content
        response = auditor_client.get(reverse("history"), {"target_id": "3"})
        assert b"Choose a target type" in response.content

    def test_it_shows_an_event_with_its_diff_side_by_side(self, auditor_client):
        event = audit.record(
            audit.Action.PROVIDER_CHANGED,
            target=OKTA,
            changes={"scopes": ["openid", "openid email"]},
            context={"note": "add email"},
        )
        response = auditor_client.get(reverse("history-event", args=[event.id]))
        assert response.status_code == 200
        html = response.content.decode()
        assert '<td class="before"><code>openid</code></td>' in html
        assert '<td class="after"><code>openid email</code></td>' in html
        assert event.hash in html
        assert "add email" in html

    def test_it_links_to_the_history_of_one_object(self, auditor_client):
        seed(1)
        response = auditor_client.get(reverse("history"))
        assert b'href="/history/?target_type=provider&amp;target_id=1"' in response.content

    def test_it_has_no_way_to_change_or_delete_events(self, admin_client):
        event = audit.record(audit.Action.PROVIDER_CREATED, target=OKTA)
        for url in (reverse("history"), reverse("history-event", args=[event.id])):
            assert admin_client.post(url).status_code == 405
            assert admin_client.delete(url).status_code == 405
        assert AuditEvent.objects.get().target_label == "Corporate Okta"


class TestVerifyButton:
    def test_it_reports_an_intact_chain(self, auditor_client):
        seed(4)
        response = auditor_client.get(reverse("history-verify"))
        assert b"Intact." in response.content
        assert b"All 4 events verify" in response.content

    def test_it_names_the_first_broken_event(self, admin_client, audit_triggers_disabled):
        seed(4)
        with audit_triggers_disabled() as cursor:
            cursor.execute("UPDATE console_auditevent SET action = 'logout' WHERE id = 2")
        response = admin_client.get(reverse("history-verify"))
        assert b"Broken." in response.content
        assert b"event #2" in response.content


def verify_export(path):
    return subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--jsonl", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_audit_starts_without_what_only_the_web_and_the_worker_use(tmp_path):
    """Starting is most of `verify_audit --since-checkpoint`'s time (docs/BENCHMARKS.md, P3):
    it loads no Celery app or tasks, no AWS SDK, no provider kinds and no URLs (the system
    checks would import every view)."""
    export = tmp_path / "history.jsonl"
    export.write_text("")
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "manage.py", "verify_audit", "--jsonl", str(export)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"django.db.models", "console.audit"} <= imported  # the listing is read right
    unwanted = {"sso_admin.celery", "console.tasks", "boto3", "console.kinds", "console.urls"}
    assert imported & unwanted == set()


class TestExports:
    def test_it_streams_10000_events_as_csv_that_parses_back(self, auditor_client):
        seed(10_000)
        response = auditor_client.get(reverse("history-export", args=["csv"]))
        assert response.status_code == 200
        assert response.streaming
        assert response["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert len(rows) == 10_001  # the export itself is recorded first
        by_id = {row["id"]: row for row in rows}
        stored = AuditEvent.objects.get(pk=5000)
        assert by_id["5000"]["hash"] == stored.hash
        assert json.loads(by_id["5000"]["changes"]) == {"n": [4999, 5000]}
        assert rows[-1]["action"] == "history.exported"

    def test_it_exports_json_lines_that_verify_offline(self, auditor_client, tmp_path):
        seed(10_000)
        response = auditor_client.get(reverse("history-export", args=["jsonl"]))
        assert response.streaming
        export = tmp_path / "audit.jsonl"
        export.write_bytes(b"".join(response.streaming_content))
        lines = export.read_text().splitlines()
        assert len(lines) == 10_001
        assert json.loads(lines[0])["id"] == 1

        result = verify_export(export)
        assert result.returncode == 0, result.stderr
        assert "10001 events verified" in result.stdout

        record = json.loads(lines[41])
        record["target_label"] = "Forged"
        lines[41] = json.dumps(record)
        export.write_text("\n".join(lines) + "\n")
        result = verify_export(export)
        assert result.returncode == 1
        assert "event #42" in result.stderr

    def test_it_exports_only_the_current_filter(self, auditor_client):
        seed(3, target=OKTA)
        seed(2, target=KEYCLOAK)
        response = auditor_client.get(reverse("history-export", args=["jsonl"]), {"q": "keycloak"})
        events = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
        assert [event["target_label"] for event in events] == ["Lab Keycloak"] * 2

    def test_it_records_who_exported_what(self, auditor_client, auditor_user):
        response = auditor_client.get(reverse("history-export", args=["csv"]), {"q": "okta"})
        b"".join(response.streaming_content)
        event = AuditEvent.objects.get(action="history.exported")
        assert event.actor_label == auditor_user.username
        assert event.context == {"format": "csv", "filters": {"q": "okta"}}

    def test_it_neutralises_spreadsheet_formulas_in_csv(self, auditor_client):
        audit.record(audit.Action.PROVIDER_CREATED, target=("provider", 9, "=HYPERLINK(1)"))
        response = auditor_client.get(reverse("history-export", args=["csv"]))
        rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
        assert rows[0]["target_label"] == "'=HYPERLINK(1)"


class TestAccountEvents:
    def test_a_local_login_is_recorded_with_ip(self, client, admin_user):
        client.post(
            reverse("login"),
            {"username": admin_user.username, "password": PASSWORD},
            REMOTE_ADDR="198.51.100.4",
        )
        event = AuditEvent.objects.get()
        assert event.action == "login.succeeded"  # no single sign-on yet: not break-glass
        assert (event.actor_type, event.actor_label) == ("user", "alice-admin")
        assert event.source_ip == "198.51.100.4"
        assert event.context == {"method": "local"}

    def test_a_failed_login_is_recorded_without_the_password(self, client, admin_user):
        client.post(
            reverse("login"),
            {"username": "alice-admin", "password": "wrong-password-canary"},
            REMOTE_ADDR="198.51.100.5",
        )
        event = AuditEvent.objects.get()
        assert event.action == "login.failed"
        assert (event.actor_type, event.actor_label) == ("anonymous", "alice-admin")
        assert event.source_ip == "198.51.100.5"
        assert "wrong-password-canary" not in str(AuditEvent.objects.values().get())

    def test_a_logout_is_recorded(self, admin_client):
        admin_client.post(reverse("logout"))
        event = AuditEvent.objects.get()
        assert (event.action, event.actor_label) == ("logout", "alice-admin")

    def test_the_bootstrap_admin_is_recorded(self):
        from django.core.management import call_command

        call_command("bootstrap_admin", stdout=io.StringIO())
        event = AuditEvent.objects.get()
        assert (event.action, event.actor_type, event.target_label) == (
            "user.created",
            "system",
            "admin",
        )
        assert event.changes == {"role": [None, "admin"], "password": ["[not set]", "[set]"]}
        assert event.context["reason"] == "bootstrap admin on an empty database"
