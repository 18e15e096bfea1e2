"""Keycloak's admin REST API, as much as the console needs: the test account of a Keycloak
provider's synthetic sign-ins (create it, set its password, remove it), using the master-realm
admin the provider already holds for Diffgram's start-up. Every request goes through
console/outbound.py."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

from console import diffgram, outbound


class KeycloakError(Exception):
    """What Keycloak refused, in words an admin can act on."""


def _server(provider) -> str:
    return diffgram.with_trailing_slash(provider.keycloak_server_url)


def _token(provider) -> str:
    """An admin token of the master realm, as Diffgram gets one at start-up (admin/admin when
    the provider names no master admin, as Diffgram does)."""
    user = provider.keycloak_master_user or "admin"
    password = provider.secret("keycloak_master_password") or "admin"
    form = urlencode(
        {"grant_type": "password", "client_id": "admin-cli", "username": user, "password": password}
    ).encode()
    url = f"{_server(provider)}realms/master/protocol/openid-connect/token"
    response = _send("POST", url, form, {"Content-Type": "application/x-www-form-urlencoded"})
    if response.status != 200:
        raise KeycloakError(
            f"Keycloak refused the master realm admin {user} (HTTP {response.status}): check the "
            "provider's master admin user and password."
        )
    try:
        return str(response.json()["access_token"])
    except (outbound.OutboundError, KeyError, TypeError):
        raise KeycloakError("Keycloak's token answer has no access_token.") from None


def _send(method, url, body=None, headers=None) -> outbound.Response:
    try:
        return outbound.request(method, url, body=body, headers=headers, max_redirects=0)
    except outbound.OutboundError as error:
        raise KeycloakError(f"Could not reach Keycloak: {error.message}") from None


def _admin(provider, token, method, path, payload=None) -> outbound.Response:
    url = f"{_server(provider)}admin/realms/{quote(provider.keycloak_realm)}/{path}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps(payload).encode() if payload is not None else None
    return _send(method, url, body, headers)


def _realm_missing(provider) -> KeycloakError:
    return KeycloakError(
        f"Keycloak has no realm {provider.keycloak_realm} yet: Diffgram creates it at its first "
        "start with these settings. Publish, let an instance start, then create the test account."
    )


def create_user(provider, username, email, password) -> None:
    token = _token(provider)
    answer = _admin(provider, token, "POST", "users", {
        "username": username, "email": email, "emailVerified": True, "enabled": True,
        "credentials": [{"type": "password", "value": password, "temporary": False}],
    })  # fmt: skip
    if answer.status == 409:
        raise KeycloakError(
            f"The realm {provider.keycloak_realm} has a user {username} already: choose another "
            "username, or enter that account's password instead."
        )
    if answer.status == 404:
        raise _realm_missing(provider)
    if answer.status != 201:
        raise KeycloakError(
            f"Keycloak refused to create the user {username} (HTTP {answer.status})."
        )


def _user_id(provider, token, username) -> str | None:
    answer = _admin(provider, token, "GET", f"users?username={quote(username)}&exact=true")
    if answer.status == 404:
        raise _realm_missing(provider)
    try:
        found = [user for user in answer.json() if user.get("username") == username]
    except (outbound.OutboundError, AttributeError, TypeError):
        raise KeycloakError(
            f"Keycloak's user list is not what it should be (HTTP {answer.status})."
        ) from None
    return str(found[0]["id"]) if found else None


def set_password(provider, username, password) -> None:
    token = _token(provider)
    user_id = _user_id(provider, token, username)
    if user_id is None:
        raise KeycloakError(f"The realm {provider.keycloak_realm} has no user {username} any more.")
    answer = _admin(provider, token, "PUT", f"users/{user_id}/reset-password",
                    {"type": "password", "value": password, "temporary": False})  # fmt: skip
    if answer.status != 204:
        raise KeycloakError(
            f"Keycloak refused the new password of {username} (HTTP {answer.status})."
        )


def delete_user(provider, username) -> None:
    """Remove the user from the realm (already gone is fine)."""
    token = _token(provider)
    user_id = _user_id(provider, token, username)
    if user_id is None:
        return
    answer = _admin(provider, token, "DELETE", f"users/{user_id}")
    if answer.status not in (204, 404):
        raise KeycloakError(f"Keycloak refused to remove {username} (HTTP {answer.status}).")
