"""The console's own sign-in through OIDC: mozilla-django-oidc's flow, fed from a stored provider.

The library runs the authorization-code flow (state, nonce, PKCE, the token request it builds,
the ID token's signature and nonce); the console plugs in through the backend's documented
hooks (docs/ARCHITECTURE.md):
- `get_settings`: the endpoints and client come from `login_config()` at request time — the
  provider marked "console login" (its last successful validation snapshot), else
  CONSOLE_OIDC_* (validated through the same discovery checks);
- `get_token`, `get_userinfo`, `retrieve_matching_jwk`: the library's HTTP calls, made through
  console/outbound.py (timeouts, size cap, private-network guard); the JWKS comes from the
  snapshot, fetched again once per cooldown for an unknown kid;
- `verify_claims`: iss, a single aud, azp, exp, and userinfo about the same subject;
- `filter_users_by_claims` (issuer + sub), `create_user` / `update_user` (role sync from the
  groups claim at every sign-in).
The library's session-refresh middleware reads the provider once at start-up and has no hook
for one chosen per request, so the silent re-check (console/session_recheck.py) is our own.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import (
    import_from_settings,
)

from console import audit, discovery, encryption, kinds, outbound, users
from console.models import ExternalIdentity, Provider
from console.roles import groups_claim, role_for_groups, role_groups
from console.sso_names import sso_username

logger = logging.getLogger(__name__)

JWKS_REFETCH_COOLDOWN = 60  # seconds between JWKS re-fetches for unknown key ids
ENV_VALIDATION_TTL = 300  # how long a start-up validation of CONSOLE_OIDC_ISSUER is trusted


class LoginError(Exception):
    """Sign-in failed; the message is safe to show (it never holds tokens or secrets)."""


class NoRole(LoginError):
    """Authenticated at the IdP, but in no console group: no account, no session."""


@dataclass(frozen=True)
class LoginConfig:
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)  # never in a debug page or log line
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str
    scopes: str
    token_auth_method: str = "client_secret_post"
    jwks: dict = field(default_factory=dict, hash=False, compare=False)
    provider_id: int | None = None
    label: str = "your identity provider"


# --- where the configuration comes from ---------------------------------------------------------


def token_auth_method(document) -> str:
    """client_secret_post when offered, else client_secret_basic (the default, RFC 8414)."""
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return "client_secret_post" if "client_secret_post" in methods else "client_secret_basic"


def config_for_provider(provider) -> LoginConfig | None:
    """A LoginConfig from a provider's last successful snapshot (None without one)."""
    document = provider.discovery_snapshot or {}
    if not document.get("authorization_endpoint") or not document.get("token_endpoint"):
        return None
    return LoginConfig(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=provider.secret("client_secret"),
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        userinfo_endpoint=document.get("userinfo_endpoint", ""),
        jwks_uri=document.get("jwks_uri", ""),
        end_session_endpoint=document.get("end_session_endpoint", ""),
        scopes=provider.scopes,
        token_auth_method=token_auth_method(document),
        jwks=provider.jwks_snapshot or {},
        provider_id=provider.pk,
        label=provider.name,
    )


def _config_from_environment():
    issuer = settings.CONSOLE_OIDC_ISSUER
    key = f"console-oidc-env:{issuer}:{settings.CONSOLE_OIDC_CLIENT_ID}"
    cached = cache.get(key)
    if cached is None:
        report = kinds.OIDC.validate(
            discovery.ProviderSpec(
                issuer=issuer,
                client_id=settings.CONSOLE_OIDC_CLIENT_ID,
                confidential=bool(settings.CONSOLE_OIDC_CLIENT_SECRET),
            )
        )
        failing = [c.message for c in report.checks if c.status == discovery.FAIL]
        document, jwks = report.snapshot() or (None, None)
        cached = {"failing": failing, "document": document, "jwks": jwks}
        cache.set(key, cached, ENV_VALIDATION_TTL)
    if cached["failing"]:
        raise LoginError(
            f"Single sign-on is misconfigured (CONSOLE_OIDC_ISSUER={issuer}): "
            + " ".join(cached["failing"])
        )
    document = cached["document"]
    return LoginConfig(
        issuer=issuer,
        client_id=settings.CONSOLE_OIDC_CLIENT_ID,
        client_secret=settings.CONSOLE_OIDC_CLIENT_SECRET,
        authorization_endpoint=document["authorization_endpoint"],
        token_endpoint=document["token_endpoint"],
        userinfo_endpoint=document.get("userinfo_endpoint", ""),
        jwks_uri=document["jwks_uri"],
        end_session_endpoint=document.get("end_session_endpoint", ""),
        scopes=settings.CONSOLE_OIDC_SCOPES,
        token_auth_method=token_auth_method(document),
        jwks=cached["jwks"],
        label="single sign-on",
    )


