"""The pull API's state in process memory (console/pull_state.py) against a real Redis: polls
are answered without touching the database, and a change made by another process is served
at once, including when this process lost its subscription meanwhile."""

import logging
import os
import subprocess
import sys

import pytest
import redis
from django.db import connection
from django.urls import reverse

from console import instances, versions
from console.models import AuditEvent, ConfigVersion, Instance
from console.pull_state import LISTENER_NAME, pull_states
from tests.support import (
    ROOT,
    make_instance,
    port_open,
    require_component,
    subprocess_database_url,
    subprocess_environment,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)
REDIS_URL = "redis://127.0.0.1:6379/5"


def wait_until(condition, what, timeout=10):
    wait_for(condition, what, timeout, interval=0.02)


@pytest.fixture
def in_memory(settings):
    """Pull state kept in memory, subscribed to invalidations on a real Redis."""
    require_component(
        port_open("127.0.0.1", 6379),
        "Redis on 127.0.0.1:6379",
        "start it: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''",
    )
    settings.PULL_STATE_REDIS_URL = REDIS_URL
    settings.RATE_LIMIT_PULL_PER_INSTANCE = "100000/m"  # the tests poll until they see a change
    pull_states.get(0, lambda: None)  # starts this process's subscription
    wait_until(lambda: pull_states.trusted, "subscribing to invalidations")
    yield
    settings.PULL_STATE_REDIS_URL = ""
    pull_states.get(0, lambda: None)  # stops it


@pytest.fixture
def other_process(django_db_blocker):
    """Run Python in another console process (as another web process or a management command
    would), on the test database and the same Redis."""
    environment = {
        **subprocess_environment(),
        "DATABASE_URL": subprocess_database_url(django_db_blocker),
        "CACHE_URL": REDIS_URL,
    }

    def run(code):
        script = "import django; django.setup()\n" + code
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=environment,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    return run


@pytest.fixture
def fleet(keycloak_provider):
    lab, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    return {"lab": lab, "token": token, "url": reverse("api-pull-config", args=[lab.pk])}


def pull(client, fleet, token=None, etag=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token or fleet['token']}"}
    if etag:
        headers["HTTP_IF_NONE_MATCH"] = etag
    return client.get(fleet["url"], **headers)


def test_an_unchanged_poll_is_answered_without_the_database(
    in_memory, fleet, client, django_assert_num_queries
):
    first = pull(client, fleet)
    assert first.status_code == 200
    with django_assert_num_queries(0):
        again = pull(client, fleet, etag=first["ETag"])
        body = pull(client, fleet)
    assert again.status_code == 304
    assert body.content == first.content


def test_past_the_kept_bodies_each_instance_still_gets_its_own(
    in_memory, fleet, keycloak_provider, client, monkeypatch, django_assert_max_num_queries
):
    """Rendered answers are kept for the latest MAX_BODIES only: the others are rendered again,
    never taken from another instance (Keycloak: each has its own client id)."""
    from console import pull_state

    monkeypatch.setattr(pull_state, "MAX_BODIES", 2)
    lab2, token2 = make_instance(keycloak_provider, "lab2")
    versions.assign(lab2, versions.current_version(keycloak_provider))
    other = {"token": token2, "url": reverse("api-pull-config", args=[lab2.pk])}
    first, second = pull(client, fleet), pull(client, other)
    with django_assert_max_num_queries(0):  # instances in memory; bodies kept or rendered
        for _ in range(3):
            assert pull(client, fleet).content == first.content
            assert pull(client, other).content == second.content
    assert b"diffgram-lab\n" in first.content and b"diffgram-lab2\n" in second.content
    assert len(pull_states._bodies) <= 2


CHANGES = {
    "publish": (
        "from console import instances, versions; from console.models import Provider\n"
        "Provider.objects.update(client_id='diffgram-renamed')\n"
        "versions.publish(Provider.objects.get())"
    ),
    "rotate token": (
        "from console import instances, versions; from console.models import Instance\n"
        "print(instances.rotate_token(Instance.objects.get(name='lab'))[1])"
    ),
    "unassign provider": (
        "from console import instances, versions; from console.instance_forms import InstanceForm\n"
        "from console.models import Instance\n"
        "lab = Instance.objects.get(name='lab')\n"
        "form = InstanceForm(instance=lab, data={'name': 'lab', 'url_base': lab.url_base,\n"
        "    'shape': 'compose', 'rollout_group': 'default', 'push_target': 'none'})\n"
        "assert form.is_valid(), form.errors\n"
        "instances.update_instance(form)"
    ),
    "delete": "from console.models import Instance\nInstance.objects.get(name='lab').delete()",
    # A bulk update() sends no post_save: the instances' QuerySet announces it itself.
    "raw update": (
        "from console.models import Instance\n"
        "Instance.objects.filter(name='lab').update(name='lab2')"
    ),
}


