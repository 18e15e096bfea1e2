"""What the product promises about access and secrets, checked on every URL.

1. The authorization matrix: every URL pattern, asked by every kind of caller, against one table
   of expected outcomes. A URL missing from the table fails the test.
2. A canary planted in every kind of secret appears nowhere but the owning instance's pull
   response and push payload.
"""

import csv
import io
import json
import logging
import re
import types
from datetime import timedelta
from io import StringIO

import django_ratelimit.core
import pytest
from celery.signals import before_task_publish
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pythonjsonlogger.json import JsonFormatter

from console import (
    alerts,
    audit,
    delivery,
    federation,
    instances,
    kinds,
    providers,
    ratelimits,
    users,
    versions,
)  # fmt: skip
from console import metrics as console_metrics
from console.federation_forms import FederationForm, data_for
from console.kinds import OIDCProviderForm
from console.models import (
    AlertDestination,
    ApiToken,
    AuditEvent,
    Instance,
    Provider,
    hash_token,
)
from console.roles import ADMIN
from tests import idp_server
from tests.support import PASSWORD, api_error, aws, make_pool, make_provider, make_user, token_for
from tests.urls_helper import all_named_urls

pytestmark = pytest.mark.django_db

CANARY = "CANARY-7d1f"
SECRETS = {
    "client_secret": f"{CANARY}-client-secret",
    "keycloak_master_password": f"{CANARY}-master-password",
    "keycloak_diffgram_password": f"{CANARY}-diffgram-password",
}
INSTANCE_TOKEN = f"dgi_{CANARY}-instance-token"
SIGNING_SECRET = f"{CANARY}-signing-secret"

# --- the world every check runs in ----------------------------------------------------------


def build_world(django_user_model):
    """A validated Keycloak provider with every secret set, three instances (C's token was
    rotated away), a published version, and one personal token per role."""
    from console import encryption

    provider = Provider(
        name="Lab Keycloak", kind="keycloak", client_id="diffgram-{instance}",
        keycloak_server_url="https://sso.example.test/auth/", keycloak_realm="diffgram-realm",
        keycloak_master_user="admin", keycloak_diffgram_user="dg-admin", scopes="openid email",
        diffgram_url_base="https://lab.example.test/", validation_passed=True,
        validated_at=timezone.now(),
        discovery_snapshot={
            "issuer": "https://sso.example.test/auth/realms/diffgram-realm",
            "authorization_endpoint": "https://sso.example.test/auth/realms/x/auth",
            "token_endpoint": "https://sso.example.test/auth/realms/x/token",
            "jwks_uri": "https://sso.example.test/auth/realms/x/certs",
        },
        jwks_snapshot={"keys": []},
    )  # fmt: skip
    provider.issuer = kinds.of(provider).issuer(provider)
    for name, value in SECRETS.items():
        provider.set_secret(name, value)
    provider.save()
    members, tokens = {}, {}
    for name in ("a", "b", "c"):
        instance = Instance(
            name=f"instance-{name}", url_base=f"https://{name}.example.test/", provider=provider,
            push_target="webhook", webhook_url="http://127.0.0.1:9/",
        )  # fmt: skip
        tokens[name] = instance.new_token()
        instance.signing_secret_encrypted = encryption.encrypt(SIGNING_SECRET)
        instance.save()
        members[name] = instance
    members["a"].token_hash = hash_token(INSTANCE_TOKEN)
    members["a"].save()
    tokens["a"] = INSTANCE_TOKEN
    instances.rotate_token(members["c"])  # tokens["c"] is now the revoked one
    version = versions.publish(provider, note="matrix")
    users = {
        "norole": make_user(django_user_model, "nora"),
        "auditor": make_user(django_user_model, "oscar", "auditor"),
        "admin": make_user(django_user_model, "alice", "admin"),
    }
    personal = {}
    for role in ("auditor", "admin"):
        token = ApiToken(user=users[role], name="ci", expires_at=timezone.now() + timedelta(1))
        personal[role] = token.new_token()
        token.save()
    revoked = ApiToken(user=users["admin"], name="old", expires_at=timezone.now() + timedelta(1))
    personal["revoked"] = revoked.new_token()
    revoked.revoked_at = timezone.now()
    revoked.save()
    destination = AlertDestination(
        name="ops hook", kind="webhook", webhook_url="https://hooks.example.test/x",
        events=["push_failed"],
    )  # fmt: skip
    destination.set_secret("webhook_secret", f"{CANARY}-alert-hook")
    destination.save()
    event = AuditEvent.objects.order_by("id").first()
    return {
        "provider": provider, "instances": members, "tokens": tokens, "version": version,
        "users": users, "personal": personal, "event": event,
    }  # fmt: skip


