"""The console's own sign-in through OIDC: mozilla-django-oidc, fed from a stored provider.

mozilla-django-oidc reads static settings and has no discovery, so `login_config()` resolves
the endpoints, JWKS and client credentials at request time: from the provider marked "console
login" (its last successful validation snapshot), else from CONSOLE_OIDC_* (validated through
the same discovery checks). All HTTP goes through console.outbound. ID tokens are verified with
joserfc: RS256 against the JWKS (fetched again once, with a cooldown, for an unknown kid), and
iss, aud, exp, nonce. Users are matched on (issuer, sub); roles come from a groups claim and
are re-synced at every login.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.middleware import SessionRefresh
from mozilla_django_oidc.utils import import_from_settings

from console import audit, discovery, encryption, outbound, users
from console.models import ExternalIdentity, Provider
from console.roles import groups_claim, role_for_groups, role_groups

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
        issuer=provider.computed_issuer(),
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
        report = discovery.validate(
            discovery.ProviderSpec(
                kind=Provider.Kind.OIDC,
                issuer=issuer,
                client_id=settings.CONSOLE_OIDC_CLIENT_ID,
                confidential=bool(settings.CONSOLE_OIDC_CLIENT_SECRET),
            ),
            allow_loopback_http=settings.SSO_ADMIN_ALLOW_PRIVATE_URLS,
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


# --- talking to the provider ----------------------------------------------------------------------


def exchange_code(config, code, redirect_uri, code_verifier) -> dict[str, Any]:
    """The token request (client_secret_post or _basic); errors quote the provider."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": config.client_id,
        "code_verifier": code_verifier,
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if config.client_secret and config.token_auth_method == "client_secret_post":
        form["client_secret"] = config.client_secret
    elif config.client_secret:
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


def fetch_userinfo(config, access_token) -> dict[str, Any]:
    if not config.userinfo_endpoint or not access_token:
        return {}
    try:
        response = outbound.get(
            config.userinfo_endpoint,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        userinfo = response.json()
    except outbound.OutboundError as error:
        raise LoginError(f"The userinfo request failed: {error.message}") from None
    if response.status != 200 or not isinstance(userinfo, dict):
        raise LoginError(f"The userinfo endpoint answered HTTP {response.status}.")
    return userinfo


def _token_header(token):
    try:
        header = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, IndexError):
        raise LoginError("The ID token is not a JWT.") from None


def jwks_cache_key(issuer) -> str:
    """Where the console's sign-in keeps the JWKS it fetched again for `issuer`."""
    return f"console-oidc-jwks:{issuer}"


def _jwks_for(config, kid):
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


