"""Audit checkpoints (console/audit_anchor.py) and `manage.py verify_audit`: the chain anchored
outside the database, so that truncation or a recomputed chain shows, and the checkpoints
chained among themselves, so that replaying, reordering or emptying them shows too."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from console import audit as audit_module
from console.models import AuditEvent
from tests.support import write_events

pytestmark = pytest.mark.django_db


def verify_audit(*args):
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY = "audit-signing-key-kept-elsewhere"
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "audit-checkpoints.jsonl")
    return tmp_path / "audit-checkpoints.jsonl"


def rewrite_the_chain_from(cursor, first_id):
    """What someone with database access does to hide it: recompute every hash from an event
    on, and the chain head, so that the chain alone verifies again."""
    from console.models import AuditChainHead, compute_event_hash

    previous = AuditEvent.objects.filter(id__lt=first_id).order_by("-id").first()
    previous_hash = previous.hash if previous else audit_module.GENESIS_HASH
    for event in AuditEvent.objects.filter(id__gte=first_id).order_by("id"):
        event.prev_hash = previous_hash
        fields = event.hashed_fields()
        new_hash = compute_event_hash(fields)
        cursor.execute(
            "UPDATE console_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
            [previous_hash, new_hash, event.id],
        )
        previous_hash = new_hash
    last = AuditEvent.objects.order_by("-id").first()
    AuditChainHead.objects.filter(pk=1).update(last_id=last.id, last_hash=previous_hash)


class TestAnchoredHistory:
    def test_truncation_with_a_rewritten_head_is_caught_by_the_checkpoint(
        self, checkpoints, audit_triggers_disabled
    ):
        write_events(6)
        call_command("audit_checkpoint", stdout=StringIO())
        assert json.loads(checkpoints.read_text())["event_id"] == 6
        with audit_triggers_disabled() as cursor:
            cursor.execute("DELETE FROM console_auditevent WHERE id >= 5")
            rewrite_the_chain_from(cursor, 1)
        assert audit_module.verify_chain().ok  # the chain alone is fooled...
        code, output = verify_audit()
        assert code == 1  # ...the checkpoint is not
        assert "event #6" in output and "the history was truncated" in output

    def test_a_recomputed_chain_is_caught_as_rewritten(self, checkpoints, audit_triggers_disabled):
        write_events(6)
        call_command("audit_checkpoint", stdout=StringIO())
        with audit_triggers_disabled() as cursor:
            cursor.execute(
                "UPDATE console_auditevent SET target_label = 'Nothing to see' WHERE id = 2"
            )
            rewrite_the_chain_from(cursor, 2)
        code, output = verify_audit()
        assert code == 1 and "has another hash now: the history was rewritten" in output

    def test_a_forged_checkpoint_is_refused(self, checkpoints):
        write_events(3)
        call_command("audit_checkpoint", stdout=StringIO())
        line = json.loads(checkpoints.read_text())
        checkpoints.write_text(json.dumps({**line, "count": 2}) + "\n")
        code, output = verify_audit()
        assert code == 1 and "damaged or not signed with this key" in output

    def test_verification_since_the_newest_checkpoint_reads_only_newer_events(self, checkpoints):
        write_events(8)
        call_command("audit_checkpoint", stdout=StringIO())
        write_events(3)
        code, output = verify_audit("--since-checkpoint")
        assert code == 0, output
        assert "intact after checkpoint #8: 3 newer events verified" in output
        assert "Matches the newest signed checkpoint." in output

    def test_an_event_removed_before_a_checkpoint_is_caught_without_reading_the_chain(
        self, checkpoints, audit_triggers_disabled
    ):
        """--since-checkpoint hashes only newer events; removing an older one still shows,
        against each anchored checkpoint after it and only those."""
        for _ in range(3):
            write_events(4)
            call_command("audit_checkpoint", stdout=StringIO())  # at #4, #8 and #12
        write_events(2)
        with audit_triggers_disabled() as cursor:
            cursor.execute("DELETE FROM console_auditevent WHERE id = 6")
        code, output = verify_audit("--since-checkpoint")
        assert code == 1
        assert "the events up to event #8 " in output and "the events up to event #12 " in output
        assert "event #4 " not in output

    def test_checkpoints_go_to_s3_too(self, moto, settings, checkpoints):
        import boto3

        boto3.client("s3", region_name="eu-west-1", endpoint_url=moto).create_bucket(
            Bucket="audit", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        settings.AUDIT_CHECKPOINT_S3 = "s3://audit/diffgram-sso/"
        write_events(4)
        call_command("audit_checkpoint", stdout=StringIO())
        settings.AUDIT_CHECKPOINT_FILE = ""  # only S3 now
        assert verify_audit()[0] == 0
        objects = boto3.client("s3", endpoint_url=moto).list_objects_v2(Bucket="audit")
        assert objects["Contents"][0]["Key"] == "diffgram-sso/seq-000000000000001.json"

    def test_the_history_page_shows_the_comparison(self, auditor_client, checkpoints):
        write_events(2)
        call_command("audit_checkpoint", stdout=StringIO())
        page = auditor_client.get(reverse("history-verify")).content.decode()
        assert "Matches the newest signed checkpoint." in page


class TestChainedCheckpoints:
    def test_an_old_checkpoint_replayed_cannot_hide_a_truncation(
        self, checkpoints, audit_triggers_disabled
    ):
        """Appending an old, genuine checkpoint line several times made the newest ones fall out
        of the five compared, and a truncation of what they anchored passed."""
        write_events(3)
        call_command("audit_checkpoint", stdout=StringIO())
        old = checkpoints.read_text()
        write_events(4)
        call_command("audit_checkpoint", stdout=StringIO())
        with audit_triggers_disabled() as cursor:
            cursor.execute("DELETE FROM console_auditevent WHERE id > 3")
            rewrite_the_chain_from(cursor, 1)
        with checkpoints.open("a") as sink:
            sink.write(old * 6)
        code, output = verify_audit()
        assert code == 1, output
        assert "checkpoint 1 (event #3)" in output and "were replayed, reordered" in output

    def test_checkpoints_taken_out_or_reordered_are_found(self, checkpoints):
        for _ in range(3):
            write_events(1)
            call_command("audit_checkpoint", stdout=StringIO())
        first, second, third = checkpoints.read_text().splitlines(keepends=True)
        assert [json.loads(line)["sequence"] for line in (first, second, third)] == [1, 2, 3]
        checkpoints.write_text(first + third)
        assert "expected checkpoint 2" in verify_audit()[1]
        checkpoints.write_text(first + third + second)
        code, output = verify_audit()
        assert code == 1 and "checkpoint 3 (event #3)" in output

    def test_an_empty_or_missing_sink_fails_once_events_should_be_anchored(
        self, checkpoints, settings, monkeypatch
    ):
        settings.AUDIT_CHECKPOINT_MINUTES = 15
        write_events(2)
        code, output = verify_audit()
        assert code == 0 and "No audit checkpoints to compare with yet." in output  # too new
        later = timezone.now() + timedelta(minutes=31)  # two checkpoints should exist by then
        monkeypatch.setattr(timezone, "now", lambda: later)
        code, output = verify_audit()  # no file at all
        assert code == 1 and "holds no checkpoint, although events from" in output
        checkpoints.write_text("")
        assert verify_audit()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_the_parallel_verification_finds_what_the_serial_one_finds(audit_triggers_disabled):
    write_events(40)
    serial = audit_module.verify_chain(processes=1)
    parallel = audit_module.verify_chain(processes=2, parallel_from=1)
    assert serial.ok and parallel.ok and serial.checked == parallel.checked == 40
    with audit_triggers_disabled() as cursor:
        cursor.execute("UPDATE console_auditevent SET target_label = 'x' WHERE id = 23")
    broken = audit_module.verify_chain(processes=2, parallel_from=1)
    assert (broken.ok, broken.first_bad_id) == (False, 23)
    assert "changed" in broken.problem
    with audit_triggers_disabled() as cursor:
        cursor.execute("DELETE FROM console_auditevent WHERE id >= 39")
    truncated = audit_module.verify_chain(processes=2, parallel_from=1)
    assert truncated.first_bad_id == 23  # the first problem still comes first
