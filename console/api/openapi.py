"""The OpenAPI description of /api/v1/ (hand-written; tests/test_automation_api.py validates it
with openapi-spec-validator and calls every operation in it, so it cannot drift from what the
API does)."""

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

ERROR = {"$ref": "#/components/schemas/Error"}
JSON_ERROR = {"content": {"application/json": {"schema": ERROR}}}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Invalid input; `fields` holds the messages per field",
        401: "Missing, invalid, expired or revoked token",
        403: "The token's owner may not do this (no role, or read-only)",
        404: "Not found",
        409: "Conflict (stale revision, or publishing refused)",
        413: "Request body too large",
        502: "AWS refused or could not be reached; `error` says what to do",
    }
    return {str(code): {"description": texts[code], **JSON_ERROR} for code in codes}


def _path_id(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "integer"}}  # fmt: skip


PROVIDER_ID = _path_id("provider_id", "Provider id")
INSTANCE_ID = _path_id("instance_id", "Instance id")
NUMBER = _path_id("number", "Version number")
IDP_NAME = {"name": "name", "in": "path", "required": True,
            "description": "The identity provider's name in the pool (Google, …)",
            "schema": {"type": "string"}}  # fmt: skip
FEDERATION = {"$ref": "#/components/schemas/Federation"}
USER_AUTH: list[dict[str, list[str]]] = [{"personalToken": []}]
INSTANCE_AUTH: list[dict[str, list[str]]] = [{"instanceToken": []}]

