"""The audit history: append-only, hash-chained, verifiable."""

import datetime
import hashlib
import json
import threading

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from console import audit
from console.models import AuditChainHead, AuditEvent
from tests.support import PROVIDER, write_events

CANARY = "canary-SECRET-7f3a9c"


def verify_command():
    """Run `manage.py verify_audit`; return (exit code, output)."""
    from io import StringIO

    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


@pytest.mark.django_db
class TestWriter:
    def test_it_records_actor_ip_target_and_changes(self, rf, admin_user):
        request = rf.post("/providers/7/", REMOTE_ADDR="203.0.113.9")
        request.user = admin_user
        event = audit.record(
            audit.Action.PROVIDER_CHANGED,
            request=request,
            target=PROVIDER,
            changes=audit.field_changes({"scopes": "openid"}, {"scopes": "openid email"}),
            context={"note": "add email"},
        )
        stored = AuditEvent.objects.get(pk=event.pk)
        assert (stored.actor_type, stored.actor_id, stored.actor_label) == (
            "user",
            str(admin_user.pk),
            "alice-admin",
        )
        assert stored.source_ip == "203.0.113.9"
        assert (stored.target_type, stored.target_id, stored.target_label) == (
            "provider",
            "7",
            "Corporate Okta",
        )
        assert stored.changes == {"scopes": ["openid", "openid email"]}
        assert stored.context == {"note": "add email"}
        assert stored.created_at.utcoffset().total_seconds() == 0

    def test_an_events_hash_is_sha256_over_its_fields_as_canonical_json(self):
        """What an auditor's own tool recomputes from an export (verify_audit --jsonl):
        sorted keys, no whitespace, non-ASCII escaped, the request id only when there is one."""
        event = audit.record(
            audit.Action.PROVIDER_CHANGED, target=("provider", 7, "Entra ID – Zürich"),
            context={"b": [1, 2.5, None], "a": {"z": "ünïcode", "y": True}},
        )  # fmt: skip
        fields = event.hashed_fields()
        if not fields["request_id"]:
            del fields["request_id"]
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        assert '"target_label":"Entra ID \\u2013 Z\\u00fcrich"' in canonical
        assert event.hash == hashlib.sha256(canonical.encode()).hexdigest()
        assert AuditEvent.objects.get(pk=event.pk).hash == event.hash

    def test_it_records_system_events_without_a_request(self):
        event = audit.record(audit.Action.ENCRYPTION_KEYS_ROTATED, context={"secrets": 3})
        assert (event.actor_type, event.actor_label, event.source_ip) == ("system", "system", None)

    def test_it_uses_the_proxy_hop_only_behind_a_reverse_proxy(self, rf, admin_user, settings):
        request = rf.get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7")
        request.user = admin_user
        assert audit.record(audit.Action.LOGOUT, request=request).source_ip == "10.0.0.5"
        settings.BEHIND_REVERSE_PROXY = True
        assert audit.record(audit.Action.LOGOUT, request=request).source_ip == "198.51.100.7"

    def test_it_never_stores_secret_values(self):
        changes = audit.field_changes(
            {"client_secret": "", "master_password": CANARY, "name": "a"},
            {"client_secret": CANARY, "master_password": "", "name": "b"},
            secret_fields={"client_secret", "master_password"},
        )
        assert changes == {
            "client_secret": ["[not set]", "[changed]"],
            "master_password": ["[set]", "[cleared]"],
            "name": ["a", "b"],
        }
        event = audit.record(audit.Action.PROVIDER_CHANGED, target=PROVIDER, changes=changes)
        assert CANARY not in str(AuditEvent.objects.filter(pk=event.pk).values().get())

    def test_it_chains_each_event_to_the_one_before(self):
        first = audit.record(audit.Action.PROVIDER_CREATED, target=PROVIDER)
        second = audit.record(audit.Action.PROVIDER_CHANGED, target=PROVIDER)
        assert first.prev_hash == "0" * 64
        assert second.prev_hash == first.hash
        assert second.id == first.id + 1
        assert AuditChainHead.objects.get().last_hash == second.hash
        assert audit.verify_chain().ok

    def test_it_verifies_events_whatever_their_timestamps_microseconds(self):
        """The database renders the timestamps that verification hashes; those with no or few
        microseconds must read as Python wrote them when hashing."""
        moments = [
            datetime.datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=datetime.UTC)
            for micro in (0, 120000, 5, 999999)
        ]
        audit.record_many(
            {"action": audit.Action.PROVIDER_CHANGED, "target": PROVIDER, "created_at": moment}
            for moment in moments
        )
        assert audit.verify_chain(processes=1) == audit.ChainReport(
            True, 4, last=(4, AuditEvent.objects.get(pk=4).hash)
        )

    def test_it_refuses_updates_and_deletes_through_the_model(self):
        event = audit.record(audit.Action.PROVIDER_CREATED, target=PROVIDER)
        event.target_label = "something else"
        with pytest.raises(ValueError, match="append-only"):
            event.save()
        with pytest.raises(ValueError, match="append-only"):
            event.delete()
        assert AuditEvent.objects.get(pk=event.pk).target_label == "Corporate Okta"

    @pytest.mark.parametrize(
        "sql",
        [
            "UPDATE console_auditevent SET target_label = 'forged'",
            "DELETE FROM console_auditevent",
        ],
    )
    def test_the_database_refuses_raw_updates_and_deletes(self, sql):
        audit.record(audit.Action.PROVIDER_CREATED, target=PROVIDER)
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql)
        assert AuditEvent.objects.get().target_label == "Corporate Okta"

    def test_it_refuses_an_action_outside_the_vocabulary(self):
        with pytest.raises(ValueError):
            audit.record("provider.renamed_by_magic")
        assert not AuditEvent.objects.exists()


