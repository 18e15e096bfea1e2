"""The /api/v1/ automation API: personal tokens, the UI's permissions, masked secrets, and an
OpenAPI description that a test exercises operation by operation."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console import versions
from console.models import ApiToken, AuditEvent, Provider
from tests.support import api_error, make_instance, token_for
from tests.urls_helper import all_named_urls

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, token=None):
        self.client, self.token = Client(), token

    def __call__(self, method, path, body=None, **query):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} if self.token else {}
        url = "/api/v1" + path
        if method == "GET":
            return self.client.get(url, query, **headers)
        data = json.dumps(body) if body is not None else ""
        return self.client.generic(method, url, data, content_type="application/json", **headers)


@pytest.fixture
def admin_api(admin_user):
    return Api(token_for(admin_user))


@pytest.fixture
def auditor_api(auditor_user):
    return Api(token_for(auditor_user))


def test_tokens_are_created_in_the_ui_shown_once_and_stored_hashed(auditor_client, auditor_user):
    response = auditor_client.post(reverse("api-tokens"), {"name": "ci", "expires_in_days": 30})
    secret = response.context["new_token"]
    assert secret.startswith("dgu_") and response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get()
    assert secret not in str(ApiToken.objects.values().get())
    assert secret not in auditor_client.get(reverse("api-tokens")).content.decode()
    assert Api(secret)("GET", "/providers").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    auditor_client.post(reverse("api-token-revoke", args=[token.pk]))
    assert Api(secret)("GET", "/providers").status_code == 401
    assert [e.action for e in AuditEvent.objects.order_by("id")] == [
        "api_token.created", "api_token.revoked",
    ]  # fmt: skip


def test_expired_revoked_and_missing_tokens_are_refused(admin_user):
    expired = ApiToken(user=admin_user, name="old", expires_at=timezone.now() - timedelta(1))
    expired_secret = expired.new_token()
    expired.save()
    for token in (None, "dgu_nope", expired_secret, "dgi_instance-token"):
        response = Api(token)("GET", "/providers")
        assert response.status_code == 401
        answer = response.json()
        assert (answer["error"], answer["code"]) == (
            "Missing, expired or revoked API token.",
            "unauthenticated",
        )
        assert answer["request_id"]  # the id in the console's logs


def test_a_user_without_a_role_is_refused(norole_user):
    response = Api(token_for(norole_user))("GET", "/providers")
    assert response.status_code == 403


def test_auditors_read_and_admins_write(admin_api, auditor_api, keycloak_provider):
    path = f"/providers/{keycloak_provider.pk}"
    assert auditor_api("GET", path).status_code == 200
    denied = auditor_api("PATCH", path, {"client_id": "x"})
    assert denied.status_code == 403
    assert denied.json()["error"].startswith("Your role is read-only")
    assert admin_api("PATCH", path, {"client_id": "x"}).status_code == 200


def test_secrets_are_masked_and_the_mask_round_trip_keeps_them(admin_api, keycloak_provider):
    path = f"/providers/{keycloak_provider.pk}"
    provider = admin_api("GET", path).json()
    assert provider["keycloak_master_password"] == "********"
    assert provider["keycloak_diffgram_password"] == "********"
    assert "client_secret" not in provider  # Diffgram reads Keycloak's from Keycloak
    assert "kc-master-canary" not in json.dumps(provider)
    provider["client_id"] = "diffgram-2"
    response = admin_api("PATCH", path, provider)  # what GET returned, sent back as it is
    assert response.status_code == 200, response.json()
    stored = Provider.objects.get()
    assert stored.client_id == "diffgram-2"
    assert stored.secret("keycloak_master_password") == "kc-master-canary"  # kept
    admin_api("PATCH", path, {"keycloak_diffgram_password": None})
    assert not Provider.objects.get().has_secret("keycloak_diffgram_password")  # null clears


def test_errors_are_json_with_field_messages(admin_api, keycloak_provider):
    response = admin_api("POST", "/providers", {"kind": "keycloak", "name": "K"})
    assert response.status_code == 400
    assert set(response.json()["fields"]) >= {"keycloak_server_url", "keycloak_realm", "client_id"}
    stale = admin_api(
        "PATCH", f"/providers/{keycloak_provider.pk}", {"client_id": "y", "revision": 0}
    )
    assert stale.status_code == 409
    assert admin_api("PATCH", f"/providers/{keycloak_provider.pk}", {"nope": 1}).json()[
        "fields"
    ] == {"nope": ["Unknown field."]}
    bad_json = admin_api.client.generic(
        "POST", "/api/v1/providers", "{not json", content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {admin_api.token}",
    )  # fmt: skip
    assert bad_json.status_code == 400
    assert api_error(bad_json.json()) == {"error": "The body must be JSON.", "code": "invalid"}


def test_an_oversized_body_gets_413(admin_api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = admin_api("POST", "/providers", {"kind": "oidc", "name": "x" * 5000})
    assert response.status_code == 413
    assert not Provider.objects.exists()


def test_publishing_and_reading_versions(admin_api, keycloak_provider):
    make_instance(keycloak_provider, "lab")
    published = admin_api("POST", f"/providers/{keycloak_provider.pk}/publish", {"note": "ci"})
    assert published.status_code == 201
    version = published.json()
    assert version["number"] == 1
    assert version["settings"]["KEY_CLOAK_MASTER_PASSWORD"] == "********"
    assert admin_api("GET", f"/providers/{keycloak_provider.pk}/versions/1").json() == version
    event = AuditEvent.objects.get(action="version.published")
    assert event.actor_label == "alice-admin"  # the token's owner


# --- the OpenAPI description, operation by operation ----------------------------------------


def document():
    """The OpenAPI document as the console serves it."""
    return Client().get(reverse("api-v1:openapi-json")).json()


def samples(provider, instance, instance_token, cognito_provider):
    """Arguments for every documented operation: (auth, path params, query, body)."""
    p, i = {"provider_id": provider.pk}, {"instance_id": instance.pk}
    c, google = {"provider_id": cognito_provider.pk}, {"provider_id": cognito_provider.pk,
                                                       "name": "Google"}  # fmt: skip
    return {
        "listFederation": ("user", c, {}, None),
        "federate": ("user", c, {}, {"type": "google", "client_id": "g", "client_secret": "s"}),
        "updateFederation": ("user", google, {}, {"enabled": False}),
        "removeFederation": ("user", google, {}, None),
        "listProviders": ("user", {}, {}, None),
        "createProvider": ("user", {}, {}, {
            "kind": "oidc", "name": "Created", "issuer": "https://x.example.test",
            "client_id": "c", "scopes": "openid",
        }),
        "getProvider": ("user", p, {}, None),
        "updateProvider": ("user", p, {}, {"client_id": "patched"}),
        "validateProvider": ("user", p, {}, None),
        "publishProvider": ("user", p, {}, {"note": "from the OpenAPI test"}),
        "listVersions": ("user", p, {}, None),
        "getVersion": ("user", {**p, "number": 1}, {}, None),
        "diffVersions": ("user", p, {"from": 1, "to": 1}, None),
        "listInstances": ("user", {}, {}, None),
        "getInstance": ("user", i, {}, None),
        "listHistory": ("user", {}, {"action": "version.published"}, None),
        "pullConfig": ("instance", i, {"format": "json"}, None),
        "reportApplied": ("instance", i, {}, {"version": 1, "status": "ok"}),
    }  # fmt: skip


def test_every_documented_operation_answers_as_documented(admin_user, keycloak_provider, moto):
    from tests.support import make_pool, make_provider

    instance, instance_token = make_instance(keycloak_provider, "kc-lab")
    versions.publish(keycloak_provider)
    user_token = token_for(admin_user)
    cognito_provider = make_provider(*make_pool(moto))
    examples = samples(keycloak_provider, instance, instance_token, cognito_provider)
    operations = [
        (path, method, operation)
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "patch", "put", "delete")
    ]
    assert {op["operationId"] for _, _, op in operations} == set(examples)
    client = Client()
    for path, method, operation in operations:
        auth, params, query, body = examples[operation["operationId"]]
        url = path.format(**params)
        token = user_token if auth == "user" else instance_token
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
        if method == "get":
            response = client.get(url, query, **headers)
        else:
            response = client.generic(method.upper(), url, json.dumps(body or {}),
                                      content_type="application/json", **headers)  # fmt: skip
        documented = operation["responses"]
        assert str(response.status_code) in documented, (operation["operationId"], response.content)
        assert response.status_code < 300, (operation["operationId"], response.content)
        # Without a token every operation is documented to answer 401.
        anonymous = client.generic(method.upper(), url, json.dumps(body or {}),
                                   content_type="application/json")  # fmt: skip
        assert anonymous.status_code == 401 and "401" in documented


def test_every_api_url_is_documented():
    documented = set(document()["paths"])
    routes = {
        "/"
        + route.replace("<int:provider_id>", "{provider_id}")
        .replace("<int:instance_id>", "{instance_id}")
        .replace("<int:number>", "{number}")
        .replace("<str:name>", "{name}")
        .replace("<provider_id>", "{provider_id}")
        .replace("<instance_id>", "{instance_id}")
        .replace("<number>", "{number}")
        .replace("<name>", "{name}")
        for name, route, _ in all_named_urls()
        if route.startswith("api/v1/") and name not in ("api-v1:openapi-json", "api-v1:api-root")
    }
    assert routes == documented


def test_the_description_is_served(client):
    response = client.get(reverse("api-v1:openapi-json"))
    assert response.status_code == 200 and response.json()["openapi"] == "3.1.0"


def test_the_api_matches_the_ui_for_an_auditor(auditor_api, keycloak_provider):
    """Every write the UI refuses an auditor, the API refuses too."""
    p = keycloak_provider.pk
    for method, path, body in [
        ("POST", "/providers", {"kind": "oidc"}),
        ("PATCH", f"/providers/{p}", {}),
        ("POST", f"/providers/{p}/validate", None),
        ("POST", f"/providers/{p}/publish", {}),
    ]:
        assert auditor_api(method, path, body).status_code == 403
    for path in ["/providers", f"/providers/{p}", f"/providers/{p}/versions", "/instances",
                 "/history"]:  # fmt: skip
        assert auditor_api("GET", path).status_code == 200


# --- a PATCH changes what it names and nothing else (issue 16, 3) ---------------------------------

PATCHABLE = {
    "cognito": (
        {"name": "Pool", "aws_region": "eu-west-1", "user_pool_id": "eu-west-1_Abc123",
         "client_id": "app", "cognito_domain": "https://auth.example.invalid",
         "scopes": "openid email profile groups", "diffgram_url_base": "https://d.example.invalid/",
         "aws_role_arn": "arn:aws:iam::123456789012:role/sso"},
        {"name": "renamed", "aws_region": "us-east-1", "user_pool_id": "eu-west-1_Other1",
         "client_id": "other", "cognito_domain": "https://login.example.invalid",
         "scopes": "openid email phone", "diffgram_url_base": "https://e.example.invalid/",
         "aws_role_arn": "arn:aws:iam::123456789012:role/other"},
    ),
    "keycloak": (
        {"name": "Realm", "keycloak_server_url": "https://sso.example.invalid/",
         "keycloak_realm": "lab", "client_id": "dg-{instance}", "keycloak_master_user": "root",
         "keycloak_diffgram_user": "dg", "diffgram_url_base": "https://d.example.invalid/"},
        {"name": "renamed", "keycloak_server_url": "https://kc.example.invalid/auth/",
         "keycloak_realm": "prod", "client_id": "other-{instance}",
         "keycloak_master_user": "admin2", "keycloak_diffgram_user": "dg2",
         "diffgram_url_base": "https://e.example.invalid/"},
    ),
    "oidc": (
        {"name": "Okta", "issuer": "https://idp.example.invalid/oauth2/default",
         "client_id": "0oa1", "scopes": "openid email profile groups"},
        {"name": "renamed", "issuer": "https://other.example.invalid", "client_id": "0oa2",
         "scopes": "openid email"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(PATCHABLE))
def test_a_patch_of_one_field_leaves_every_other_field_as_it_was(admin_api, kind, settings):
    settings.AWS_ENDPOINT_URL = "http://cognito.example.invalid"  # discovery fails, offline
    created, changes = PATCHABLE[kind]
    response = admin_api("POST", "/providers", {"kind": kind, **created})
    assert response.status_code == 201, response.json()
    path = f"/providers/{response.json()['id']}"
    ignored = {"revision", "validation", "issuer"}
    for field, value in changes.items():
        before = admin_api("GET", path).json()
        answer = admin_api("PATCH", path, {field: value})
        after = admin_api("GET", path).json()
        if answer.status_code == 400:  # e.g. a region without its pool: nothing changes
            assert after == before, field
            continue
        assert answer.status_code == 200, (field, answer.json())
        assert after[field] == value
        unchanged = {k: v for k, v in before.items() if k not in ignored | {field}}
        assert {k: after[k] for k in unchanged} == unchanged, field
        changed = AuditEvent.objects.filter(action="provider.changed").latest("id").changes
        derived = {"issuer"} - {field}
        assert set(changed) - derived == {field}, field  # the history says exactly that
        # (a Cognito pool or Keycloak server changes the issuer derived from it)


def test_the_description_is_a_valid_openapi_document():
    from openapi_spec_validator import validate

    validate(document())  # raises, naming the problem, if the description is not valid


def test_a_body_of_the_wrong_shape_is_a_400_naming_the_field_not_a_500(admin_api):
    """Found by the fuzzer before the API had a schema: a list as the kind was a 500."""
    for kind in ([[0.0, False]], "saml", None):
        response = admin_api("POST", "/providers", {"kind": kind, "name": "x"})
        assert response.status_code == 400, response.content
        assert "kind" in response.json()["fields"]
    assert not Provider.objects.exists()


def test_an_unknown_id_is_a_json_404_and_one_beyond_64_bits_a_400(admin_api):
    missing = admin_api("GET", "/providers/999999")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert admin_api("GET", f"/providers/{2**64}").status_code == 400
    unknown_path = admin_api("GET", "/no-such-thing")
    assert unknown_path.status_code == 404 and unknown_path["Content-Type"] == "application/json"


def test_the_fleet_is_listed_a_page_at_a_time_with_the_instances_pages_filters(
    auditor_api, keycloak_provider, monkeypatch
):
    from console.api import fleet

    monkeypatch.setattr(fleet, "PAGE_SIZE", 2)
    for name in ("lab", "prod", "staging"):
        make_instance(keycloak_provider, name)
    make_instance(None, "spare")  # no provider: nothing published to it
    versions.publish(keycloak_provider)

    first = auditor_api("GET", "/instances").json()
    second = auditor_api("GET", "/instances", after=first["next_after"]).json()
    assert [i["name"] for i in first["instances"]] == ["lab", "prod"]
    assert [i["name"] for i in second["instances"]] == ["staging", "spare"]
    assert second["next_after"] is None
    found = auditor_api("GET", "/instances", q="stag").json()
    assert [i["name"] for i in found["instances"]] == ["staging"]
    unpublished = auditor_api("GET", "/instances", state="unassigned").json()
    assert [i["name"] for i in unpublished["instances"]] == ["spare"]
    refused = auditor_api("GET", "/instances", state="sideways")
    assert refused.status_code == 400 and "state" in refused.json()["fields"]


def test_the_history_is_read_a_page_at_a_time_newest_first(
    auditor_api, keycloak_provider, monkeypatch
):
    from console.api import fleet

    monkeypatch.setattr(fleet, "PAGE_SIZE", 2)
    for name in ("a", "b", "c"):
        make_instance(keycloak_provider, name)
    newest = list(AuditEvent.objects.order_by("-id").values_list("id", flat=True)[:3])
    first = auditor_api("GET", "/history").json()
    second = auditor_api("GET", "/history", before=first["next_before"]).json()
    assert [e["id"] for e in first["events"]] == newest[:2]
    assert second["events"][0]["id"] == newest[2]