SPEC = {
    "openapi": "3.1.0",
    "info": {
        "title": "Diffgram SSO console API",
        "version": "1",
        "description": "Automation (personal API tokens, the owner's role applies) and the "
        "endpoints Diffgram instances call (instance tokens). Secrets read back as "
        '"********"; sending that mask back keeps the stored secret, null clears it.',
    },
    "servers": [{"url": "/api/v1"}],
    "components": {
        "securitySchemes": {
            "personalToken": {"type": "http", "scheme": "bearer", "description": "dgu_…"},
            "instanceToken": {"type": "http", "scheme": "bearer", "description": "dgi_…"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "fields": {"type": "object"}},
            },
            "Provider": {"type": "object", "required": ["id", "name", "kind", "revision"]},
            "Version": {"type": "object", "required": ["number", "content_hash", "settings"]},
            "Instance": {
                "type": "object", "required": ["id", "name", "url_base"],
                "properties": {
                    "verification_state": {"enum": [
                        "none", "pending", "signed_in", "offers", "failed", "blocked"]},
                    "verified": {
                    "type": ["object", "null"],
                    "description": "The newest verification: the probe (Diffgram offers single "
                    "sign-on, the identity provider shows its login page) or a synthetic "
                    "sign-in through Diffgram's callback, step by step.",
                    "properties": {
                        "version": {"type": "integer"}, "ok": {"type": "boolean"},
                        "kind": {"enum": ["probe", "signin"]},
                        "step": {"type": ["string", "null"], "enum": [
                            "diffgram", "use_oauth2", "login_url", "login_page", "credentials",
                            "callback", "session", "logout", None]},
                        "detail": {"type": "string"}, "steps": {"type": "array"},
                        "at": {"type": "string"},
                        "by": {"enum": ["agent", "console"]}}}},
            },
            "Federation": {
                "type": "object",
                "required": ["redirect_uri", "identity_providers"],
                "description": "The pool's identity providers; each has name, type (oidc, "
                "google, facebook, amazon, apple, saml), enabled (on the Diffgram app client) "
                "and managed (the console holds its details, secrets masked).",
            },
        },
    },
    "paths": {
        "/providers": {
            "get": {
                "operationId": "listProviders", "security": USER_AUTH,
                "responses": {"200": _ok("Every provider"), **_errors(401, 403)},
            },
            "post": {
                "operationId": "createProvider", "security": USER_AUTH,
                "description": "Same fields and rules as the form of the kind; validated after.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["kind", "name", "client_id"]}}}},
                "responses": {
                    "201": _ok("Created", {"$ref": "#/components/schemas/Provider"}),
                    **_errors(400, 401, 403, 413),
                },
            },
        },
        "/providers/{provider_id}": {
            "parameters": [PROVIDER_ID],
            "get": {
                "operationId": "getProvider", "security": USER_AUTH,
                "responses": {
                    "200": _ok("The provider", {"$ref": "#/components/schemas/Provider"}),
                    **_errors(401, 403, 404),
                },
            },
            "patch": {
                "operationId": "updateProvider", "security": USER_AUTH,
                "description": "Give `revision` to refuse the change (409) if someone else "
                "changed the provider since you read it.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object"}}}},
                "responses": {
                    "200": _ok("Updated and validated", {"$ref": "#/components/schemas/Provider"}),
                    **_errors(400, 401, 403, 404, 409),
                },
            },
        },
        "/providers/{provider_id}/validate": {
            "parameters": [PROVIDER_ID],
            "post": {
                "operationId": "validateProvider", "security": USER_AUTH,
                "responses": {"200": _ok("The checks"), **_errors(401, 403, 404)},
            },
        },
        "/providers/{provider_id}/publish": {
            "parameters": [PROVIDER_ID],
            "post": {
                "operationId": "publishProvider", "security": USER_AUTH,
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "group": {"type": "string"}, "note": {"type": "string"}}}}}},
                "responses": {
                    "201": _ok("The new version", {"$ref": "#/components/schemas/Version"}),
                    **_errors(400, 401, 403, 404, 409),
                },
            },
        },
        "/providers/{provider_id}/versions": {
            "parameters": [PROVIDER_ID],
            "get": {
                "operationId": "listVersions", "security": USER_AUTH,
                "responses": {"200": _ok("Newest first"), **_errors(401, 403, 404)},
            },
        },
        "/providers/{provider_id}/versions/{number}": {
            "parameters": [PROVIDER_ID, NUMBER],
            "get": {
                "operationId": "getVersion", "security": USER_AUTH,
                "responses": {
                    "200": _ok("The version", {"$ref": "#/components/schemas/Version"}),
                    **_errors(401, 403, 404),
                },
            },
        },
        "/providers/{provider_id}/diff": {
            "parameters": [
                PROVIDER_ID,
                {"name": "from", "in": "query", "required": True, "schema": {"type": "integer"}},
                {"name": "to", "in": "query", "required": True, "schema": {"type": "integer"}},
            ],
            "get": {
                "operationId": "diffVersions", "security": USER_AUTH,
                "responses": {"200": _ok("Per variable; secrets only as changed"),
                              **_errors(401, 403, 404)},
            },
        },
        "/providers/{provider_id}/federation": {
            "parameters": [PROVIDER_ID],
            "get": {
                "operationId": "listFederation", "security": USER_AUTH,
                "description": "A Cognito provider's identity providers, read from AWS, and the "
                "redirect URI upstream providers must allow.",
                "responses": {"200": _ok("The pool's identity providers", FEDERATION),
                              **_errors(401, 403, 404, 502)},
            },
            "post": {
                "operationId": "federate", "security": USER_AUTH,
                "description": "Create, or update when one of that name exists, an identity "
                "provider of the pool and (unless enabled is false) enable it on the app "
                "client. Fields by type as on the Inspect page: oidc takes upstream (a stored "
                "provider's id, validated first); google, facebook, amazon take client_id and "
                "client_secret; apple client_id, team_id, key_id and private_key; saml name, "
                "metadata_url and email_attribute.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["type"], "properties": {
                        "type": {"enum": ["oidc", "google", "facebook", "amazon", "apple",
                                          "saml"]},
                        "enabled": {"type": "boolean"}}}}}},
                "responses": {
                    "201": _ok("Federated", FEDERATION),
                    "200": _ok("Updated", FEDERATION),
                    **_errors(400, 401, 403, 404, 409, 502),
                },
            },
        },
        "/providers/{provider_id}/federation/{name}": {
            "parameters": [PROVIDER_ID, IDP_NAME],
            "patch": {
                "operationId": "updateFederation", "security": USER_AUTH,
                "description": "Only enabled: enable or disable it on the app client (any "
                "identity provider of the pool). Other fields change one the console manages.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object"}}}},
                "responses": {"200": _ok("Updated", FEDERATION),
                              **_errors(400, 401, 403, 404, 409, 502)},
            },
            "delete": {
                "operationId": "removeFederation", "security": USER_AUTH,
                "description": "Take it off the app client and delete it from the pool.",
                "responses": {"200": _ok("Removed", FEDERATION),
                              **_errors(401, 403, 404, 409, 502)},
            },
        },
        "/instances": {
            "get": {
                "operationId": "listInstances", "security": USER_AUTH,
                "responses": {"200": _ok("Every instance"), **_errors(401, 403)},
            },
        },
        "/instances/{instance_id}": {
            "parameters": [INSTANCE_ID],
            "get": {
                "operationId": "getInstance", "security": USER_AUTH,
                "responses": {
                    "200": _ok("The instance", {"$ref": "#/components/schemas/Instance"}),
                    **_errors(401, 403, 404),
                },
            },
        },
        "/history": {
            "get": {
                "operationId": "listHistory", "security": USER_AUTH,
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("actor", "action", "target_type", "target_id", "date_from",
                              "date_to", "q", "before")
                ],
                "responses": {"200": _ok("Newest first, 100 per page; `next_before` pages on"),
                              **_errors(400, 401, 403)},
            },
        },
        "/instances/{instance_id}/config": {
            "parameters": [
                INSTANCE_ID,
                {"name": "format", "in": "query", "schema": {"enum": ["env", "json", "helm"]}},
            ],
            "get": {
                "operationId": "pullConfig", "security": INSTANCE_AUTH,
                "description": "Send If-None-Match with the last ETag to get 304.",
                "responses": {
                    "200": {"description": "The instance's settings (ETag, X-Config-Version)"},
                    "304": {"description": "Unchanged since the ETag given"},
                    **_errors(400, 401, 404),
                },
            },
        },
        "/instances/{instance_id}/applied": {
            "parameters": [INSTANCE_ID],
            "post": {
                "operationId": "reportApplied", "security": INSTANCE_AUTH,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["version", "status"], "properties": {
                        "version": {"type": "integer"}, "status": {"enum": ["ok", "error"]},
                        "detail": {"type": "string"},
                        "probe": {
                            "type": "object", "required": ["ok"],
                            "description": "Sent again with the same version once the agent "
                            "asked Diffgram and the identity provider (agent.probe), or signed "
                            "in with the test account (agent.signin).",
                            "properties": {
                                "ok": {"type": "boolean"},
                                "kind": {"enum": ["probe", "signin"]},
                                "step": {"type": "string", "maxLength": 32},
                                "detail": {"type": "string", "maxLength": 2000},
                                "seconds": {"type": "number", "minimum": 0, "maximum": 3599},
                                "steps": {"type": "array", "maxItems": 10, "items": {
                                    "type": "object", "required": ["name", "ok"],
                                    "properties": {
                                        "name": {"type": "string", "maxLength": 32},
                                        "ok": {"type": "boolean"},
                                        "detail": {"type": "string", "maxLength": 2000}}}}}}}}}}},
                "responses": {"200": _ok("Recorded"), **_errors(400, 401)},
            },
        },
    },
}  # fmt: skip


@login_not_required
@require_GET
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(SPEC, json_dumps_params={"indent": 2})
