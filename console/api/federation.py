"""/api/v1/providers/<id>/federation: a Cognito provider's identity providers (SAML, OIDC,
Google, Facebook, Amazon, Apple), as the Inspect page and `manage.py federate` manage them.
AWS refusals answer 502 with the console's message; refusals of the console 409."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Router, Status
from pydantic import BaseModel, ConfigDict, Field

from console import cognito, federation, kinds
from console.api.auth import WRITE
from console.api.errors import ApiError, ErrorOut, invalid_form
from console.federation_forms import (
    SHORT_NAMES,
    TYPES_BY_SHORT_NAME,
    FederationForm,
    data_for,
    name_in_pool,
)
from console.models import FederatedIdentityProvider, Provider

MASK = "********"
router = Router(tags=["federation"])
FEDERATION_FIELDS = (
    "client_id",
    "authorize_scopes",
    "attributes_request_method",
    "api_version",
    "team_id",
    "key_id",
    "metadata_url",
    "email_attribute",
)
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 502: ErrorOut}


class FederationFields(BaseModel):
    """What the console keeps of a federated identity provider (by type: federation_forms.py)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(None, max_length=32)
    upstream: int | None = Field(
        None, ge=1, le=2**63 - 1, description="A stored provider to federate (OIDC)."
    )
    enabled: bool = True
    client_id: str | None = Field(None, max_length=255)
    authorize_scopes: str | None = Field(None, max_length=255)
    attributes_request_method: Literal["GET", "POST"] | None = None
    api_version: str | None = Field(None, max_length=20)
    team_id: str | None = Field(None, max_length=20)
    key_id: str | None = Field(None, max_length=20)
    metadata_url: str | None = Field(None, max_length=2000)
    email_attribute: str | None = Field(None, max_length=255)
    client_secret: str | None = Field(None, description='"********" keeps the stored one.')
    private_key: str | None = Field(None, description='"********" keeps the stored one.')


class FederationIn(FederationFields):
    type: Literal[tuple(TYPES_BY_SHORT_NAME)]  # type: ignore[valid-type]


class FederationOut(BaseModel):
    name: str
    type: str = Field(description="The console's short name, or Cognito's type for others.")
    enabled: bool
    managed: bool = Field(description="Kept by the console (else made in AWS directly).")
    upstream: int | None = None
    client_id: str | None = None
    authorize_scopes: str | None = None
    attributes_request_method: str | None = None
    api_version: str | None = None
    team_id: str | None = None
    key_id: str | None = None
    metadata_url: str | None = None
    email_attribute: str | None = None
    client_secret: Literal["********"] | None = None
    private_key: Literal["********"] | None = None


class FederationAnswer(BaseModel):
    redirect_uri: str = Field(description="Register it at each upstream identity provider.")
    identity_providers: list[FederationOut]


ProviderId = Annotated[int, Field(ge=1, le=2**63 - 1)]


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


def _cognito_provider(provider_id: int) -> Provider:
    provider = Provider.objects.filter(
        pk=provider_id, kind__in=kinds.slugs_where("aws_user_pool")
    ).first()
    if provider is None:
        raise ApiError(404, "No such Cognito provider.")
    return provider


def _answer(provider: Provider) -> dict[str, Any]:
    try:
        found = cognito.inspect(provider)
    except cognito.AWSError as aws_error:
        raise ApiError(502, str(aws_error)) from None
    domain = cognito.hosted_ui_url(found.domain, provider.aws_region)
    return {
        "redirect_uri": federation.redirect_uri(domain),
        "identity_providers": [
            federation_json(idp) for idp in federation.overview(provider, found)
        ],
    }


def _aws(action: Any) -> Any:
    """Run a federation change: AWS refusals become 502, the console's own 409."""
    try:
        return action()
    except cognito.AWSError as aws_error:
        raise ApiError(502, str(aws_error)) from None
    except federation.FederationRefused as refusal:
        raise ApiError(409, str(refusal)) from None


@router.get(
    "/{provider_id}/federation",
    operation_id="listFederation",
    response={200: FederationAnswer, **ERRORS},
    url_name="federation",
)
def list_federation(request: HttpRequest, provider_id: ProviderId) -> dict[str, Any]:
    return _answer(_cognito_provider(provider_id))


@router.post(
    "/{provider_id}/federation",
    operation_id="federate",
    auth=WRITE,
    url_name="federation-add",
    response={200: FederationAnswer, 201: FederationAnswer, 400: ErrorOut, 409: ErrorOut, **ERRORS},
)
def add_federation(
    request: HttpRequest, provider_id: ProviderId, body: FederationIn
) -> Status[dict[str, Any]]:
    """Federate an identity provider into the pool (201), or change the one of that name (200)."""
    provider = _cognito_provider(provider_id)
    kind = TYPES_BY_SHORT_NAME[body.type]
    sent = {
        k: v for k, v in body.model_dump(exclude_unset=True).items() if k != "type" and v != MASK
    }
    upstream = (
        Provider.objects.filter(pk=sent["upstream"]).first() if sent.get("upstream") else None
    )
    name = name_in_pool(kind, sent.get("name") or "", upstream)
    existing = provider.federations.filter(name=name).first() if name else None
    _federate(request, provider, kind, existing, sent)
    return Status(201 if existing is None else 200, _answer(provider))


@router.patch(
    "/{provider_id}/federation/{name}",
    operation_id="updateFederation",
    auth=WRITE,
    url_name="federation-change",
    response={200: FederationAnswer, 400: ErrorOut, 409: ErrorOut, **ERRORS},
)
def change_federation(
    request: HttpRequest, provider_id: ProviderId, name: str, body: FederationFields
) -> dict[str, Any]:
    """Change a federated identity provider; `{"enabled": false}` alone switches it off (any
    identity provider of the pool, also one the console did not make)."""
    provider = _cognito_provider(provider_id)
    sent = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v != MASK}
    if set(sent) == {"enabled"}:
        _aws(lambda: federation.set_enabled(provider, name, sent["enabled"], request=request))
        return _answer(provider)
    record = provider.federations.filter(name=name).first()
    if record is None:
        raise ApiError(404, f"{name} is not managed by the console: POST it with every field.")
    _federate(request, provider, record.type, record, sent)
    return _answer(provider)


@router.delete(
    "/{provider_id}/federation/{name}",
    operation_id="removeFederation",
    auth=WRITE,
    url_name="federation-remove",
    response={200: FederationAnswer, 409: ErrorOut, **ERRORS},
)
def remove_federation(request: HttpRequest, provider_id: ProviderId, name: str) -> dict[str, Any]:
    provider = _cognito_provider(provider_id)
    _aws(lambda: federation.remove(provider, name, request=request))
    return _answer(provider)


def _federate(
    request: HttpRequest,
    provider: Provider,
    kind: str,
    record: FederatedIdentityProvider | None,
    sent: dict[str, Any],
) -> None:
    form = FederationForm(
        data=data_for(
            record, **{"enabled": True, **{k: v for k, v in sent.items() if v is not None}}
        ),
        instance=record,
        idp_type=kind,
        cognito=provider,
    )
    if not form.is_valid():
        raise invalid_form(form)
    _aws(lambda: federation.federate(form, request=request))