def verify_id_token(config, token, nonce) -> dict[str, Any]:
    """Verify signature (RS256, JWKS) and claims (iss, aud, exp, nonce); return the claims."""
    header = _token_header(token)
    if header.get("alg") != "RS256":
        raise LoginError(f"The ID token is signed with {header.get('alg')!r}; RS256 is required.")
    jwks = _jwks_for(config, header.get("kid"))
    try:
        listed = jwks.get("keys") if isinstance(jwks, dict) else None
        rsa_keys = [
            k for k in listed or [] if isinstance(k, dict) and k.get("kty") == "RSA"
        ]  # a provider's JWKS is not trusted to be well formed
        keys = KeySet.import_key_set({"keys": rsa_keys})
        if header.get("kid"):
            decoded = jwt.decode(token, keys, algorithms=["RS256"])
        else:  # some providers omit kid: try each RSA key
            decoded = _decode_with_any(token, keys)
        jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            nonce={"essential": True, "value": nonce},
        ).validate(decoded.claims)
    except (JoseError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise LoginError(
            f"The ID token did not verify: {error.__class__.__name__} {error}"
        ) from None
    _check_audience(config, decoded.claims)
    return decoded.claims


def _check_audience(config, claims):
    """OIDC Core 3.1.3.7: no audience the console does not trust (it trusts only itself), and
    an azp, when present, naming this console."""
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if audiences != [config.client_id]:
        raise LoginError(
            "The ID token is also meant for other clients "
            f"({', '.join(str(a) for a in audiences if a != config.client_id)[:200]}); refused."
        )
    if "azp" in claims and claims["azp"] != config.client_id:
        raise LoginError("The ID token was issued to another client (azp); refused.")


def _decode_with_any(token, keys):
    for key in keys.keys:
        try:
            return jwt.decode(token, key, algorithms=["RS256"])
        except JoseError:
            continue
    raise ValueError("no key in the JWKS verifies the signature")


@dataclass
class Outcome:
    """What a completed authorization-code flow gave back."""

    claims: dict
    userinfo: dict
    groups: list
    role: str | None
    id_token: str


def complete_flow(config, *, code, redirect_uri, nonce, code_verifier) -> Outcome:
    tokens = exchange_code(config, code, redirect_uri, code_verifier)
    claims = verify_id_token(config, tokens["id_token"], nonce)
    userinfo = fetch_userinfo(config, tokens.get("access_token"))
    if userinfo and userinfo.get("sub") != claims["sub"]:
        raise LoginError("The userinfo belongs to another subject than the ID token.")
    groups = groups_claim(claims, userinfo)
    return Outcome(claims, userinfo, groups, role_for_groups(groups), tokens["id_token"])


# --- users ----------------------------------------------------------------------------------------


# Characters a name shown in the history must not hold: controls, invisible formatting
# (zero-width spaces and joiners), separators, and "~", which marks single-sign-on names.
UNFIT_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"}


def clean_name(value) -> str:
    """`value` NFKC-normalised, or "" when it holds characters that would let two names look
    the same in the history (trailing spaces, zero-width characters, controls), or letters of
    more than one script (a Cyrillic "е" in a Latin name: NFKC leaves it as it is)."""
    name = unicodedata.normalize("NFKC", str(value or ""))
    if not name or name != name.strip() or "~" in name:
        return ""
    if any(unicodedata.category(char) in UNFIT_CATEGORIES for char in name):
        return ""
    if len(scripts_of(name)) > 1:
        return ""
    return name


def scripts_of(name) -> set[str]:
    """The scripts of the letters in `name` (LATIN, CYRILLIC, GREEK…, from their Unicode
    names); digits and punctuation belong to none."""
    return {
        unicodedata.name(char, "UNKNOWN").split()[0]
        for char in name
        if unicodedata.category(char).startswith("L")
    }


def sso_username(issuer, *candidates) -> str:
    """The username of a new single-sign-on user: the first fit candidate (preferred_username,
    email, sub), "~" and the issuer's host, e.g. alice~login.example.com. Local usernames never
    hold "~" (Django's username validator refuses it), so an SSO account can never take a local
    name such as breakglass, and the history shows which IdP vouches for each SSO actor."""
    host = urlsplit(issuer).hostname or "sso"
    name = next((clean for c in candidates if (clean := clean_name(c))), "user")
    base = f"{name[:100]}~{host}"[:140]
    User = get_user_model()
    username, number = base, 1
    while User.objects.filter(username=username).exists():
        number += 1
        username = f"{base}~{number}"
    return username


def sign_in_user(config, outcome, request) -> Any:
    """The console user for (issuer, sub): created on first login, updated every login, roles
    re-synced. Raises NoRole (and removes any role) for someone in no console group."""
    User = get_user_model()
    claims, userinfo = outcome.claims, outcome.userinfo
    email = userinfo.get("email") or claims.get("email") or ""
    with transaction.atomic():
        identity = (
            ExternalIdentity.objects.select_related("user")
            .filter(issuer=config.issuer, subject=claims["sub"])
            .first()
        )
        if identity is None and outcome.role is None:
            raise NoRole("Your account is in no console group (admin or auditor).")
        if identity is not None and not identity.user.is_active:
            raise LoginError("Your console account was disabled by a console admin.")
        if identity is None:
            user = User(
                username=sso_username(
                    config.issuer, userinfo.get("preferred_username"), email, claims["sub"]
                )
            )
            user.set_unusable_password()  # SSO users never sign in with a local password
            user.save()
            identity = ExternalIdentity.objects.create(
                user=user, issuer=config.issuer, subject=claims["sub"]
            )
            audit.record(
                audit.Action.USER_CREATED,
                request=request,
                actor=user,
                target=audit.user_target(user),
                context={"issuer": config.issuer, "sub": claims["sub"]},
            )
        user = identity.user
        user.email = email[:254]
        user.first_name = str(userinfo.get("given_name") or userinfo.get("name") or "")[:150]
        user.last_name = str(userinfo.get("family_name") or "")[:150]
        user.save(update_fields=["email", "first_name", "last_name"])
        identity.last_login_at = timezone.now()
        identity.role_groups = role_groups(outcome.groups)
        identity.save(update_fields=["last_login_at", "role_groups"])
        users.give_role(
            user, outcome.role, request=request, actor=user,
            context={"groups_claim": outcome.groups[:50]},
        )  # fmt: skip
    if outcome.role is None:
        raise NoRole("Your account is in no console group (admin or auditor).")
    return user


# The provider's endpoints and client, which the library reads from static settings, come from
# login_config() with each request (a provider stored and validated in the console).
PER_REQUEST_SETTINGS = frozenset(
    {
        "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT",
        "OIDC_RP_CLIENT_ID", "OIDC_RP_CLIENT_SECRET", "OIDC_RP_SCOPES",
    }
)  # fmt: skip


def library_setting(attr, *args) -> Any:
    """mozilla-django-oidc's get_settings hook: the static settings, and nothing (None) for
    what is resolved per request, so that its constructors can run unchanged."""
    if attr in PER_REQUEST_SETTINGS:
        return None
    return import_from_settings(attr, *args)


class ConsoleOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, fed by login_config() instead of static settings.

    mozilla-django-oidc's callback view calls django.contrib.auth.authenticate() with the nonce
    and PKCE verifier it kept in the session; this backend exchanges the code, verifies the ID
    token and signs the user in. Being an OIDCAuthenticationBackend also marks the session as
    an SSO session, the only kind SessionRefresh re-checks. Raises LoginError (shown to the
    user by the callback view) instead of failing silently.
    """

    get_settings = staticmethod(library_setting)

    def get_user(self, user_id) -> Any:
        """The session's user, or None once an admin disabled it (the session ends)."""
        user = super().get_user(user_id)
        return user if user is not None and user.is_active else None

    def authenticate(self, request, nonce=None, code_verifier=None, **kwargs) -> Any:
        if request is None or nonce is None or "code" not in request.GET:
            return None  # not an SSO sign-in: the next backend (local accounts) may try
        config = login_config()
        if config is None:
            raise LoginError("Single sign-on is not configured.")
        outcome = complete_flow(
            config,
            code=request.GET["code"],
            redirect_uri=request.build_absolute_uri(reverse("oidc_authentication_callback")),
            nonce=nonce,
            code_verifier=code_verifier,
        )
        request.oidc_outcome, request.oidc_config = outcome, config
        return sign_in_user(config, outcome, request)


class ConsoleSessionRefresh(SessionRefresh):
    """Re-checks SSO sessions silently (prompt=none) when the ID token expires, so an account
    disabled at the IdP loses access within the token's lifetime."""

    get_settings = staticmethod(library_setting)

    @cached_property
    def exempt_urls(self) -> set[str]:
        names = [
            *settings.OIDC_EXEMPT_URLS,
            "oidc_authentication_init",
            "oidc_authentication_callback",
        ]
        return {reverse(name) for name in names}

    def process_request(self, request) -> HttpResponse | None:
        if not self.is_refreshable_url(request):
            return None
        try:
            config = login_config()
        except LoginError:
            config = None
        if config is None:
            return None
        # One middleware instance serves every thread: this request's values go on a copy.
        this_request = copy.copy(self)
        this_request.OIDC_OP_AUTHORIZATION_ENDPOINT = config.authorization_endpoint
        this_request.OIDC_RP_CLIENT_ID = config.client_id
        this_request.OIDC_RP_SCOPES = config.scopes
        return SessionRefresh.process_request(this_request, request)