def url_kwargs(world):
    p, i = world["provider"].pk, world["instances"]["a"].pk
    token_id = ApiToken.objects.filter(user=world["users"]["auditor"]).first().pk
    by_param = {
        "provider_id": p, "instance_id": i, "number": world["version"].number,
        "event_id": world["event"].pk, "export_format": "csv", "kind": "oidc",
        "token_id": token_id, "idp_type": "google", "name": "Google",
        "user_id": world["users"]["norole"].pk,
        "destination_id": AlertDestination.objects.get().pk,
    }  # fmt: skip
    result = {}
    for name, route, _ in all_named_urls():
        params = re.findall(r"<(?:\w+:)?(\w+)>", route)
        result[name] = {param: by_param[param] for param in params}
    return result


# --- callers and outcomes ------------------------------------------------------------------

CALLERS = [
    "anonymous",
    "norole",
    "auditor",
    "auditor_token",
    "admin_token",
    "instance_a",
    "instance_b",
    "revoked",
    "admin",
]  # fmt: skip  (admin last: its writes may delete what the others ask for)

LOGIN, NO_ACCESS, FORBIDDEN, UNAUTHORIZED, OK = "login", "no-access", "403", "401", "ok"

POLICIES = {
    # everyone reaches these
    "public": dict.fromkeys(CALLERS, OK),
    # Prometheus metrics: only the holder of METRICS_TOKEN, which no caller here has (unset:
    # refused; tests/test_operations.py scrapes with it)
    "metrics": dict.fromkeys(CALLERS, FORBIDDEN),
    # console pages (session, any role)
    "page": {
        "anonymous": LOGIN, "norole": NO_ACCESS, "auditor": OK, "admin": OK,
        "auditor_token": LOGIN, "admin_token": LOGIN, "instance_a": LOGIN, "instance_b": LOGIN,
        "revoked": LOGIN,
    },
    # pages that exist to change configuration (new/edit/delete/import forms): admins only
    "admin-page": {
        "anonymous": LOGIN, "norole": NO_ACCESS, "auditor": FORBIDDEN, "admin": OK,
        "auditor_token": LOGIN, "admin_token": LOGIN, "instance_a": LOGIN, "instance_b": LOGIN,
        "revoked": LOGIN,
    },
    # console writes (session, admin only)
    "admin-write": {
        "anonymous": LOGIN, "norole": NO_ACCESS, "auditor": FORBIDDEN, "admin": OK,
        "auditor_token": LOGIN, "admin_token": LOGIN, "instance_a": LOGIN, "instance_b": LOGIN,
        "revoked": LOGIN,
    },
    # the user's own API tokens (session, any role)
    "own-account": {
        "anonymous": LOGIN, "norole": NO_ACCESS, "auditor": OK, "admin": OK,
        "auditor_token": LOGIN, "admin_token": LOGIN, "instance_a": LOGIN, "instance_b": LOGIN,
        "revoked": LOGIN,
    },
    # signing out: anyone with a session; others are sent to the login page
    "logout": {
        **dict.fromkeys(CALLERS, LOGIN), "norole": OK, "auditor": OK, "admin": OK,
    },
    # Diffgram instance A's endpoints
    "instance-a": {**dict.fromkeys(CALLERS, UNAUTHORIZED), "instance_a": OK},
    # automation API
    "api-read": {**dict.fromkeys(CALLERS, UNAUTHORIZED), "auditor_token": OK, "admin_token": OK},
    "api-write": {
        **dict.fromkeys(CALLERS, UNAUTHORIZED), "auditor_token": FORBIDDEN, "admin_token": OK,
    },
}  # fmt: skip

