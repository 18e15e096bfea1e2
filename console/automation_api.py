"""The JSON API for automation (/api/v1/), with personal API tokens.

Every endpoint has the same permissions as the UI: the token acts with its owner's role, so
auditors read and admins also write. Secrets are masked on read ("********") and a masked value
sent back keeps the stored secret, so a read-modify-write round trip never loses one.
"""

import json
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from console import cognito, federation, providers, versions
from console.api import error
from console.federation_forms import (
    SHORT_NAMES,
    TYPES_BY_SHORT_NAME,
    FederationForm,
    data_for,
    name_in_pool,
)
from console.forms import FORMS_BY_KIND, HistoryFilterForm
from console.models import (
    ApiToken,
    AuditEvent,
    ConfigVersion,
    FederatedIdentityProvider,
    Instance,
    Provider,
)
from console.roles import ADMIN, SAFE_METHODS, role_of

MASK = "********"
PAGE_SIZE = 100


def user_api(*methods):
    """Bearer-token auth with the owner's role; JSON errors; the allowed methods."""

    def decorate(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            header = request.headers.get("Authorization", "")
            token = (
                ApiToken.find_active(header[7:].strip()) if header.startswith("Bearer ") else None
            )
            if token is None:
                return error(401, "Missing, expired or revoked API token.")
            if request.method not in methods:
                response = error(405, f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            request.user, request.api_token = token.user, token
            request.role = role_of(token.user)
            if request.role is None:
                return error(403, "The token's owner has no role in the console.")
            hours = settings.API_TOKEN_SSO_RECHECK_HOURS
            confirmed = token.sso_confirmation_overdue(hours)
            if confirmed is not None:
                return error(
                    403,
                    "Your identity provider last confirmed your account at "
                    f"{confirmed:%Y-%m-%d %H:%M} UTC; tokens of single sign-on users act only "
                    f"within {hours} h of that. Sign in to the console again.",
                )
            if request.method not in SAFE_METHODS and request.role != ADMIN:
                return error(403, "Your role is read-only: only admins can change configuration.")
            stale = token.last_used_at is None or timezone.now() - token.last_used_at > timedelta(
                minutes=1
            )
            if stale:  # at most one write a minute per token
                ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
            request.json = None
            if request.method in ("POST", "PATCH", "PUT"):
                try:
                    request.json = json.loads(request.body or b"{}")
                except RequestDataTooBig:
                    return error(413, "The request body is too large.")
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return error(400, "The body must be JSON.")
                if not isinstance(request.json, dict):
                    return error(400, "The body must be a JSON object.")
            return view(request, *args, **kwargs)

        return login_not_required(csrf_exempt(wrapper))

    return decorate


# --- serialisation ------------------------------------------------------------------------------

# Shown, but changed only through their own endpoints or derived: ignored in a PATCH body, so
# that what a GET returned can be sent back as it is.
READ_ONLY = {"id", "kind", "issuer", "console_login", "validation"}


def provider_json(provider):
    form_class = FORMS_BY_KIND[provider.kind]
    return {
        "id": provider.pk,
        "kind": provider.kind,
        "enabled": provider.enabled,
        "issuer": provider.issuer,
        **{name: getattr(provider, name) for name in form_class._meta.fields},
        **{
            name: (MASK if provider.has_secret(name) else None)
            for name in FORMS_BY_KIND[provider.kind].secret_names
        },
        "console_login": provider.console_login,
        "revision": provider.revision,
        "validation": {
            "passed": provider.validation_passed,
            "validated_at": provider.validated_at,
            "checks": provider.validation_checks,
        },
    }


def instance_json(instance):
    return {
        "id": instance.pk,
        **instance.audit_fields(),
        "assigned_version": instance.assigned_number,
        "applied_version": instance.applied_version_number,
        "applied_status": instance.applied_status or None,
        "applied_at": instance.applied_at,
        "last_pull_at": instance.last_pull_at,
    }


def version_json(version):
    return {
        "provider": version.provider_id,
        "number": version.number,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "note": version.note,
        "content_hash": version.content_hash,
        "rollout": version.rollout.state if hasattr(version, "rollout") else None,
        "rollback_of": version.rollback_of.number if version.rollback_of_id else None,
        "settings": {**version.settings, **dict.fromkeys(version.secret_names, MASK)},
    }


def _json(data, status=200):
    return JsonResponse(data, status=status, json_dumps_params={"indent": 2})


def _invalid(form):
    return error(400, "Invalid input.", fields={k: list(v) for k, v in form.errors.items()})


def _get(model, **lookup):
    found = model.objects.filter(**lookup).first()
    return found


# --- providers ----------------------------------------------------------------------------------


# --- identity providers federated into a Cognito pool -------------------------------------------

FEDERATION_FIELDS = (
    "client_id", "authorize_scopes", "attributes_request_method", "api_version", "team_id",
    "key_id", "metadata_url", "email_attribute",
)  # fmt: skip


def federation_json(idp):
    """One identity provider of the pool ({"name", "type", "enabled", "record"}), with what
    the console holds of it; secrets masked."""
    record = idp["record"]
    entry = {
        "name": idp["name"],
        "type": SHORT_NAMES.get(idp["type"], idp["type"]),
        "enabled": idp["enabled"],
        "managed": record is not None,
    }
    if record is not None:
        entry |= {
            "upstream": record.upstream_id,
            **{name: getattr(record, name) for name in FEDERATION_FIELDS},
            **{
                name: MASK if record.has_secret(name) else None
                for name in FederatedIdentityProvider.SECRET_NAMES
            },
        }
    return entry


def _cognito_provider(provider_id):
    return Provider.objects.filter(pk=provider_id, kind=Provider.Kind.COGNITO).first()


def _federation_answer(provider, status=200):
    found = cognito.inspect(provider)
    domain = cognito.hosted_ui_url(found.domain, provider.aws_region)
    return _json(
        {
            "redirect_uri": federation.redirect_uri(domain),
            "identity_providers": [
                federation_json(idp) for idp in federation.overview(provider, found)
            ],
        },
        status=status,
    )


def _aws_calls(view):
    """AWS refusals become 502 with the console's message, refusals 409."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except cognito.AWSError as aws_error:
            return error(502, str(aws_error))
        except federation.FederationRefused as refusal:
            return error(409, str(refusal))

    return wrapper


@user_api("GET", "POST")
@_aws_calls
def federation_collection(request, provider_id):
    provider = _cognito_provider(provider_id)
    if provider is None:
        return error(404, "No such Cognito provider.")
    if request.method == "GET":
        return _federation_answer(provider)
    kind = TYPES_BY_SHORT_NAME.get(request.json.get("type"))
    if kind is None:
        return error(
            400, "Invalid input.", fields={"type": [f"One of {', '.join(TYPES_BY_SHORT_NAME)}."]}
        )
    body = {k: v for k, v in request.json.items() if k != "type" and v != MASK}
    upstream = (
        Provider.objects.filter(pk=body.get("upstream")).first() if "upstream" in body else None
    )
    name = name_in_pool(kind, body.get("name", ""), upstream)
    existing = provider.federations.filter(name=name).first() if name else None
    return _federate(request, provider, kind, existing, body, created_status=201)


@user_api("PATCH", "DELETE")
@_aws_calls
def federation_item(request, provider_id, name):
    provider = _cognito_provider(provider_id)
    if provider is None:
        return error(404, "No such Cognito provider.")
    if request.method == "DELETE":
        federation.remove(provider, name, request=request)
        return _federation_answer(provider)
    body = {k: v for k, v in request.json.items() if v != MASK}
    if set(body) == {"enabled"}:
        if not isinstance(body["enabled"], bool):
            return error(400, "Invalid input.", fields={"enabled": ["true or false."]})
        federation.set_enabled(provider, name, body["enabled"], request=request)
        return _federation_answer(provider)
    record = provider.federations.filter(name=name).first()
    if record is None:
        return error(404, f"{name} is not managed by the console: POST it with every field.")
    return _federate(request, provider, record.type, record, body, created_status=200)


def _federate(request, provider, kind, record, body, *, created_status):
    unknown = set(body) - {
        "name",
        "upstream",
        "enabled",
        *FEDERATION_FIELDS,
        *FederatedIdentityProvider.SECRET_NAMES,
    }
    if unknown:
        return error(400, "Invalid input.", fields={k: ["Unknown field."] for k in sorted(unknown)})
    form = FederationForm(
        data=data_for(record, **{"enabled": True, **body}), instance=record, idp_type=kind,
        cognito=provider,
    )  # fmt: skip
    if not form.is_valid():
        return _invalid(form)
    federation.federate(form, request=request)
    return _federation_answer(provider, status=created_status if record is None else 200)


@user_api("GET", "POST")
def providers_collection(request):
    if request.method == "GET":
        return _json({"providers": [provider_json(p) for p in Provider.objects.all()]})
    kind = request.json.get("kind")
    if kind not in FORMS_BY_KIND:
        return error(
            400, "Invalid input.", fields={"kind": [f"One of {', '.join(FORMS_BY_KIND)}."]}
        )
    data = {k: v for k, v in request.json.items() if k != "kind" and v != MASK and v is not None}
    form = FORMS_BY_KIND[kind](data=data)
    if not form.is_valid():
        return _invalid(form)
    provider = providers.save_provider(form, request=request)
    provider, _ = providers.run_validation(provider, request=request)
    return _json(provider_json(provider), status=201)


@user_api("GET", "PATCH")
def provider_item(request, provider_id):
    provider = _get(Provider, pk=provider_id)
    if provider is None:
        return error(404, "No such provider.")
    if request.method == "GET":
        return _json(provider_json(provider))
    form_class = FORMS_BY_KIND[provider.kind]
    current = form_class(instance=provider)
    # What the form would show: the stored values (a field's own initial is its default).
    data = {
        name: current[name].value()
        for name in current.fields
        if name not in form_class.secret_names and not name.startswith("clear_")
    }
    data["revision"] = provider.revision
    enabled = request.json.get("enabled", provider.enabled)
    if not isinstance(enabled, bool):
        return error(400, "Invalid input.", fields={"enabled": ["true or false."]})
    for name, value in request.json.items():
        if (name in READ_ONLY and name not in data) or name == "enabled":
            continue  # derived here (a generic provider's issuer is its own field)
        if name in form_class.secret_names:
            if value is None:
                data[f"clear_{name}"] = "on"
            elif value != MASK:  # the mask sent back keeps the stored secret
                data[name] = value
        elif name in data:
            data[name] = value
        else:
            return error(400, "Invalid input.", fields={name: ["Unknown field."]})
    form = form_class(data=data, instance=provider)
    if not form.is_valid():
        return _invalid(form)
    try:
        provider = providers.save_provider(form, request=request)
    except providers.EditConflict as conflict:
        return error(
            409,
            f"The provider changed since revision {data['revision']}.",
            changes=[{"by": e.actor_label, "changes": e.changes} for e in conflict.events],
        )
    if provider.enabled != enabled:
        provider = providers.set_enabled(provider, enabled, request=request)
    provider, _ = providers.run_validation(provider, request=request)
    return _json(provider_json(provider))


@user_api("POST")
def provider_validate(request, provider_id):
    provider = _get(Provider, pk=provider_id)
    if provider is None:
        return error(404, "No such provider.")
    provider, report = providers.run_validation(provider, request=request)
    return _json({"ok": report.ok, "checks": report.as_list()})


@user_api("POST")
def provider_publish(request, provider_id):
    provider = _get(Provider, pk=provider_id)
    if provider is None:
        return error(404, "No such provider.")
    group, note = request.json.get("group", ""), request.json.get("note", "")
    if not isinstance(group, str) or not isinstance(note, str) or len(note) > 500:
        return error(400, "Invalid input.", fields={"group": ["A string."], "note": ["Up to 500."]})
    try:
        version = versions.publish(provider, group=group, note=note, request=request)
    except versions.PublishRefused as refusal:
        return error(409, f"Not published: {refusal}")
    return _json(version_json(version), status=201)


@user_api("GET")
def provider_versions(request, provider_id):
    if not Provider.objects.filter(pk=provider_id).exists():
        return error(404, "No such provider.")
    versions = ConfigVersion.objects.filter(provider_id=provider_id).select_related(
        "rollout", "rollback_of"
    )
    return _json({"versions": [version_json(v) for v in versions]})


@user_api("GET")
def provider_version(request, provider_id, number):
    version = (
        ConfigVersion.objects.select_related("rollout", "rollback_of")
        .filter(provider_id=provider_id, number=number)
        .first()
    )
    if version is None:
        return error(404, "No such version.")
    return _json(version_json(version))


@user_api("GET")
def provider_diff(request, provider_id):
    def number(name):
        value = request.GET.get(name, "")
        return int(value) if value.isdigit() else None

    old = _get(ConfigVersion, provider_id=provider_id, number=number("from"))
    new = _get(ConfigVersion, provider_id=provider_id, number=number("to"))
    if old is None or new is None:
        return error(404, "Give ?from=N&to=M, two existing version numbers of this provider.")
    return _json({"from": old.number, "to": new.number, "diff": versions.version_diff(old, new)})


# --- instances and history ----------------------------------------------------------------------


@user_api("GET")
def instances_collection(request):
    instances = Instance.objects.select_related("provider", "assigned_version")
    return _json({"instances": [instance_json(i) for i in instances]})


@user_api("GET")
def instance_item(request, instance_id):
    instance = (
        Instance.objects.select_related("provider", "assigned_version")
        .filter(pk=instance_id)
        .first()
    )
    if instance is None:
        return error(404, "No such instance.")
    return _json(instance_json(instance))


@user_api("GET")
def history(request):
    form = HistoryFilterForm(request.GET)
    if not form.is_valid():
        return _invalid(form)
    events = form.filter(AuditEvent.objects.all()).order_by("-id")
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(id__lt=int(before))
    page = list(events[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return _json(
        {
            "events": [{**e.hashed_fields(), "hash": e.hash} for e in page],
            "next_before": page[-1].id if more else None,
        }
    )
