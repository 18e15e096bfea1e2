"""A fleet of any size in the database, fast: one provider (bench/common.py, PROVIDER_SEED),
one published version, and instances written in bulk in the states a large fleet is in.
Import after django.setup(), with the benchmark settings (bench/common.py, environment()).

seed(count, tokens_path) writes "<id> <token> <ETag of the env format>" per instance when a
path is given (bench/memory.py and bench/pull.py poll with them). Signals are not sent (bulk
writes): run it before any web process starts."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from console import versions
from console.api import pull
from console.instances import PULL_NOTED_EVERY_SECONDS
from console.models import Instance, Provider, PushRequest

CHUNK = 5000
# Out of every 100 instances: what a large, mostly healthy fleet looks like.
SHARES = {"in_sync": 88, "drifting": 4, "failing": 2, "not_pulling": 2, "unassigned": 4}


def seed(count, tokens_path=None):
    provider = Provider.objects.get()
    now = timezone.now()
    first = Instance(name="i0", url_base="https://i0.example.test/", provider=provider)
    tokens = {0: first.new_token()}
    first.new_signing_secret()
    secret_ciphertext = first.signing_secret_encrypted  # one, shared: the bench never pushes
    first.save()
    version = versions.publish(provider)  # the fleet's version, published once
    states = [state for state, share in SHARES.items() for _ in range(share)]
    for start in range(1, count, CHUNK):
        batch = []
        for number in range(start, min(start + CHUNK, count)):
            state = states[number % len(states)]
            instance = Instance(
                name=f"i{number}",
                url_base=f"https://i{number}.example.test/",
                rollout_group=("canary", "default", "late")[number % 3],
                provider=provider,
                signing_secret_encrypted=secret_ciphertext,
                **_state_fields(state, version, now, number),
            )
            tokens[number] = instance.new_token()
            batch.append(instance)
        with transaction.atomic():
            Instance.objects.bulk_create(batch)
            PushRequest.objects.bulk_create(
                PushRequest(
                    instance=instance, version=version, due_at=now, completed_at=now,
                    state="failed" if instance.applied_status == "error" else "succeeded",
                    attempts=1,
                )
                for instance in batch[::10]  # a tenth are pushed to
            )  # fmt: skip
    if tokens_path:
        with open(tokens_path, "w") as out:
            for instance in Instance.objects.select_related("assigned_version").iterator():
                number = int(instance.name[1:])
                if instance.assigned_version is None:
                    continue
                etag = pull._etag(instance, instance.assigned_version, "env")
                out.write(f"{instance.pk} {tokens[number]} {etag}\n")
    return count


def _state_fields(state, version, now, number):
    if state == "unassigned":
        return {}
    # Noted at moments spread over the noting interval, as in a fleet that polls all day: the
    # polls that note again (a write each) then come at a steady count / interval a second,
    # not all at once.
    noted_at = now - timedelta(seconds=number % PULL_NOTED_EVERY_SECONDS)
    fields = {
        "assigned_version": version,
        "assignment_sequence": 1,
        "assigned_at": now - timedelta(hours=2),
        "applied_version_number": version.number,
        "applied_status": "ok",
        "applied_at": now - timedelta(hours=1),
        "verified_version_number": version.number,
        "verify_ok": True,
        "verify_kind": "signin",
        "last_pull_at": noted_at,
        "last_pulled_version_number": version.number,
    }
    if state == "drifting":
        fields.update(applied_version_number=None, applied_status="")
    elif state == "failing":
        fields.update(applied_status="error", applied_detail="cannot write .env: disk full")
    elif state == "not_pulling":
        fields.update(last_pull_at=now - timedelta(days=1))
    return fields