def login_config() -> LoginConfig | None:
    """The console's sign-in configuration, None when only local login exists.

    Raises LoginError when it is configured but unusable (shown on the login page).
    """
    provider = Provider.objects.filter(console_login=True, enabled=True).first()
    if provider is not None:
        try:
            config = config_for_provider(provider)
        except encryption.DecryptionError:
            raise LoginError(
                f"The client secret of {provider} cannot be decrypted with the configured "
                "FIELD_ENCRYPTION_KEYS (was a key removed too early?). Sign in with the "
                "break-glass account and enter the secret again."
            ) from None
        if config is None:
            raise LoginError(f"{provider} has no successful validation to sign in with.")
        return config
    if settings.CONSOLE_OIDC_ISSUER:
        return _config_from_environment()
    return None


# --- the backend: mozilla-django-oidc's flow through its hooks -----------------------------------

# What the library reads from static settings but the console resolves per request.
PER_REQUEST_SETTINGS = {
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_RP_CLIENT_ID": "client_id",
    "OIDC_RP_CLIENT_SECRET": "client_secret",
    "OIDC_RP_SCOPES": "scopes",
}
CLOCK_LEEWAY = 60  # seconds of clock difference tolerated on exp


def login_config_or_none() -> LoginConfig | None:
    """login_config(), or None when it is unusable (the sign-in says why, not every page)."""
    try:
        return login_config()
    except LoginError:
        return None


def per_request_setting(config: LoginConfig | None, attr: str, *default: Any) -> Any:
    """The library's setting `attr` for this sign-in's provider, else the static one."""
    if attr in PER_REQUEST_SETTINGS:
        # "" rather than None without a provider: the library refuses to start without a JWKS
        # location, and every page instantiates the backend (Django's get_user).
        return getattr(config, PER_REQUEST_SETTINGS[attr]) if config else ""
    if attr == "OIDC_TOKEN_USE_BASIC_AUTH":
        return bool(config and config.token_auth_method == "client_secret_basic")
    return import_from_settings(attr, *default)


class SignInClaims(dict):
    """What the library passes from get_userinfo to the user hooks: the ID token's claims
    (which win), plus the userinfo answer kept apart for the groups claim and the page."""

    def __init__(self, id_token: dict, userinfo: dict, raw_id_token: str) -> None:
        super().__init__({**userinfo, **id_token})
        self.id_token, self.userinfo, self.raw_id_token = id_token, userinfo, raw_id_token

    @property
    def groups(self) -> list:
        return groups_claim(self.id_token, self.userinfo)

    @property
    def role(self) -> str | None:
        return role_for_groups(self.groups)


class ConsoleOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, fed by login_config() instead of static settings. Errors
    are LoginError with a message safe to show (the callback view shows it)."""

    def __init__(self, *args: Any, login: LoginConfig | None = None, **kwargs: Any) -> None:
        self.given_login = login  # a test login names its provider; a sign-in asks login_config()
        super().__init__(*args, **kwargs)

    @cached_property
    def login(self) -> LoginConfig | None:
        return self.given_login or login_config_or_none()

    def get_settings(self, attr: str, *args: Any) -> Any:
        return per_request_setting(self.login, attr, *args)

    def get_user(self, user_id: Any) -> Any:
        """The session's user, or None once an admin disabled it (the session ends)."""
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        if request is None or "nonce" not in kwargs or "code" not in request.GET:
            return None  # not an SSO sign-in: the next backend (local accounts) may try
        if self.login is None:
            login_config()  # raises LoginError saying why
            raise LoginError("Single sign-on is not configured.")
        return super().authenticate(request, **kwargs)

    # --- the library's HTTP calls, through console/outbound.py ------------------------------------

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The token request the library built (client_secret_post, or _basic when that is
        all the provider offers); errors quote the provider."""
        config = self._config()
        form = {key: value for key, value in payload.items() if value}
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        if self.get_settings("OIDC_TOKEN_USE_BASIC_AUTH") and form.pop("client_secret", ""):
            # RFC 6749 2.3.1: each part form-encoded, then Basic.
            pair = f"{quote_plus(config.client_id)}:{quote_plus(config.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = outbound.post(config.token_endpoint, urlencode(form).encode(), headers)
            tokens = response.json()
        except outbound.OutboundError as error:
            raise LoginError(f"The token request failed: {error.message}") from None
        if response.status != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
            detail = tokens if isinstance(tokens, dict) else {}
            reason = detail.get("error", f"HTTP {response.status}")
            description = detail.get("error_description", "")
            raise LoginError(
                f"The provider refused the token request: {reason}"
                + (f" ({description})" if description else "")
                + (" — check the client secret." if reason == "invalid_client" else "")
            )
        return tokens

    def retrieve_matching_jwk(self, token: str) -> jwt.PyJWK:
        """The key that signed `token`, from the JWKS snapshot (fetched again for an unknown
        kid). RS256 only; a token without kid is tried against each RSA key."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise LoginError("The ID token is not a JWT.") from None
        if header.get("alg") != "RS256":
            raise LoginError(
                f"The ID token is signed with {header.get('alg')!r}; RS256 is required."
            )
        jwks = _jwks_for(self._config(), header.get("kid"))
        listed = jwks.get("keys") if isinstance(jwks, dict) else None
        candidates = [
            key
            for key in listed or []
            if isinstance(key, dict)
            and key.get("kty") == "RSA"
            and (not header.get("kid") or key.get("kid") == header.get("kid"))
        ]  # fmt: skip  (a provider's JWKS is not trusted to be well formed)
        for candidate in candidates:
            try:
                key = jwt.PyJWK(candidate, algorithm="RS256")
                jwt.decode(
                    token,
                    key,
                    algorithms=["RS256"],
                    options={
                        "verify_aud": False,
                        "verify_exp": False,
                        "verify_iat": False,
                        "verify_nbf": False,
                    },
                )
                return key
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
        raise LoginError("The ID token did not verify: no key in the JWKS verifies its signature.")

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The library's verification (signature, nonce; exp with our leeway), its errors as
        LoginError."""
        try:
            return super().verify_token(token, **kwargs)
        except (SuspiciousOperation, jwt.PyJWTError) as error:
            raise LoginError(
                f"The ID token did not verify: {error.__class__.__name__} {error}"
            ) from None

    def get_payload_data(self, token: str, key: Any) -> dict[str, Any]:
        try:
            return jwt.decode(token, key, algorithms=["RS256"], leeway=CLOCK_LEEWAY,
                              options={"verify_aud": False, "require": ["exp", "sub"]})  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise LoginError("The ID token did not verify: it has expired.") from None

    def get_userinfo(self, access_token: str, id_token: str, payload: dict) -> SignInClaims:
        config = self._config()
        userinfo: dict[str, Any] = {}
        if config.userinfo_endpoint and access_token:
            try:
                response = outbound.get(
                    config.userinfo_endpoint,
                    headers={
                        "Authorization": f"Bearer {access_token}",
                        "Accept": "application/json",
                    },
                )
                answer = response.json()
            except outbound.OutboundError as error:
                raise LoginError(f"The userinfo request failed: {error.message}") from None
            if response.status != 200 or not isinstance(answer, dict):
                raise LoginError(f"The userinfo endpoint answered HTTP {response.status}.")
            userinfo = answer
        return SignInClaims(payload, userinfo, id_token)

    # --- what is accepted, and who it is ----------------------------------------------------------

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        assert isinstance(claims, SignInClaims)
        check_id_token_claims(self._config(), claims.id_token)
        if claims.userinfo and claims.userinfo.get("sub") != claims.id_token["sub"]:
            raise LoginError("The userinfo belongs to another subject than the ID token.")
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> Any:
        return get_user_model().objects.filter(
            external_identities__issuer=self._config().issuer,
            external_identities__subject=claims["sub"],
        )

    def create_user(self, claims: dict[str, Any]) -> Any:
        assert isinstance(claims, SignInClaims)
        if claims.role is None:
            raise NoRole("Your account is in no console group (admin or auditor).")
        config, email = self._config(), _email(claims)
        try:
            with audit.change():
                user = get_user_model()(
                    username=sso_username(
                        config.issuer, claims.userinfo.get("preferred_username"), email,
                        claims["sub"],
                    )
                )  # fmt: skip
                user.set_unusable_password()  # SSO users never sign in with a local password
                user.save()
                ExternalIdentity.objects.create(
                    user=user, issuer=config.issuer, subject=claims["sub"]
                )
                audit.record(
                    audit.Action.USER_CREATED, request=self.request, actor=user,
                    target=audit.user_target(user),
                    context={"issuer": config.issuer, "sub": claims["sub"]},
                )  # fmt: skip
        except IntegrityError:  # the same person's other sign-in created them a moment ago
            user = self.filter_users_by_claims(claims).get()
        return self.update_user(user, claims)

    def update_user(self, user: Any, claims: dict[str, Any]) -> Any:
        """Every sign-in: profile and role re-synced from the claims."""
        assert isinstance(claims, SignInClaims)
        if not user.is_active:
            raise LoginError("Your console account was disabled by a console admin.")
        with transaction.atomic():
            user.email = _email(claims)[:254]
            user.first_name = str(claims.get("given_name") or claims.get("name") or "")[:150]
            user.last_name = str(claims.get("family_name") or "")[:150]
            user.save(update_fields=["email", "first_name", "last_name"])
            ExternalIdentity.objects.filter(
                user=user, issuer=self._config().issuer, subject=claims["sub"]
            ).update(last_login_at=timezone.now(), role_groups=role_groups(claims.groups))
            users.give_role(
                user, claims.role, request=self.request, actor=user,
                context={"groups_claim": claims.groups[:50]},
            )  # fmt: skip
        if claims.role is None:
            raise NoRole("Your account is in no console group (admin or auditor).")
        self.request.oidc_claims, self.request.oidc_config = claims, self._config()
        return user

    def _config(self) -> LoginConfig:
        if self.login is None:
            raise LoginError("Single sign-on is not configured.")
        return self.login


def _email(claims: dict[str, Any]) -> str:
    return str(claims.get("email") or "")


def check_id_token_claims(config: LoginConfig, claims: dict[str, Any]) -> None:
    """OIDC Core 3.1.3.7 beyond what the library checks: the issuer, an audience of this
    console alone, and an azp, when present, naming it."""
    if claims.get("iss") != config.issuer:
        raise LoginError(
            f"The ID token did not verify: its iss {str(claims.get('iss'))[:200]!r} is not "
            f"{config.issuer!r}."
        )
    aud = claims.get("aud")
    audiences: list[Any] = aud if isinstance(aud, list) else [aud]
    if config.client_id not in audiences:
        raise LoginError("The ID token did not verify: its aud does not name this console.")
    if audiences != [config.client_id]:
        raise LoginError(
            "The ID token is also meant for other clients "
            f"({', '.join(str(a) for a in audiences if a != config.client_id)[:200]}); refused."
        )
    if "azp" in claims and claims["azp"] != config.client_id:
        raise LoginError("The ID token was issued to another client (azp); refused.")


def jwks_cache_key(issuer: str) -> str:
    """Where the console's sign-in keeps the JWKS it fetched again for `issuer`."""
    return f"console-oidc-jwks:{issuer}"