SERVED = {
    "publish": lambda response: response.get("X-Config-Version") == "2",
    "rotate token": lambda response: response.status_code == 401,
    "unassign provider": lambda response: response.status_code == 404,
    "delete": lambda response: response.status_code == 401,
    "raw update": lambda response: b"diffgram-lab2" in response.content,
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_in_another_process_is_served_at_once(
    in_memory, fleet, client, other_process, change
):
    before = pull(client, fleet)
    assert pull(client, fleet, etag=before["ETag"]).status_code == 304  # served from memory
    assert not SERVED[change](before)
    new_token = other_process(CHANGES[change])
    # The other process announced the change when it committed; this one hears it in
    # milliseconds (the bound is generous for a loaded CI machine, far below MAX_AGE_SECONDS).
    wait_until(lambda: SERVED[change](pull(client, fleet)), f"serving the {change}", timeout=3)
    if change == "rotate token":
        assert pull(client, fleet, token=new_token).status_code == 200


def test_after_losing_redis_memory_is_cleared_before_it_is_trusted_again(in_memory, fleet, client):
    """Invalidations sent while this process was disconnected are lost: the memory it had
    then must not be used once it has subscribed again."""
    assert pull(client, fleet).status_code == 200
    server = redis.Redis.from_url(REDIS_URL)
    name = f"{LISTENER_NAME}-{os.getpid()}"
    (listener,) = [c for c in server.client_list(_type="pubsub") if c["name"] == name]
    server.client_kill_filter(_id=listener["id"])
    # A change nobody announces (as if its message was sent while disconnected).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE console_instance SET token_hash = %s WHERE id = %s", ["0" * 64, fleet["lab"].pk]
        )
    wait_until(
        lambda: (
            any(c["name"] == name for c in server.client_list(_type="pubsub"))
            and pull_states.trusted
        ),
        "subscribing again",
    )
    # redis-py may subscribe again by itself, keeping `trusted`; memory is cleared when the
    # confirmation is read, a moment later. Either way the stale token is refused within
    # seconds of subscribing again, not after the entries' MAX_AGE_SECONDS (10 minutes).
    wait_until(lambda: pull(client, fleet).status_code == 401, "the stale token refused")


def test_two_processes_note_the_first_pull_of_a_version_once(fleet):
    """Each web process holds its own copy of the instance; the database decides who notes
    the first pull of a version."""
    first_copy = Instance.objects.select_related("assigned_version").get(pk=fleet["lab"].pk)
    second_copy = Instance.objects.select_related("assigned_version").get(pk=fleet["lab"].pk)
    for copy in (first_copy, second_copy):
        instances.record_pull(copy, copy.assigned_version)
    assert AuditEvent.objects.filter(action="instance.pulled").count() == 1
    assert second_copy.last_pulled_version_number == 1


def test_past_the_memory_bound_instances_are_answered_from_the_database(
    in_memory, fleet, keycloak_provider, client, monkeypatch, django_assert_num_queries
):
    from console import pull_state

    monkeypatch.setattr(pull_state, "MAX_ENTRIES", 1)
    second, second_token = make_instance(keycloak_provider, "second")
    versions.publish(keycloak_provider)
    second_fleet = {"token": second_token, "url": reverse("api-pull-config", args=[second.pk])}
    assert pull(client, fleet).status_code == 200  # the one entry memory may hold
    assert pull(client, second_fleet).status_code == 200
    with django_assert_num_queries(0):
        assert pull(client, fleet).status_code == 200
    with django_assert_num_queries(1):
        assert pull(client, second_fleet).status_code == 200


