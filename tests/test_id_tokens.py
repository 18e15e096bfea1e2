"""ID-token verification: signature against the JWKS, and iss, aud, exp, nonce."""

import re
import time

import pytest
from joserfc import jwt

from console import auth
from tests.idp_server import public_jwks, signing_key

ISSUER = "https://login.example.test"


def config(**overrides):
    values = {
        "issuer": ISSUER,
        "client_id": "console",
        "client_secret": "",
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": "",
        "jwks_uri": f"{ISSUER}/jwks",
        "end_session_endpoint": "",
        "scopes": "openid",
        "jwks": public_jwks("k1"),
    }
    return auth.LoginConfig(**{**values, **overrides})


def token(kid="k1", alg="RS256", **claims):
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "console", "sub": "alice", "exp": now + 300, "iat": now,
               "nonce": "n-1", **claims}  # fmt: skip
    return jwt.encode({"alg": alg, "kid": kid}, payload, signing_key(kid))


def test_a_good_token_verifies():
    assert auth.verify_id_token(config(), token(), "n-1")["sub"] == "alice"


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"iss": "https://evil.example.test"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nonce": "replayed"}, "nonce"),
    ],
)
def test_wrong_claims_are_refused(claims, problem):
    with pytest.raises(auth.LoginError, match="did not verify") as caught:
        auth.verify_id_token(config(), token(**claims), "n-1")
    assert problem in str(caught.value).lower()


def test_a_token_signed_by_another_key_is_refused():
    forged = token(kid="k1")
    header, payload, _ = forged.split(".")
    other_signature = token(kid="k2").split(".")[2]
    with pytest.raises(auth.LoginError, match="did not verify"):
        auth.verify_id_token(config(), f"{header}.{payload}.{other_signature}", "n-1")


def test_only_rs256_is_accepted():
    with pytest.raises(auth.LoginError, match="RS256 is required"):
        auth.verify_id_token(config(), jwt.encode({"alg": "HS256"}, {"sub": "x"}, _oct()), "n-1")


def _oct():
    from joserfc.jwk import OctKey

    return OctKey.import_key("a-shared-secret-that-is-long-enough-32b")


def test_an_unknown_kid_fetches_the_jwks_again_once_per_cooldown(idp):
    """Key rotation: the snapshot knows k1, the token uses k2, the JWKS URI has k2."""
    idp.json("/jwks", public_jwks("k1", "k2"))
    rotated = config(jwks_uri=idp.url("/jwks"))
    assert auth.verify_id_token(rotated, token(kid="k2"), "n-1")["sub"] == "alice"
    assert idp.requests.count("/jwks") == 1
    # A token naming a key nobody has: no second fetch inside the cooldown.
    with pytest.raises(auth.LoginError):
        auth.verify_id_token(rotated, token(kid="k3"), "n-1")
    assert idp.requests.count("/jwks") == 1


def test_a_jwks_entry_that_is_not_an_object_fails_validation_and_sign_in_refuses_cleanly():
    from console import auth, discovery
    from tests.test_id_tokens import config, token

    status, message = discovery.jwks_verdict({"keys": [public_jwks_key(), "not-a-key"]})
    assert status == "fail" and "key 2 is not a JSON object" in message
    broken = config(jwks={"keys": ["not-a-key", public_jwks_key()]})
    assert auth.verify_id_token(broken, token(), "n-1")["sub"] == "alice"  # the good key works
    with pytest.raises(auth.LoginError, match="did not verify"):
        auth.verify_id_token(config(jwks={"keys": "nonsense"}), token(), "n-1")


@pytest.mark.parametrize(
    ("claims", "problem"),
    [
        ({"aud": ["console", "another-app"]}, "also meant for other clients (another-app)"),
        ({"azp": "another-app"}, "issued to another client (azp)"),
    ],
)
def test_an_id_token_for_other_clients_is_refused(claims, problem):
    from console import auth
    from tests.test_id_tokens import config, token

    with pytest.raises(auth.LoginError, match=re.escape(problem)):
        auth.verify_id_token(config(), token(**claims), "n-1")
    assert auth.verify_id_token(config(), token(azp="console"), "n-1")["sub"] == "alice"


def public_jwks_key():
    from tests.idp_server import public_jwks

    return public_jwks("k1")["keys"][0]
