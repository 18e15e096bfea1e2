"""The API Diffgram instances call: pull their configuration, report what they applied.

Authentication is the instance's bearer token, compared in constant time against the stored
hash. A missing or wrong token, or another instance's token, all get the same 401, so the API
never tells whether an instance exists.
"""

import json
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, Literal

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import Header, Query, Router
from pydantic import BaseModel, ConfigDict, Field

from agent.signin import VERIFY_HEADER
from console import (
    diffgram,
    instances,
    log_context,
    metrics,
    ratelimits,
    signin_accounts,
    tasks,
    verification,
)
from console.api.auth import INSTANCE
from console.api.errors import ErrorOut, error
from console.models import ConfigVersion, Instance, hash_token
from console.pull_state import PullState, pull_states

# A view: the request (with what the decorators add to it) and the URL's arguments.
View = Callable[..., HttpResponse]


def bearer_token(request: HttpRequest) -> str:
    """The request's bearer token, or "" (read from META: building request.headers costs)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    return header[7:].strip() if header.startswith("Bearer ") else ""


def json_object(request: HttpRequest) -> tuple[Any, JsonResponse | None]:
    """(the body as a dict, None) or (None, a JSON error response)."""
    try:
        document = json.loads(request.body or b"{}")
    except RequestDataTooBig:
        return None, error(413, "The request body is too large.")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, error(400, "The body must be JSON.")
    if not isinstance(document, dict):
        return None, error(400, "The body must be a JSON object.")
    return document, None


def allowed(methods: tuple[str, ...], request: HttpRequest) -> JsonResponse | None:
    """None when the method is allowed, else the 405 answer with its Allow header."""
    if request.method in methods:
        return None
    response = error(405, f"Use {' or '.join(methods)}.")
    response["Allow"] = ", ".join(methods)
    return response


def token_api(view: View) -> View:
    """A token-authenticated endpoint: no session, no CSRF, no console role."""
    return login_not_required(csrf_exempt(view))


FORMATS = {
    "env": ("text/plain; charset=utf-8", "env"),
    "json": ("application/json", "json"),
    "helm": ("application/yaml; charset=utf-8", "yaml"),
}
MAX_DETAIL = 2000
_DUMMY_HASH = hash_token("no such instance")
# What the machine API reads of an instance (not the provider, nor its JSON snapshots), and of
# its assigned version.
INSTANCE_FIELDS = (
    "id", "name", "url_base", "token_hash", "revision", "last_pull_at", "assignment_sequence",
    "last_pulled_version_number", "applied_version_number", "applied_status",
    "assigned_version", "provider_id", "rollout_group", "console_verifies", "signin_runner",
)  # fmt: skip
VERSION_FIELDS = (
    "id", "number", "settings", "secret_settings_encrypted", "login_url_template",
    "content_hash", "provider_id",
)  # fmt: skip
# What recording a report reads of an instance (console/verification.py: record_report).
REPORT_FIELDS = (
    "id", "name", "provider_id", "rollout_group", "applied_version_number", "applied_status",
    "console_verifies", "signin_runner",
)  # fmt: skip
INSTANCE_COLUMNS = (
    *INSTANCE_FIELDS,
    *(f"assigned_version__{field}" for field in VERSION_FIELDS),
)


def _too_many(rate: str) -> JsonResponse:
    response = error(429, f"Too many requests (limit {rate}); slow down.")
    response["Retry-After"] = str(ratelimits.retry_after(rate))
    return response


def _load_instance(instance_id: int) -> Instance | None:
    return (
        Instance.objects.select_related("assigned_version")
        .only(*INSTANCE_COLUMNS)
        .filter(pk=instance_id)
        .first()
    )


def _load_instances_after(after: int, count: int) -> list[Instance]:
    """The next `count` instances after the id `after`, in id order (console/pull_state.py
    reads the fleet in batches), with their versions read once each rather than per row."""
    batch = list(
        Instance.objects.only(*INSTANCE_FIELDS).filter(pk__gt=after).order_by("pk")[:count]
    )
    wanted = {instance.assigned_version_id for instance in batch} - {None}
    assigned = ConfigVersion.objects.only(*VERSION_FIELDS).in_bulk(wanted)
    loaded = []
    for instance in batch:
        version_id = instance.assigned_version_id
        if version_id in assigned:
            instance.assigned_version = assigned[version_id]
        elif version_id is not None:
            continue  # its version deleted since the first query: left for its own poll
        loaded.append(instance)
    return loaded


def instance_api(*methods: str) -> Callable[[View], View]:
    """Authenticate the bearer token for the instance in the URL, then allow `methods`; sets
    request.pull_state (the instance, from this process's memory when it can be trusted:
    console/pull_state.py)."""
    return lambda view: token_api(_authenticated_instance(view, methods))


def _authenticated_instance(view: View, methods: tuple[str, ...]) -> View:
    @wraps(view)
    def wrapper(request: Any, instance_id: int, *args: Any, **kwargs: Any) -> HttpResponse:
        token = bearer_token(request)
        state = pull_states.get(
            instance_id, lambda: _load_instance(instance_id), _load_instances_after
        )
        # Compare even when the instance does not exist, so timing does not tell.
        matches = (state.instance if state else Instance(token_hash=_DUMMY_HASH)).token_matches(
            token
        )
        if not token or state is None or not matches:
            # Bad tokens are counted per client IP, and past the limit answered 429: probing
            # is slowed down and cannot flood the database, while a fleet behind one NAT
            # address (good tokens) is never limited by it. Tokens have 256 random bits, so
            # the limit is about load, not about making guesses succeed.
            if ratelimits.exceeded(request, "pull-bad-token", settings.RATE_LIMIT_PULL_PER_IP):
                return _too_many(settings.RATE_LIMIT_PULL_PER_IP)
            return error(401, "Missing or invalid instance token.")
        if ratelimits.instance_pull_exceeded(state.instance.pk):
            return _too_many(settings.RATE_LIMIT_PULL_PER_INSTANCE)
        request.pull_state = state
        metrics.note_pull_state_size(pull_states.size)
        log_context.instance_id.set(state.instance.pk)
        return allowed(methods, request) or view(request, *args, **kwargs)

    return wrapper


def _etag(instance: Instance, version: ConfigVersion, output: str, signin_revision: int = 0) -> str:
    """The content's hash; for an agent that runs synthetic sign-ins, with the revision of the
    test account it is sent (`signin_revision`), so that a new password reaches it with its
    next poll."""
    return _etag_of(version.content_hash_for(instance), output, signin_revision)


def _etag_of(content_hash: str, output: str, signin_revision: int) -> str:
    tag = f"{content_hash}.{output}"
    return f'"{tag}.s{signin_revision}"' if signin_revision else f'"{tag}"'


def _signin_revision(state: PullState, version: ConfigVersion) -> int:
    """The revision of the test account this instance's agent is sent (0: none), read once
    per state kept in memory."""
    if state.instance.signin_runner != Instance.SigninRunner.AGENT:
        return 0
    if state.signin_revision is None:
        account = signin_accounts.account_of(version.provider_id)
        state.signin_revision = account.revision if account else 0
    return state.signin_revision


def _render(instance: Instance, version: ConfigVersion, output: str) -> str:
    settings_ = version.settings_for(instance)
    if output == "env":
        return diffgram.render_env(settings_)
    if output == "json":
        content_hash = version.content_hash_for(instance)
        return diffgram.render_json(instance.name, version.number, content_hash, settings_)
    return diffgram.render_helm(settings_)


@metrics.counted_pulls
@instance_api("GET")
def pull_config(request: Any) -> HttpResponse:
    state = request.pull_state
    instance = state.instance
    output = request.GET.get("format", "env")
    if output not in FORMATS:
        return error(400, f"Unknown format {output!r}: use env, json or helm.")
    version = instance.assigned_version
    if version is None:
        return error(404, "No configuration has been published to this instance yet.")
    if state.content_hash is None:
        state.content_hash = version.content_hash_for(instance)
    etag = _etag_of(state.content_hash, output, _signin_revision(state, version))
    instances.record_pull(instance, version)
    if etag in [tag.strip() for tag in request.META.get("HTTP_IF_NONE_MATCH", "").split(",")]:
        response: HttpResponse = HttpResponseNotModified()
        # The agent holds this content (it keeps the ETag of what it applied): when that came
        # under an earlier version number (a republish, a rollback), it runs this version.
        instances.record_applied_by_etag(instance, version)
    else:
        body = pull_states.body(state, etag, lambda: _render(instance, version, output))
        content_type, extension = FORMATS[output]
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'inline; filename="diffgram-sso.{extension}"'
        # What the agent checks Diffgram against after applying (VERIFY_HEADER), with the
        # test account when the agent runs the synthetic sign-ins (it keeps it in memory).
        expect = pull_states.body(
            state, "verify" + etag,
            lambda: json.dumps(verification.expectations_for(instance, version)),
        )  # fmt: skip
        response[VERIFY_HEADER] = expect
    response["ETag"] = etag
    response["X-Config-Version"] = str(version.number)
    # Orders what the agent applies across provider switches (version numbers are per provider).
    response["X-Config-Sequence"] = str(instance.assignment_sequence)
    response["Cache-Control"] = "no-store"
    return response


@instance_api("POST")
def report_applied(request: Any) -> HttpResponse:
    report, problem = json_object(request)
    if problem:
        return problem
    problems = {}
    version = report.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        problems["version"] = "A positive integer: the version number that was applied."
    status = report.get("status")
    if status not in ("ok", "error"):
        problems["status"] = 'Either "ok" or "error".'
    detail = report.get("detail", "")
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL:
        problems["detail"] = f"A string of at most {MAX_DETAIL} characters."
    probe = report.get("probe")
    if probe is not None:
        problems.update(verification.probe_problems(probe))
    if problems:
        return error(400, "Invalid report.", fields=problems)
    # From the database (what it applied, its rollout group), not the poll's copy in memory;
    # only the fields a report reads: a fleet reports all at once after a publish.
    instance = (
        Instance.objects.only(*REPORT_FIELDS).filter(pk=request.pull_state.instance.pk).first()
    )
    if instance is None:  # deleted since the token was checked
        return error(401, "Missing or invalid instance token.")
    verification.record_report(
        instance,
        version_number=version,
        ok=status == "ok",
        detail=detail,
        probe=probe,
        request=request,
    )
    if (
        probe is None
        and status == "ok"
        and (instance.console_verifies or verification.console_signs_in(instance))
    ):
        tasks.verify_after_commit(instance.pk)
    return JsonResponse({"recorded": True, "version": version, "status": status})


# --- the document ---------------------------------------------------------------------------------
# console/urls.py routes these two paths to the views above (a poll answered from memory is
# cheaper without the schema library: docs/BENCHMARKS.md, P1); the operations below describe
# them with the same types and, if routed here, answer the same by calling them.

router = Router(tags=["instances (machine)"])
InstanceId = Annotated[int, Field(ge=1, le=2**63 - 1)]
CONFIG_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "Send it back as If-None-Match."},
    "X-Config-Version": {"schema": {"type": "integer"}, "description": "The version number."},
    "X-Config-Sequence": {
        "schema": {"type": "integer"},
        "description": "Orders assignments across provider switches.",
    },
    VERIFY_HEADER: {
        "schema": {"type": "string"},
        "description": "JSON: what to check Diffgram against after applying.",
    },
}


class ConfigQuery(BaseModel):
    format: Literal["env", "json", "helm"] = Field("env", description="The file to answer.")


class ConfigJson(BaseModel):
    instance: str
    version: int
    content_hash: str
    settings: dict[str, str]


class AppliedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    version: int = Field(ge=1, le=2**63 - 1, description="The version number applied.")
    status: Literal["ok", "error"]
    detail: str = Field("", max_length=MAX_DETAIL)
    probe: dict[str, Any] | None = Field(None, description="What verifying Diffgram found.")


class AppliedOut(BaseModel):
    recorded: bool
    version: int
    status: Literal["ok", "error"]


@router.get(
    "/{instance_id}/config",
    operation_id="pullConfig",
    auth=INSTANCE,
    url_name="pull-config",
    response={400: ErrorOut, 401: ErrorOut, 404: ErrorOut, 429: ErrorOut},
    openapi_extra={
        "responses": {
            "200": {
                "description": "The instance's settings in the asked format.",
                "headers": CONFIG_HEADERS,
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": ConfigJson.model_json_schema()},
                    "application/yaml": {"schema": {"type": "string"}},
                },
            },
            "304": {"description": "Unchanged since If-None-Match.", "headers": CONFIG_HEADERS},
        }
    },
)
def pull_config_operation(
    request: HttpRequest,
    instance_id: InstanceId,
    query: Query[ConfigQuery],
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> HttpResponse:
    """What this instance's Diffgram runs with: its assigned version's settings."""
    return pull_config(request, instance_id)


@router.post(
    "/{instance_id}/applied",
    operation_id="reportApplied",
    auth=INSTANCE,
    url_name="applied",
    response={200: AppliedOut, 400: ErrorOut, 401: ErrorOut, 413: ErrorOut, 429: ErrorOut},
)
def report_applied_operation(
    request: HttpRequest, instance_id: InstanceId, body: AppliedIn
) -> HttpResponse:
    """What the instance applied (and what verifying its Diffgram found)."""
    return report_applied(request, instance_id)