def test_a_cold_poll_reads_the_next_instances_of_the_fleet_with_it(
    in_memory, fleet, keycloak_provider, client, monkeypatch, django_assert_num_queries
):
    """A new web process holds a fleet after a few cold polls, not one per instance."""
    from console import pull_state

    monkeypatch.setattr(pull_state, "LOAD_BATCH", 2)
    others = [make_instance(keycloak_provider, f"lab{n}") for n in (2, 3, 4)]
    versions.publish(keycloak_provider)
    polls = [(reverse("api-pull-config", args=[i.pk]), token) for i, token in others]
    for url, token in polls:  # each notes its first pull of the version (a write)
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    pull_states.drop()  # as in a web process just started
    assert pull(client, fleet).status_code == 200  # reads lab, and the next two after id 0
    with django_assert_num_queries(0):
        for url, token in polls[:1]:
            assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert pull_states.size == 2
    for url, token in polls[1:]:  # each cold poll reads the next batch, then it starts again
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert pull_states.size == 4
    with django_assert_num_queries(0):
        for url, token in polls:
            assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_entries_past_their_age_are_read_again_a_batch_at_a_time(
    in_memory, fleet, keycloak_provider, client, django_assert_num_queries
):
    """The bound on staleness holds for the whole fleet: a token changed with no announcement
    (as if its publisher could not reach Redis) is refused once the entries are older than
    MAX_AGE_SECONDS, and the first cold poll renews the others with it."""
    from console import pull_state

    other, other_token = make_instance(keycloak_provider, "other")
    versions.publish(keycloak_provider)
    other_url = reverse("api-pull-config", args=[other.pk])
    assert client.get(other_url, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 200
    pull_states.drop()
    assert pull(client, fleet).status_code == 200
    with django_assert_num_queries(0):
        assert client.get(other_url, HTTP_AUTHORIZATION=f"Bearer {other_token}").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE console_instance SET token_hash = %s WHERE id = %s", ["0" * 64, other.pk]
        )
    for state in pull_states._entries.values():  # the clock moves on past the bound
        state.loaded_at -= pull_state.MAX_AGE_SECONDS
    assert pull(client, fleet).status_code == 200  # read again, with the rest of the fleet
    with django_assert_num_queries(0):
        refused = client.get(other_url, HTTP_AUTHORIZATION=f"Bearer {other_token}")
    assert refused.status_code == 401


def test_with_redis_unreachable_pulls_read_the_database_and_it_warns_once(
    settings, fleet, client, caplog, django_assert_num_queries, monkeypatch
):
    caplog.set_level(logging.WARNING, logger="console.pull_state")
    attempts = []
    connect = redis.Redis.from_url

    def counted(*args, **kwargs):
        attempts.append(1)
        return connect(*args, **kwargs)

    monkeypatch.setattr(redis.Redis, "from_url", counted)
    settings.PULL_STATE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        assert pull(client, fleet).status_code == 200  # notes the first pull of the version
        # The listener fails to connect, and again a second later, ...
        wait_until(lambda: len(attempts) >= 3, "three attempts to subscribe")
        for _ in range(3):
            with django_assert_num_queries(1):  # the instance, read from the database
                assert pull(client, fleet).status_code == 200
        assert not pull_states.trusted
        warnings = [r.getMessage() for r in caplog.records if r.name == "console.pull_state"]
        assert len(warnings) == 1, warnings
        assert "pulls read the database until it is back" in warnings[0]
    finally:
        settings.PULL_STATE_REDIS_URL = ""
        pull_states.get(0, lambda: None)  # stops the listener


def test_a_version_id_handed_out_again_is_never_answered_from_a_copy_still_alive(
    keycloak_provider,
):
    """SQLite gives a rolled-back insert's id to the next one. A copy of the first version
    still alive in this process (a request that has not been collected yet) must not answer
    for the second: the shared copies are keyed by what a version is, not by its id alone."""
    from console.pull_state import PullStates

    states = PullStates()
    lab, _ = make_instance(keycloak_provider, "lab")
    first = versions.publish(keycloak_provider)

    def loaded(version):
        instance = Instance.objects.get(pk=lab.pk)
        instance.assigned_version = version
        return instance

    kept_alive = states.get(lab.pk, lambda: loaded(first)).instance.assigned_version
    reused = ConfigVersion(
        pk=first.pk, provider_id=first.provider_id, number=first.number + 1,
        settings={**first.settings, "OAUTH2_PROVIDER_CLIENT_ID": "another-client"},
        content_hash="another-content",
    )  # fmt: skip
    served = states.get(lab.pk, lambda: loaded(reused)).instance.assigned_version
    assert served is reused and served is not kept_alive
    assert served.settings["OAUTH2_PROVIDER_CLIENT_ID"] == "another-client"