# Every URL pattern with the methods that matter and the policy for each. One table.
MATRIX = {
    "home": [("GET", "page")],
    "login": [("GET", "public")],
    "logout": [("POST", "logout")],
    "oidc_authentication_init": [("GET", "public")],
    "oidc_authentication_callback": [("GET", "public")],
    "healthz": [("GET", "public")],
    "alerts": [("GET", "page"), ("POST", "admin-write")],
    "alert-destination-edit": [("GET", "admin-page"), ("POST", "admin-write")],
    "alert-destination-delete": [("POST", "admin-write")],
    "alert-destination-test": [("POST", "admin-write")],
    "metrics": [("GET", "metrics")],
    "providers": [("GET", "page")],
    "provider-new": [("GET", "admin-page")],
    "provider-create": [("GET", "admin-page"), ("POST", "admin-write")],
    "cognito-provision": [("GET", "admin-page"), ("POST", "admin-write")],
    "provider-discover": [("POST", "admin-write")],
    "provider-detail": [("GET", "page")],
    "provider-edit": [("GET", "admin-page"), ("POST", "admin-write")],
    "provider-validate": [("POST", "admin-write")],
    "provider-toggle": [("POST", "admin-write")],
    "provider-delete": [("GET", "admin-page"), ("POST", "admin-write")],
    "provider-test-login": [("GET", "page")],
    "provider-test-login-result": [("GET", "page")],
    "provider-console-login": [("POST", "admin-write")],
    "provider-signin-account": [("GET", "admin-page"), ("POST", "admin-write")],
    "provider-signin-account-rotate": [("POST", "admin-write")],
    "provider-signin-account-remove": [("POST", "admin-write")],
    "cognito-inspect": [("GET", "page")],
    "cognito-fix": [("POST", "admin-write")],
    "federation-new": [("GET", "admin-page"), ("POST", "admin-write")],
    "federation-edit": [("GET", "admin-page"), ("POST", "admin-write")],
    "federation-toggle": [("POST", "admin-write")],
    "federation-remove": [("GET", "admin-page"), ("POST", "admin-write")],
    "cognito-use-domain": [("POST", "admin-write")],
    "provider-publish": [("POST", "admin-write")],
    "version-diff": [("GET", "page")],
    "version-detail": [("GET", "page")],
    "rollout-continue": [("POST", "admin-write")],
    "rollout-halt": [("POST", "admin-write")],
    "rollout-override": [("POST", "admin-write")],
    "version-rollback": [("POST", "admin-write")],
    "instances": [("GET", "page")],
    "instance-counts": [("GET", "page")],
    "instance-create": [("GET", "admin-page"), ("POST", "admin-write")],
    "instance-detail": [("GET", "page")],
    "instance-edit": [("GET", "admin-page"), ("POST", "admin-write")],
    "instance-delete": [("GET", "admin-page"), ("POST", "admin-write")],
    "instance-push": [("POST", "admin-write")],
    "instance-verify": [("POST", "admin-write")],
    "instance-rotate-token": [("POST", "admin-write")],
    "instance-credentials": [("GET", "admin-page")],
    "instance-rotate-signing-secret": [("POST", "admin-write")],
    "config-export": [("GET", "page")],
    "config-import": [("GET", "admin-page"), ("POST", "admin-write")],
    "api-tokens": [("GET", "page"), ("POST", "own-account")],
    "api-token-revoke": [("POST", "own-account")],
    "choose-password": [("GET", "page"), ("POST", "own-account")],
    "users": [("GET", "page"), ("POST", "admin-write")],
    "role-groups": [("POST", "admin-write")],
    "user-reset-password": [("POST", "admin-write")],
    "user-set-role": [("POST", "admin-write")],
    "user-set-active": [("POST", "admin-write")],
    "user-revoke-tokens": [("POST", "admin-write")],
    "history": [("GET", "page")],
    "history-verify": [("GET", "page")],
    "history-export": [("GET", "page")],
    "history-event": [("GET", "page")],
    "api-v1:openapi-json": [("GET", "public")],
    "api-v1:api-root": [("GET", "public")],
    "agent-download": [("GET", "public")],
    "favicon": [("GET", "public")],
    "api-v1:providers": [("GET", "api-read")],
    "api-v1:providers-create": [("POST", "api-write")],
    "api-v1:provider": [("GET", "api-read")],
    "api-v1:provider-change": [("PATCH", "api-write")],
    "api-v1:provider-validate": [("POST", "api-write")],
    "api-v1:provider-publish": [("POST", "api-write")],
    "api-v1:versions": [("GET", "api-read")],
    "api-v1:version": [("GET", "api-read")],
    "api-v1:diff": [("GET", "api-read")],
    "api-v1:federation": [("GET", "api-read")],
    "api-v1:federation-add": [("POST", "api-write")],
    "api-v1:federation-change": [("PATCH", "api-write")],
    "api-v1:federation-remove": [("DELETE", "api-write")],
    "api-v1:instances": [("GET", "api-read")],
    "api-v1:instance": [("GET", "api-read")],
    "api-v1:history": [("GET", "api-read")],
    # Documented by django-ninja, answered by the plain pull views (console/urls.py).
    "api-v1:pull-config": [("GET", "instance-a")],
    "api-v1:applied": [("POST", "instance-a")],
    "api-pull-config": [("GET", "instance-a")],
    "api-applied": [("POST", "instance-a")],
}