@pytest.mark.django_db
class TestTampering:
    def test_verify_audit_passes_on_an_intact_chain(self):
        write_events(5)
        code, output = verify_command()
        assert code == 0
        assert "intact: 5 events" in output

    def test_it_names_a_changed_event(self, audit_triggers_disabled):
        write_events(5)
        with audit_triggers_disabled() as cursor:
            cursor.execute("UPDATE console_auditevent SET target_label = 'Evil IdP' WHERE id = 3")
        code, output = verify_command()
        assert code == 1
        assert "event #3" in output and "changed" in output

    def test_it_names_a_changed_hash_as_well(self, audit_triggers_disabled):
        """Recomputing the changed event's own hash still breaks the link to the next one."""
        write_events(5)
        forged = AuditEvent.objects.get(pk=3)
        forged.target_label = "Evil IdP"
        new_hash = forged.compute_hash()
        with audit_triggers_disabled() as cursor:
            cursor.execute(
                "UPDATE console_auditevent SET target_label = %s, hash = %s WHERE id = 3",
                ["Evil IdP", new_hash],
            )
        code, output = verify_command()
        assert code == 1
        assert "event #4" in output and "does not follow" in output

    def test_it_names_a_removed_event(self, audit_triggers_disabled):
        write_events(5)
        with audit_triggers_disabled() as cursor:
            cursor.execute("DELETE FROM console_auditevent WHERE id = 2")
        code, output = verify_command()
        assert code == 1
        assert "event #2" in output and "removed" in output

    def test_it_names_the_removal_of_the_newest_events(self, audit_triggers_disabled):
        write_events(5)
        with audit_triggers_disabled() as cursor:
            cursor.execute("DELETE FROM console_auditevent WHERE id >= 4")
        code, output = verify_command()
        assert code == 1
        assert "event #4" in output and "removed" in output

    def test_it_names_swapped_events(self, audit_triggers_disabled):
        write_events(5)
        with audit_triggers_disabled() as cursor:
            # Swap ids 2 and 4 (through a free id), i.e. reorder two events.
            cursor.execute("UPDATE console_auditevent SET id = 1000 WHERE id = 2")
            cursor.execute("UPDATE console_auditevent SET id = 2 WHERE id = 4")
            cursor.execute("UPDATE console_auditevent SET id = 4 WHERE id = 1000")
        code, output = verify_command()
        assert code == 1
        assert "event #2" in output


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    errors = []

    def writer():
        try:
            write_events(10)
        except Exception as error:  # reported below; a thread must not die silently
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    report = audit.verify_chain()
    assert report.ok, str(report)
    assert report.checked == 40
    assert AuditEvent.objects.values("prev_hash").distinct().count() == 40  # no two share a parent
