"""Property-based tests (hypothesis): bad input never breaks the checks, and the renderers
round-trip any string."""

import io

import yaml
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import envfile
from console import diffgram, discovery, kinds
from console.discovery import Fetched, ProviderSpec

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=30,
)
URLISH = st.one_of(
    st.text(max_size=200),
    st.builds(lambda s: "https://" + s, st.text(max_size=100)),
    st.just("https://idp.example.test"),
)
# Documents that look like discovery documents, with any value in any place.
DOCUMENTS = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            key: st.one_of(JSON, URLISH, st.lists(st.text(max_size=20), max_size=4))
            for key in (
                "issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                "jwks_uri", "response_types_supported", "subject_types_supported",
                "id_token_signing_alg_values_supported", "scopes_supported",
                "token_endpoint_auth_methods_supported", "grant_types_supported",
            )
        },
    ),
)  # fmt: skip
KEYS = st.lists(
    st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"kty": st.sampled_from(["RSA", "oct", "EC", 1, None])},
            optional={
                "n": st.text(max_size=40), "e": st.text(max_size=8),
                "use": st.sampled_from(["sig", "enc", 3]), "alg": st.text(max_size=6),
                "kid": JSON, "d": st.text(max_size=5),
            },
        ),
    ),
    max_size=4,
)  # fmt: skip
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(
    kind=st.sampled_from(["cognito", "keycloak", "oidc"]),
    issuer=URLISH,
    document=DOCUMENTS,
    jwks=st.one_of(JSON, st.builds(lambda keys: {"keys": keys}, KEYS)),
    status=st.sampled_from([200, 404, None]),
    url_base=st.one_of(st.just(""), URLISH),
    confidential=st.booleans(),
)
def test_the_checks_never_raise_and_always_answer_every_check(
    kind, issuer, document, jwks, status, url_base, confidential
):
    spec = ProviderSpec(
        issuer=issuer, client_id="c", confidential=confidential,
        keycloak_server_url=issuer, keycloak_realm="r", url_base=url_base,
    )  # fmt: skip
    fetched = Fetched("u", status=status, document=document, error="" if status == 200 else "x")
    plan = kinds.get(kind).checks
    checks = discovery.evaluate(
        spec, plan, fetched, Fetched("j", 200, jwks), allow_loopback_http=True
    )
    assert [check.id for check in checks] == list(plan.ids())
    assert {check.status for check in checks} <= {"pass", "warn", "fail", "skip"}
    assert all(isinstance(check.message, str) and check.message for check in checks)


@FAST
@given(jwks=st.dictionaries(st.text(max_size=5), JSON) | st.builds(lambda k: {"keys": k}, KEYS))
def test_the_jwks_verdict_never_raises(jwks):
    status, message = discovery.jwks_verdict(jwks)
    assert status in ("pass", "warn", "fail") and message


TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=60)


@FAST
@given(value=TEXT)
def test_env_values_round_trip(value):
    text = diffgram.render_env({"VALUE": value})
    # docker compose's reading (the agent parses the console's output the same way).
    assert envfile.parse_env_body(text) == {"VALUE": value}
    # python-dotenv agrees, except where compose needs "$$" for a literal "$" inside double
    # quotes (a value holding ' or \\ and $), which python-dotenv reads as "$$".
    needs_compose_dollar = "$" in value and ("'" in value or "\\\\" in value)
    if not needs_compose_dollar:
        assert dotenv_values(stream=io.StringIO(text), interpolate=False) == {"VALUE": value}


@FAST
@given(value=TEXT)
def test_helm_values_survive_the_charts_unquoted_paste(value):
    values = yaml.safe_load(diffgram.render_helm({"VALUE": value}))
    pasted = f"VALUE: {values['diffgramSettings']['VALUE']}\n"
    assert yaml.safe_load(pasted) == {"VALUE": value}
