"""The pull API over real HTTP against the live server, and the agent's pull command."""

import json
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from console import versions
from console.models import AuditEvent, Instance
from tests.support import AgentProcess, api_error, make_instance

pytestmark = pytest.mark.django_db(transaction=True)


def call(url, token=None, method="GET", body=None, headers=None):
    request = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def published(live_server, keycloak_provider):
    lab, token = make_instance(keycloak_provider, "lab")
    other, other_token = make_instance(keycloak_provider, "other")
    version = versions.publish(keycloak_provider)
    base = f"{live_server.url}/api/v1/instances/{lab.pk}"
    return {
        "lab": lab,
        "token": token,
        "other_token": other_token,
        "version": version,
        "base": base,
    }


def test_it_serves_env_json_and_helm_with_etag_and_version(published):
    base, token = published["base"], published["token"]
    status, headers, body = call(f"{base}/config?format=env", token)
    assert status == 200
    assert headers["X-Config-Version"] == "1"
    assert headers["ETag"].startswith('"') and headers["ETag"].endswith('.env"')
    text = body.decode()
    assert "OAUTH2_PROVIDER_HOST=http://127.0.0.1:" in text
    assert "KEY_CLOAK_MASTER_PASSWORD=kc-master-canary" in text  # owner only
    assert "OAUTH2_PROVIDER_CLIENT_ID=diffgram-lab" in text  # its own Keycloak client

    status, _, body = call(f"{base}/config?format=json", token)
    document = json.loads(body)
    assert (document["instance"], document["version"]) == ("lab", 1)
    assert document["settings"]["KEYCLOAK_REALM"] == "diffgram-realm"

    status, headers, body = call(f"{base}/config?format=helm", token)
    assert b"diffgramSecrets:" in body and b"USE_OAUTH2: '\"True\"'" in body