def client_for(caller, world):
    client = Client()
    if caller in ("norole", "auditor", "admin"):
        client.force_login(world["users"][caller])
    bearer = {
        "auditor_token": world["personal"]["auditor"],
        "admin_token": world["personal"]["admin"],
        "instance_a": world["tokens"]["a"],
        "instance_b": world["tokens"]["b"],
        "revoked": world["personal"]["revoked"],
    }.get(caller)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {bearer}"} if bearer else {}
    return client, headers


def outcome(response):
    if response.status_code == 302 and response["Location"].startswith(reverse("login") + "?"):
        return LOGIN
    if response.status_code == 403 and b"no role in the console" in response.content:
        return NO_ACCESS
    if response.status_code in (401, 403):
        return str(response.status_code)
    assert response.status_code < 500, response.content[:500]
    return OK


def test_every_url_is_in_the_matrix():
    assert set(MATRIX) == {name for name, _, _ in all_named_urls()}


@pytest.mark.parametrize(
    ("name", "method", "policy"),
    [(name, method, policy) for name, rows in MATRIX.items() for method, policy in rows],
)
def test_authorization_matrix(name, method, policy, django_user_model, settings):
    settings.RATE_LIMIT_PULL_PER_IP = settings.RATE_LIMIT_PULL_PER_INSTANCE = "10000/m"
    world = build_world(django_user_model)
    url = reverse(name, kwargs=url_kwargs(world)[name])
    body = (
        json.dumps({"version": 1, "status": "ok"})
        if name in ("api-applied", "api-v1:applied")
        else "{}"
    )
    for caller in CALLERS:
        client, headers = client_for(caller, world)
        if method == "GET":
            response = client.get(url, **headers)
        elif name.startswith("api"):
            response = client.generic(method, url, body, content_type="application/json", **headers)
        else:
            response = client.generic(method, url, "", **headers)
        assert outcome(response) == POLICIES[policy][caller], (caller, response.status_code)


