"""The automation API's federation endpoints: a Cognito provider's identity providers
(/api/v1/providers/<id>/federation), as the Inspect page and `manage.py federate` manage them."""

from functools import wraps
from typing import Any

from django.http import HttpResponse, JsonResponse

from console import cognito, federation, kinds
from console.api.automation import MASK, invalid_form, json_answer, user_api
from console.api.decorators import View, error
from console.federation_forms import (
    SHORT_NAMES,
    TYPES_BY_SHORT_NAME,
    FederationForm,
    data_for,
    name_in_pool,
)
from console.models import FederatedIdentityProvider, Provider

FEDERATION_FIELDS = (
    "client_id", "authorize_scopes", "attributes_request_method", "api_version", "team_id",
    "key_id", "metadata_url", "email_attribute",
)  # fmt: skip


def federation_json(idp: dict[str, Any]) -> dict[str, Any]:
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


def _cognito_provider(provider_id: int) -> Provider | None:
    return Provider.objects.filter(
        pk=provider_id, kind__in=kinds.slugs_where("aws_user_pool")
    ).first()


def _federation_answer(provider: Provider, status: int = 200) -> JsonResponse:
    found = cognito.inspect(provider)
    domain = cognito.hosted_ui_url(found.domain, provider.aws_region)
    return json_answer(
        {
            "redirect_uri": federation.redirect_uri(domain),
            "identity_providers": [
                federation_json(idp) for idp in federation.overview(provider, found)
            ],
        },
        status=status,
    )


def _aws_calls(view: View) -> View:
    """AWS refusals become 502 with the console's message, refusals 409."""

    @wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except cognito.AWSError as aws_error:
            return error(502, str(aws_error))
        except federation.FederationRefused as refusal:
            return error(409, str(refusal))

    return wrapper


@user_api("GET", "POST")
@_aws_calls
def federation_collection(request: Any, provider_id: int) -> HttpResponse:
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
    upstream = Provider.objects.filter(pk=body["upstream"]).first() if "upstream" in body else None
    name = name_in_pool(kind, body.get("name", ""), upstream)
    existing = provider.federations.filter(name=name).first() if name else None
    return _federate(request, provider, kind, existing, body, created_status=201)


@user_api("PATCH", "DELETE")
@_aws_calls
def federation_item(request: Any, provider_id: int, name: str) -> HttpResponse:
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


def _federate(
    request: Any, provider: Provider, kind: str, record: FederatedIdentityProvider | None,
    body: dict[str, Any], *, created_status: int,
) -> HttpResponse:  # fmt: skip
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
        return invalid_form(form)
    federation.federate(form, request=request)
    return _federation_answer(provider, status=created_status if record is None else 200)