def test_if_none_match_gives_304_without_body(published):
    base, token = published["base"], published["token"]
    _, headers, _ = call(f"{base}/config", token)
    status, again, body = call(f"{base}/config", token, headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    assert again["ETag"] == headers["ETag"]


@pytest.mark.parametrize("which", ["none", "garbage", "other", "lowercase-bearer"])
def test_every_bad_token_gets_the_same_401(published, which):
    token = {
        "none": None,
        "garbage": "dgi_not-a-real-token",
        "other": published["other_token"],  # a valid token, of another instance
        "lowercase-bearer": None,
    }[which]
    headers = {"Authorization": f"bearer {published['token']}"} if which.startswith("lower") else {}
    status, response_headers, body = call(f"{published['base']}/config", token, headers=headers)
    assert status == 401
    assert api_error(json.loads(body)) == {
        "error": "Missing or invalid instance token.", "code": "unauthenticated",
    }  # fmt: skip
    assert response_headers["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_instance_looks_like_a_bad_token(published, live_server):
    status, _, body = call(f"{live_server.url}/api/v1/instances/99999/config", published["token"])
    assert status == 401
    assert api_error(json.loads(body)) == {
        "error": "Missing or invalid instance token.", "code": "unauthenticated",
    }  # fmt: skip


def test_unknown_format_is_400_and_no_version_is_404(published, keycloak_provider, live_server):
    status, _, body = call(f"{published['base']}/config?format=xml", published["token"])
    assert status == 400 and "use env, json or helm" in json.loads(body)["error"]
    fresh, token = make_instance(None, "fresh")
    status, _, body = call(f"{live_server.url}/api/v1/instances/{fresh.pk}/config", token)
    assert status == 404
    assert json.loads(body)["error"] == "No configuration has been published to this instance yet."


def test_the_first_pull_of_a_version_is_audited_once(published):
    for _ in range(3):
        call(f"{published['base']}/config", published["token"])
    pulls = AuditEvent.objects.filter(action="instance.pulled")
    assert pulls.count() == 1
    assert (pulls.get().actor_type, pulls.get().actor_label) == ("instance", "lab")
    lab = Instance.objects.get(name="lab")
    assert lab.last_pull_at is not None and lab.last_pulled_version_number == 1


def test_later_polls_are_noted_together_and_within_seconds(keycloak_provider, client, monkeypatch):
    """The fleet page's "last pull" stays true within PULL_NOTED_EVERY_SECONDS plus a few
    seconds, while a large fleet's polls cost one write per NOTES_PER_WRITE instances."""
    from console import instances

    monkeypatch.setattr(instances, "NOTES_PER_WRITE", 3)
    fleet = [make_instance(keycloak_provider, f"lab{n}") for n in range(4)]
    versions.publish(keycloak_provider)

    def poll(instance, token):
        url = reverse("api-pull-config", args=[instance.pk])
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200

    for instance, token in fleet:
        poll(instance, token)  # the first pull of the version: noted at once, and audited
    long_ago = timezone.now() - timedelta(hours=2)
    Instance.objects.update(last_pull_at=long_ago)

    def noted():
        return {i.name for i in Instance.objects.all() if i.last_pull_at > long_ago}

    poll(*fleet[0])
    poll(*fleet[1])
    assert noted() == set()  # waiting for a batch
    poll(*fleet[2])
    assert noted() == {"lab0", "lab1", "lab2"}  # one write for the three
    poll(*fleet[3])
    assert noted() == {"lab0", "lab1", "lab2"}
    instances.pull_notes._since -= instances.NOTES_WRITTEN_WITHIN_SECONDS  # the clock moves on
    poll(*fleet[0])  # any poll writes what has waited that long
    assert noted() == {"lab0", "lab1", "lab2", "lab3"}
    assert AuditEvent.objects.filter(action="instance.pulled").count() == 4  # first pulls only


def test_applied_reports_are_recorded_and_validated(published):
    url = f"{published['base']}/applied"
    headers = {"Content-Type": "application/json"}
    body = json.dumps({"version": 1, "status": "ok", "detail": ""}).encode()
    status, _, answer = call(url, published["token"], "POST", body, headers)
    assert status == 200 and json.loads(answer)["recorded"] is True
    lab = Instance.objects.get(name="lab")
    assert (lab.applied_version_number, lab.applied_status) == (1, "ok")
    assert lab.in_sync
    assert AuditEvent.objects.filter(action="instance.applied", actor_label="lab").exists()

    bad = json.dumps({"version": "one", "status": "maybe"}).encode()
    status, _, answer = call(url, published["token"], "POST", bad, headers)
    assert status == 400
    assert set(json.loads(answer)["fields"]) == {"version", "status"}
    status, _, answer = call(url, published["token"], "POST", b"not json", headers)
    assert status == 400 and json.loads(answer)["error"] == "The body must be JSON."
    status, _, _ = call(url, published["other_token"], "POST", body, headers)
    assert status == 401

    error_report = json.dumps({"version": 1, "status": "error", "detail": "disk full"}).encode()
    call(url, published["token"], "POST", error_report, headers)
    event = AuditEvent.objects.filter(action="instance.apply_failed").get()
    assert event.context == {"version": 1, "detail": "disk full"}


def test_the_agent_pulls_writes_the_env_file_and_acknowledges(published, live_server, tmp_path):
    agent = AgentProcess(tmp_path, published["lab"], published["token"], live_server.url)
    agent.env_file.write_text("# my Diffgram\nPOSTGRES_PASSWORD='keep me'\n")
    agent.env_file.chmod(0o640)
    result = agent.pull()
    assert result.returncode == 0, result.stderr
    values = agent.env()
    assert values["POSTGRES_PASSWORD"] == "keep me"
    assert values["OAUTH2_PROVIDER_NAME"] == "keycloak"
    assert values["KEY_CLOAK_MASTER_PASSWORD"] == "kc-master-canary"
    assert agent.env_file.read_text().startswith("# my Diffgram\n")
    # It holds Keycloak's passwords now: readable by its owner only, and the operator is told.
    assert oct(agent.env_file.stat().st_mode & 0o777) == "0o600"
    assert "was readable by others (mode 640)" in result.stdout
    state = agent.env_file.with_name(".env.sso-state.json")
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    lab = Instance.objects.get(name="lab")
    assert (lab.applied_version_number, lab.applied_status) == (1, "ok")

    before = agent.env_file.stat().st_mtime_ns
    again = agent.pull()  # ETag: 304, nothing rewritten
    assert again.returncode == 0
    assert agent.env_file.stat().st_mtime_ns == before
    assert AuditEvent.objects.filter(action="instance.applied").count() == 1


def test_the_agent_exits_non_zero_with_a_clear_message(published, live_server, tmp_path):
    agent = AgentProcess(tmp_path, published["lab"], "dgi_wrong", live_server.url)
    result = agent.pull()
    assert result.returncode == 1
    assert "the console answered HTTP 401: Missing or invalid instance token." in result.stderr
    assert not agent.env_file.exists()


def test_the_agent_runs_on_change_only_when_the_file_changed(published, live_server, tmp_path):
    agent = AgentProcess(tmp_path, published["lab"], published["token"], live_server.url)
    marker = tmp_path / "restarted"
    command = f"echo restarted >> {marker}"
    assert agent.pull("--on-change", command).returncode == 0
    assert marker.read_text() == "restarted\n"
    assert agent.pull("--on-change", command).returncode == 0  # 304: nothing to restart
    assert marker.read_text() == "restarted\n"


def test_a_new_version_is_served_at_once_despite_the_cache(published, keycloak_provider):
    base, token = published["base"], published["token"]
    _, first, _ = call(f"{base}/config", token)
    keycloak_provider.client_id = "diffgram-v2-{instance}"
    keycloak_provider.save()
    versions.publish(keycloak_provider)
    status, second, body = call(f"{base}/config", token, headers={"If-None-Match": first["ETag"]})
    assert status == 200 and second["X-Config-Version"] == "2"
    assert "OAUTH2_PROVIDER_CLIENT_ID=diffgram-v2-lab" in body.decode()


def test_a_bad_token_gets_401_not_500_while_the_cache_is_down(client, keycloak_provider, settings):
    from console import versions

    instance, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    url = reverse("api-pull-config", args=[instance.pk])
    assert client.get(url, HTTP_AUTHORIZATION="Bearer dgi_wrong").status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


# --- served by the console's WSGI application (sso_admin/wsgi.py) --------------------------------


def through_wsgi(path, **headers):
    """(status, headers, body) from the application gunicorn serves, as a fleet's poll gets it."""
    from django.test import RequestFactory

    from sso_admin.wsgi import application

    answer = {}

    def start_response(status, response_headers, exc_info=None):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(response_headers)

    body = b"".join(application(RequestFactory().get(path, **headers).environ, start_response))
    return answer["status"], answer["headers"], body


@pytest.mark.django_db(
    transaction=True
)  # Django's handler closes a connection left in a transaction
def test_polls_get_the_same_answer_from_the_lean_stack_and_pages_the_full_one(
    keycloak_provider, client
):
    """(Counted in the latency metric too: tests/test_operations.py, through gunicorn.)"""
    lab, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    url = reverse("api-pull-config", args=[lab.pk])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    full = client.get(url, **auth)
    status, headers, body = through_wsgi(url, **auth)
    assert (status, body, headers["ETag"]) == (200, full.content, full["ETag"])
    assert headers["X-Request-ID"] and headers["X-Content-Type-Options"] == "nosniff"
    assert "Set-Cookie" not in headers and "Content-Security-Policy" not in headers
    assert through_wsgi(url, HTTP_IF_NONE_MATCH=full["ETag"], **auth)[0] == 304
    status, headers, body = through_wsgi(url, HTTP_AUTHORIZATION="Bearer wrong")
    assert status == 401 and json.loads(body)["error"] == "Missing or invalid instance token."
    # Not the machine API's two paths: the console's own stack, with its headers.
    status, headers, _ = through_wsgi(reverse("login"))
    assert status == 200 and "Content-Security-Policy" in headers
    assert through_wsgi(f"/api/v1/instances/{lab.pk}/config/extra", **auth)[0] == 404


@pytest.mark.django_db(transaction=True)
def test_the_lean_stack_refuses_an_unknown_host_as_the_console_does(keycloak_provider, settings):
    lab, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    url = reverse("api-pull-config", args=[lab.pk])
    status, _, _ = through_wsgi(url, HTTP_HOST="evil.invalid", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert status == 400


def test_the_lean_stack_is_the_full_one_less_what_token_requests_do_not_use(settings):
    kept = [name for name in settings.MIDDLEWARE if name in settings.MACHINE_API_MIDDLEWARE]
    assert kept == settings.MACHINE_API_MIDDLEWARE  # a subset, in the same order


def test_a_verification_report_costs_a_few_queries(published, client,
                                                   django_assert_max_num_queries):  # fmt: skip
    """A publish brings every instance's report at once (docs/BENCHMARKS.md, P5, and
    bench/reports.py): a report reads and writes only what it needs, in one transaction with
    no savepoint, so that the console keeps up with a fleet."""
    url = f"/api/v1/instances/{published['lab'].pk}/applied"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {published['token']}"}
    applied = {"version": 1, "status": "ok"}
    assert client.post(url, applied, content_type="application/json", **auth).status_code == 200
    probe = {"ok": True, "kind": "probe", "step": "", "detail": "Diffgram offers sign-in"}
    # The token (when the instance is not in memory), the instance, BEGIN, its row locked,
    # updated, the history's head locked, the event, the head moved on, COMMIT.
    with django_assert_max_num_queries(9):
        response = client.post(
            url, {**applied, "probe": probe}, content_type="application/json", **auth
        )
    assert response.status_code == 200
    lab = Instance.objects.get(name="lab")
    assert (lab.verified_version_number, lab.verify_ok, lab.verify_kind) == (1, True, "probe")
    assert AuditEvent.objects.filter(action="instance.verified", actor_label="lab").count() == 1