@pytest.mark.parametrize(
    "name",
    [n for n, rows in MATRIX.items() for m, p in rows if p in ("admin-write", "own-account")]
    + ["logout"],
)
def test_session_writes_without_a_csrf_token_are_refused(name, django_user_model):
    world = build_world(django_user_model)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["users"]["admin"])
    response = client.post(reverse(name, kwargs=url_kwargs(world)[name]))
    assert response.status_code == 403
    assert b"CSRF" in response.content


# --- the canary ---------------------------------------------------------------------------


def test_the_canary_appears_only_where_its_owner_receives_it(
    django_user_model, caplog, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    published = []

    def capture(body=None, headers=None, **kwargs):
        published.append(json.dumps([body, headers], default=str))

    before_task_publish.connect(capture)
    try:
        with django_capture_on_commit_callbacks(execute=True):  # really send the tasks
            world = build_world(django_user_model)
            instances.repush(world["instances"]["b"])
        audit.record(audit.Action.LOGOUT, target=world["provider"])
    finally:
        before_task_publish.disconnect(capture)
    kwargs = url_kwargs(world)
    seen = {}

    admin, auditor = Client(), Client()
    admin.force_login(world["users"]["admin"])
    auditor.force_login(world["users"]["auditor"])
    for name, rows in MATRIX.items():
        for method, policy in rows:
            if (
                method == "GET"
                and policy in ("page", "admin-page", "public")
                and name not in ("provider-test-login", "provider-test-login-result")
            ):
                for label, client in (("admin", admin), ("auditor", auditor)):
                    response = client.get(reverse(name, kwargs=kwargs[name]))
                    content = (
                        b"".join(response.streaming_content)
                        if response.streaming
                        else (response.content)
                    )
                    seen[f"{label} GET {name}"] = content.decode("utf-8", "replace")
            if method == "GET" and policy == "api-read":
                client, headers = client_for("admin_token", world)
                seen[f"API GET {name}"] = client.get(
                    reverse(name, kwargs=kwargs[name]), **headers
                ).content.decode()
    for export_format in ("csv", "jsonl"):
        response = admin.get(reverse("history-export", args=[export_format]))
        seen[f"history export {export_format}"] = b"".join(response.streaming_content).decode()
    out = StringIO()
    call_command("export_config", stdout=out)
    seen["export_config"] = out.getvalue()
    seen["audit table"] = json.dumps(list(AuditEvent.objects.values()), default=str)
    seen["celery messages"] = "\n".join(published)
    seen["logs"] = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    as_json = settings.LOGGING["formatters"]["json"]  # LOG_FORMAT=json
    json_formatter = JsonFormatter(
        as_json["fmt"], rename_fields=as_json["rename_fields"], timestamp=as_json["timestamp"]
    )
    seen["json logs"] = "\n".join(json_formatter.format(record) for record in caplog.records)
    seen["metrics"] = console_metrics.scrape().decode()
    seen["alerts"] = json.dumps([alerts.alerts_for(event) for event in AuditEvent.objects.all()])
    leaks = [where for where, text in seen.items() if CANARY in text]
    assert leaks == []
    assert len(published) >= 2  # the publish (one batch) and the repush really were captured

    # Positive control: the owner gets its secrets, in its pull and in its push.
    client, headers = client_for("instance_a", world)
    pull = client.get(reverse("api-pull-config", kwargs=kwargs["api-pull-config"]), **headers)
    assert f"{CANARY}-master-password" in pull.content.decode()
    # A client secret stored on a Keycloak provider is never published: Diffgram reads its
    # Keycloak client's secret from Keycloak itself.
    assert f"{CANARY}-client-secret" not in pull.content.decode()
    body, push_headers = delivery.signed_webhook(world["instances"]["a"], world["version"])
    assert f"{CANARY}-master-password" in body.decode()
    assert CANARY not in json.dumps(push_headers)  # the signature, never the secret


def test_csv_and_jsonl_exports_were_really_read(django_user_model):
    """Guards the canary test: exports contain the events they claim to."""
    world = build_world(django_user_model)
    admin = Client()
    admin.force_login(world["users"]["admin"])
    response = admin.get(reverse("history-export", args=["csv"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert any(row["action"] == "version.published" for row in rows)


# --- rate limits ----------------------------------------------------------------------------


def test_failed_sign_ins_are_rate_limited_per_address(client, admin_user, settings):
    settings.RATE_LIMIT_LOGIN = "3/m"
    for number in range(3):
        answer = client.post(reverse("login"), {"username": f"x{number}", "password": "y"})
        assert answer.status_code == 200
    response = client.post(reverse("login"), {"username": "x", "password": "y"})
    assert response.status_code == 429
    assert int(response["Retry-After"]) == 60
    assert b"Too many failed sign-ins from your address: wait 1 minute" in response.content


def test_the_pull_api_is_rate_limited_per_token_and_bad_tokens_per_ip(django_user_model, settings):
    settings.RATE_LIMIT_PULL_PER_INSTANCE = "2/m"
    world = build_world(django_user_model)
    client, headers = client_for("instance_a", world)
    url = reverse("api-pull-config", kwargs={"instance_id": world["instances"]["a"].pk})
    assert [client.get(url, **headers).status_code for _ in range(3)] == [200, 200, 429]
    response = client.get(url, **headers)
    assert response.json()["error"].startswith("Too many requests")
    b_client, b_headers = client_for("instance_b", world)
    b_url = reverse("api-pull-config", kwargs={"instance_id": world["instances"]["b"].pk})
    assert b_client.get(b_url, **b_headers).status_code == 200  # per token, not global

    settings.RATE_LIMIT_PULL_PER_IP = "1/m"
    from django.core.cache import cache

    cache.clear()
    guesses = [client.get(url, HTTP_AUTHORIZATION="Bearer dgi_guess").status_code for _ in range(3)]
    assert guesses == [401, 429, 429]  # past the limit of bad tokens, this IP is slowed down
    # A good token from the same IP is never refused for it (b has pulled once of its 2/m).
    assert b_client.get(b_url, **b_headers).status_code == 200


def test_an_oversized_applied_report_gets_413(django_user_model, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    world = build_world(django_user_model)
    client, headers = client_for("instance_a", world)
    response = client.post(
        reverse("api-applied", kwargs={"instance_id": world["instances"]["a"].pk}),
        json.dumps({"version": 1, "status": "ok", "detail": "x" * 500}),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 413
    assert api_error(response.json()) == {
        "error": "The request body is too large.", "code": "too_large",
    }  # fmt: skip
    assert Instance.objects.get(name="instance-a").applied_version_number is None


# --- read-only pages for auditors ---------------------------------------------------------------

# Forms an auditor may submit: signing out and their own account's things.
OWN_FORMS = ("/logout/", "/account/")


def write_controls(html):
    """The POST forms and the links to write pages (new, edit, delete, import) on a page."""
    forms = []
    for tag in re.findall(r"<form\b[^>]*>", html, re.I):
        if 'method="post"' in tag.lower():
            action = re.search(r'action="([^"]*)"', tag)
            forms.append(action.group(1) if action else "(this page)")
    links = re.findall(r'href="([^"]*/(?:new|edit|delete|import|remove|federate)/[^"]*)"', html)
    return [f"form {a}" for a in forms if not a.startswith(OWN_FORMS)] + [
        f"link {href}" for href in links
    ]


def test_auditors_see_no_write_controls_on_any_page(django_user_model):
    world = build_world(django_user_model)
    kwargs = url_kwargs(world)
    auditor = Client()
    auditor.force_login(world["users"]["auditor"])
    admin = Client()
    admin.force_login(world["users"]["admin"])
    found, admin_found = {}, {}
    for name, rows in MATRIX.items():
        skipped = ("history-export", "config-export")  # files
        skipped += ("provider-test-login",)  # a redirect to the identity provider
        skipped += ("provider-test-login-result",)  # a redirect, without a test login first
        skipped += ("api-tokens", "choose-password")  # the auditor's own account
        if ("GET", "page") not in rows or name in skipped:
            continue
        url = reverse(name, kwargs=kwargs[name])
        response = auditor.get(url, follow=True)
        if response.status_code == 404:  # a Cognito page: this world's provider is Keycloak
            continue
        assert response.status_code == 200, (name, response.status_code)
        controls = write_controls(response.content.decode())
        if controls:
            found[name] = controls
        admin_found[name] = write_controls(admin.get(url, follow=True).content.decode())
    assert found == {}
    # The same scan sees the admins' controls, so it is looking at the right markup.
    assert admin_found["provider-detail"] and admin_found["users"] and admin_found["instances"]


def test_a_refused_write_is_logged_as_one_line_without_a_traceback(
    auditor_client, keycloak_provider, caplog
):
    caplog.set_level(logging.INFO)
    response = auditor_client.post(reverse("provider-validate", args=[keycloak_provider.pk]))
    assert response.status_code == 403
    assert b"only admins can change configuration" in response.content
    refusals = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.getMessage() for record in refusals] == [
        f"Forbidden: /providers/{keycloak_provider.pk}/validate/"
    ]
    assert refusals[0].exc_info is None


# --- attacks from the third review (issue 25), each refused --------------------------------------


def test_a_federations_secret_never_follows_a_changed_upstream(client, admin_user, moto, idp):
    """An admin points an OIDC federation that has its own client secret at another stored
    provider (whose issuer they control) and leaves the secret blank: Cognito would post the
    old secret to the new token endpoint. The console asks for the secret again instead, and
    tells Cognito nothing; the same when the upstream's own issuer changes."""

    def stored(name, path):
        form = OIDCProviderForm(data={
            "name": name, "issuer": idp_server.serve_okta(idp, path=path), "client_id": name,
            "scopes": "openid email",
        })  # fmt: skip
        assert form.is_valid(), form.errors
        return providers.save_provider(form)

    pool_id, app = make_pool(moto)
    pool = make_provider(pool_id, app)
    corp, evil = stored("corp", "/corp"), stored("evil", "/evil")
    form = FederationForm(
        data={"upstream": corp.pk, "client_id": "for-cognito", "client_secret": "corp-secret",
              "authorize_scopes": "openid email", "enabled": True},
        idp_type="OIDC", cognito=pool,
    )  # fmt: skip
    assert form.is_valid(), form.errors
    record = federation.federate(form)

    def sent_to_cognito():
        return aws(moto).describe_identity_provider(UserPoolId=pool_id, ProviderName="corp")[
            "IdentityProvider"
        ]["ProviderDetails"]

    assert sent_to_cognito()["oidc_issuer"] == corp.issuer
    token = token_for(admin_user)
    moved = client.patch(
        f"/api/v1/providers/{pool.pk}/federation/corp", json.dumps({"upstream": evil.pk}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert moved.status_code == 400, moved.content
    assert "A secret never follows to another issuer" in moved.json()["fields"]["client_secret"][0]
    edit = FederationForm(
        data=data_for(record, upstream=evil.pk), instance=record, idp_type="OIDC", cognito=pool
    )
    assert not edit.is_valid() and "client_secret" in edit.errors
    assert sent_to_cognito()["oidc_issuer"] == corp.issuer  # Cognito was told nothing

    # The upstream itself moves to another issuer: the stored secret is not sent there either.
    type(corp).objects.filter(pk=corp.pk).update(issuer=evil.issuer)
    corp.refresh_from_db()
    same = FederationForm(data=data_for(record), instance=record, idp_type="OIDC", cognito=pool)
    assert not same.is_valid() and "client_secret" in same.errors
    record.refresh_from_db()
    with pytest.raises(federation.FederationRefused, match="enter it again"):
        federation.provider_details(record)


def test_one_address_guessing_locks_nobody_out_and_successes_never_count(
    django_user_model, settings, monkeypatch
):
    """105 wrong passwords from one address used to lock the break-glass admin out everywhere
    for an hour (refused attempts still counted per username), and ten good sign-ins from one
    office address got a 429."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast
    make_user(django_user_model, "alice-admin", ADMIN)
    clock = types.SimpleNamespace(time=lambda: 1_800_000_000.0)  # no window ends meanwhile
    monkeypatch.setattr(django_ratelimit.core, "time", clock)
    settings.RATE_LIMIT_LOGIN, settings.RATE_LIMIT_LOGIN_PER_USERNAME = "10/5m", "5/15m"
    settings.LOGIN_SLOWDOWN_PER_USERNAME = "8/h"
    waits = []
    monkeypatch.setattr(ratelimits, "pause", waits.append)  # the slow-down moves no real clock
    login = reverse("login")
    attacker, admin = Client(REMOTE_ADDR="203.0.113.7"), Client(REMOTE_ADDR="198.51.100.9")
    answers = [
        attacker.post(login, {"username": "alice-admin", "password": "guess"}).status_code
        for _ in range(105)
    ]
    assert answers[:5] == [200] * 5 and set(answers[5:]) == {429}  # locked out of alice there
    assert attacker.post(login, {"username": "someone", "password": "g"}).status_code == 200
    assert admin.post(login, {"username": "alice-admin", "password": PASSWORD}).status_code == 302
    assert waits == []

    office = Client(REMOTE_ADDR="192.0.2.10")  # many people, one address, all signing in fine
    for _ in range(12):
        assert (
            office.post(login, {"username": "alice-admin", "password": PASSWORD}).status_code == 302
        )
        office.post(reverse("logout"))

    # Guessing one account from many addresses: past the ceiling every attempt is slowed, and
    # the real user, from yet another address, still gets in (after the wait).
    for number in range(3):  # 5 + 3 failures: the ceiling (8) is reached
        Client(REMOTE_ADDR=f"192.0.2.{100 + number}").post(
            login, {"username": "alice-admin", "password": "guess"}
        )
    assert waits == []
    late = Client(REMOTE_ADDR="192.0.2.200")
    assert late.post(login, {"username": "alice-admin", "password": PASSWORD}).status_code == 302
    assert waits == [settings.LOGIN_SLOWDOWN_SECONDS]


def test_a_one_time_password_signs_in_once():
    """A one-time password could be reused until its user chose their own, although it is
    said to sign in once: the first sign-in uses it up, and that session may only choose."""
    user, password = users.create_local_user("newcomer", "auditor")
    first, second = Client(REMOTE_ADDR="192.0.2.1"), Client(REMOTE_ADDR="192.0.2.2")
    login = reverse("login")
    answer = first.post(login, {"username": "newcomer", "password": password})
    assert answer.status_code == 302 and answer["Location"] == reverse("choose-password")
    assert first.get(reverse("providers"))["Location"] == reverse("choose-password")

    again = second.post(login, {"username": "newcomer", "password": password})
    assert again.status_code == 200
    assert "This one-time password was used already" in again.content.decode()
    assert "_auth_user_id" not in second.session

    own = "a long passphrase of my own 9"
    chosen = first.post(reverse("choose-password"), {"new_password1": own, "new_password2": own})
    assert chosen.status_code == 302
    assert Client().post(login, {"username": "newcomer", "password": own}).status_code == 302


def test_no_secret_in_the_repr_of_what_holds_one():
    from console import diffgram
    from tests.test_id_tokens import config

    assert "s3cret-canary" not in repr(config(client_secret="s3cret-canary"))
    provider_config = diffgram.ProviderConfig(
        client_id="c", client_secret="s3cret-canary",
        keycloak_master_password="s3cret-canary", keycloak_diffgram_password="s3cret-canary",
    )  # fmt: skip
    assert "s3cret-canary" not in repr(provider_config)