def _jwks_for(config: LoginConfig, kid: str | None) -> Any:
    """The JWKS to verify with: the snapshot, or a fresh copy when the token names a key the
    snapshot lacks (key rotation), fetched at most once per cooldown."""
    cache_key = jwks_cache_key(config.issuer)
    jwks = cache.get(cache_key) or config.jwks
    listed = jwks.get("keys") if isinstance(jwks, dict) else None
    known = {key.get("kid") for key in listed or [] if isinstance(key, dict)}
    if kid is None or kid in known:
        return jwks
    cooldown_key = cache_key + ":fetched"
    if cache.add(cooldown_key, time.time(), JWKS_REFETCH_COOLDOWN):
        fetched = discovery.fetch_json(config.jwks_uri)
        if isinstance(fetched.document, dict) and isinstance(fetched.document.get("keys"), list):
            jwks = fetched.document
            cache.set(cache_key, jwks, None)
            if config.provider_id:
                Provider.objects.filter(pk=config.provider_id).update(jwks_snapshot=jwks)
            logger.info("Fetched the JWKS of %s again for key id %r", config.issuer, kid)
    return jwks


def verify_id_token(config: LoginConfig, token: str, nonce: str) -> dict[str, Any]:
    """The checks an ID token meets at sign-in: signature (RS256, JWKS), nonce, exp, iss, aud."""
    claims = ConsoleOIDCBackend(login=config).verify_token(token, nonce=nonce)
    check_id_token_claims(config, claims)
    return claims


def test_login(
    config: LoginConfig | None, request: HttpRequest, *, nonce: str, code_verifier: str
) -> SignInClaims:
    """The sign-in's token request and checks against `config`, signing nobody in (a "Test
    login" of any provider): what it would give the user hooks."""
    if config is None:
        raise LoginError("The provider has no successful validation to test with.")
    backend = ConsoleOIDCBackend(login=config)
    backend.request = request
    tokens = backend.get_token(
        {
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "grant_type": "authorization_code",
            "code": request.GET.get("code", ""),
            "redirect_uri": request.build_absolute_uri(reverse("oidc_authentication_callback")),
            "code_verifier": code_verifier,
        }
    )
    payload = backend.verify_token(tokens["id_token"], nonce=nonce)
    claims = backend.get_userinfo(tokens.get("access_token", ""), tokens["id_token"], payload)
    backend.verify_claims(claims)
    return claims
