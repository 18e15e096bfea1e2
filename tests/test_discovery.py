"""Discovery and JWKS validation of a generic OpenID Provider, against documents served over
real HTTP on 127.0.0.1 (the Keycloak and Cognito shapes: tests/kinds/)."""

import pytest
from django.core.management import call_command

from console import discovery
from console.discovery import FAIL, PASS, SKIP, WARN, ProviderSpec
from console.kinds import OIDC
from tests import idp_server
from tests.idp_server import signing_key
from tests.support import check_message as message
from tests.support import check_statuses as statuses
from tests.support import free_port, run_check_issuer


def validate(spec, allow_loopback_http=True):
    return discovery.validate(spec, OIDC.checks, allow_loopback_http=allow_loopback_http)


# --- documents of the three shapes ------------------------------------------------------------


@pytest.fixture
def okta(idp):
    issuer = idp_server.serve_okta(idp)
    return ProviderSpec(issuer=issuer, client_id="0oa1", confidential=True)


def test_an_okta_shaped_provider_passes(okta):
    report = validate(okta)
    assert report.ok
    assert report.snapshot() == (report.discovery.document, report.jwks.document)
    assert statuses(report) == {
        "issuer.url": PASS,
        "discovery.fetch": PASS,
        "issuer.match": PASS,
        "metadata.required": PASS,
        "endpoints.https": PASS,
        "response_types.code": PASS,
        "id_token_alg.rs256": PASS,
        "jwks.fetch": PASS,
        "jwks.keys": PASS,
        "userinfo.present": PASS,
        "scopes.openid_email": PASS,
        "token_auth.method": PASS,
        "diffgram.host": SKIP,  # Diffgram talks to Cognito or Keycloak only
        "diffgram.url_base": SKIP,
    }


# --- broken variants, one per check -------------------------------------------------------------


def serve_okta(idp, change=None, jwks=None):
    issuer = idp_server.serve_okta(idp, change=change, jwks=jwks)
    return ProviderSpec(issuer=issuer, client_id="0oa1")


@pytest.mark.parametrize(
    ("configured_suffix", "document_suffix", "expected"),
    [
        ("/oauth2/default", "/oauth2/default/", PASS),  # one trailing slash is tolerated
        ("/oauth2/default/", "/oauth2/default", PASS),
        ("/oauth2/default", "/oauth2/default//", FAIL),
        ("/oauth2/default", "/OAuth2/default", FAIL),  # case matters
        ("/oauth2/default", "/oauth2/other", FAIL),
    ],
)
def test_issuer_match_compares_exactly_after_one_trailing_slash(
    idp, configured_suffix, document_suffix, expected
):
    serve_okta(idp, lambda document: document.update(issuer=idp.url(document_suffix)))
    report = validate(ProviderSpec(issuer=idp.url(configured_suffix)))
    assert statuses(report)["issuer.match"] == expected
    if expected == FAIL:
        assert repr(idp.url(document_suffix)) in message(report, "issuer.match")


@pytest.mark.parametrize(
    ("change", "check_id", "expected_text"),
    [
        (
            lambda d: d.update(token_endpoint="http://idp.example.test/token"),
            "endpoints.https",
            "token_endpoint 'http://idp.example.test/token': it uses http://",
        ),
        (
            lambda d: d.update(authorization_endpoint="https://idp.example.test/a?x=1#y"),
            "endpoints.https",
            "it has a query string; it has a fragment",
        ),
        (lambda d: d.pop("jwks_uri"), "metadata.required", "missing jwks_uri"),
        (
            lambda d: d.update(response_types_supported="code"),
            "metadata.required",
            "wrong type for response_types_supported",
        ),
        (
            lambda d: d.update(response_types_supported=["id_token", "token"]),
            "response_types.code",
            "does not contain 'code'",
        ),
        (
            lambda d: d.update(grant_types_supported=["implicit"]),
            "response_types.code",
            "authorization_code",
        ),
        (
            lambda d: d.update(id_token_signing_alg_values_supported=["ES256", "HS256"]),
            "id_token_alg.rs256",
            "it lists ES256, HS256",
        ),
        (
            lambda d: d.update(scopes_supported=["email", "profile"]),
            "scopes.openid_email",
            "does not contain 'openid'",
        ),
    ],
)
def test_each_broken_document_fails_its_check(idp, change, check_id, expected_text):
    report = validate(serve_okta(idp, change))
    assert statuses(report)[check_id] == FAIL
    assert expected_text in message(report, check_id)
    assert not report.ok


def test_missing_jwks_uri_skips_the_jwks_checks(idp):
    report = validate(serve_okta(idp, lambda d: d.pop("jwks_uri")))
    assert statuses(report)["jwks.fetch"] == SKIP
    assert statuses(report)["jwks.keys"] == SKIP


def test_scopes_without_email_warn(idp):
    report = validate(serve_okta(idp, lambda d: d.update(scopes_supported=["openid"])))
    assert statuses(report)["scopes.openid_email"] == WARN
    assert report.ok  # warnings do not block


@pytest.mark.parametrize(
    ("jwks", "expected_text"),
    [
        ({"keys": []}, "has no keys"),
        ({"nokeys": True}, "has no keys"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "symmetric (oct) key"),
        (
            {"keys": [signing_key("leaky").as_dict(private=True)]},
            "private key material (d, p, q, dp, dq, qi)",
        ),
        ({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}, "no usable RS256"),
        (
            {"keys": [{**signing_key().as_dict(private=False), "use": "enc"}]},
            "no usable RS256",
        ),
        ({"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}, "cannot be read"),
    ],
)
def test_unusable_jwks_fail(idp, jwks, expected_text):
    report = validate(serve_okta(idp, jwks=jwks))
    assert statuses(report)["jwks.fetch"] == PASS
    assert statuses(report)["jwks.keys"] == FAIL
    assert expected_text in message(report, "jwks.keys")


def test_non_json_and_404_fail_the_fetch_and_skip_the_rest(idp):
    idp.raw("/broken/.well-known/openid-configuration", b"issuer=x", content_type="text/plain")
    report = validate(ProviderSpec(issuer=idp.url("/broken")))
    assert statuses(report)["discovery.fetch"] == FAIL
    assert "did not return JSON" in message(report, "discovery.fetch")
    assert {
        s for k, s in statuses(report).items() if k not in ("issuer.url", "discovery.fetch")
    } == {SKIP}

    report = validate(ProviderSpec(issuer=idp.url("/missing")))
    assert "answered HTTP 404" in message(report, "discovery.fetch")


def test_a_json_array_is_not_a_discovery_document(idp):
    idp.json("/array/.well-known/openid-configuration", ["issuer"])
    report = validate(ProviderSpec(issuer=idp.url("/array")))
    assert "not an object (it is a list)" in message(report, "discovery.fetch")


def test_a_two_mebibyte_document_is_refused(idp):
    idp.raw("/huge/.well-known/openid-configuration", b" " * (2 * 1024 * 1024), chunked=True)
    report = validate(ProviderSpec(issuer=idp.url("/huge")))
    assert statuses(report)["discovery.fetch"] == FAIL
    assert "more than 1024 KiB" in message(report, "discovery.fetch")


def test_a_slow_server_fails_after_the_timeout(idp):
    idp.json("/slow/.well-known/openid-configuration", {}, delay=6)
    report = validate(ProviderSpec(issuer=idp.url("/slow")))
    assert "did not answer within 5 s" in message(report, "discovery.fetch")


def test_a_redirect_to_the_metadata_address_is_refused(idp):
    idp.redirect(
        "/moved/.well-known/openid-configuration", "http://169.254.169.254/latest/meta-data/"
    )
    report = validate(ProviderSpec(issuer=idp.url("/moved")))
    assert statuses(report)["discovery.fetch"] == FAIL
    assert "Refused: 169.254.169.254" in message(report, "discovery.fetch")


def test_http_issuers_are_refused_unless_loopback_is_allowed(okta, settings):
    report = validate(okta, allow_loopback_http=False)
    assert statuses(report)["issuer.url"] == FAIL
    assert "it uses http://" in message(report, "issuer.url")
    assert set(statuses(report).values()) == {FAIL, SKIP}


def test_issuers_with_query_fragment_or_credentials_are_refused():
    for issuer, problem in [
        ("https://idp.example.test/?tenant=1", "query string"),
        ("https://idp.example.test/#x", "fragment"),
        ("https://user:pw@idp.example.test/", "credentials"),
        ("ftp://idp.example.test/", "must start with https://"),
    ]:
        report = discovery.evaluate(ProviderSpec(issuer=issuer), OIDC.checks, None, None, False)
        assert problem in message(report_of(report), "issuer.url")


def test_userinfo_is_only_recommended_for_a_provider_diffgram_does_not_talk_to(idp):
    report = validate(serve_okta(idp, lambda d: d.pop("userinfo_endpoint")))
    assert statuses(report)["userinfo.present"] == WARN


def report_of(checks):
    return discovery.Report(checks=checks)


def test_the_consoles_own_sign_in_can_use_client_secret_basic(idp):
    spec = serve_okta(
        idp, lambda d: d.update(token_endpoint_auth_methods_supported=["client_secret_basic"])
    )
    report = validate(ProviderSpec(**{**spec.__dict__, "confidential": True}))
    assert statuses(report)["token_auth.method"] == PASS
    assert "client_secret_basic" in message(report, "token_auth.method")


# --- real providers -------------------------------------------------------------------------------


def test_the_certified_node_oidc_provider_passes(node_op):
    report = validate(ProviderSpec(issuer=node_op.issuer, confidential=True))
    assert report.ok, report.as_list()
    assert statuses(report)["jwks.keys"] == PASS
    assert statuses(report)["token_auth.method"] == PASS


# --- command line ---------------------------------------------------------------------------------


def test_check_issuer_exits_1_when_a_check_fails(idp):
    spec = serve_okta(idp, lambda d: d.update(id_token_signing_alg_values_supported=["ES256"]))
    code, output = run_check_issuer(spec.issuer)
    assert code == 1
    assert "FAIL  id_token_alg.rs256" in output


def test_check_issuer_exits_2_on_bad_arguments(idp):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError) as caught:
        call_command("check_issuer", idp.url("/auth/"), "--kind", "keycloak")
    assert caught.value.returncode == 2
    assert "--realm is required" in str(caught.value)


def check(report, check_id):
    return next(c for c in report.checks if c.id == check_id)


def oidc(issuer):
    return ProviderSpec(issuer=issuer, client_id="c", confidential=True)


def test_a_loopback_http_issuer_refused_in_production_names_the_development_setting():
    report = validate(oidc("http://127.0.0.1:8080/realms/x"), allow_loopback_http=False)
    result = check(report, "issuer.url")
    assert result.status == FAIL
    assert "SSO_ADMIN_ALLOW_PRIVATE_URLS=true" in result.message
    assert "for development only" in result.message


def test_a_loopback_https_issuer_refused_by_the_network_guard_names_the_setting(settings):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = False
    report = validate(oidc(f"https://127.0.0.1:{free_port()}/"), allow_loopback_http=False)
    result = check(report, "discovery.fetch")
    assert result.status == FAIL
    assert "loopback address" in result.message
    assert "SSO_ADMIN_ALLOW_PRIVATE_URLS=true" in result.message
    assert "for development only" in result.message


def test_an_issuer_with_whitespace_fails_the_issuer_check():
    report = validate(oidc("https://login.example.test/oauth2/ default"), allow_loopback_http=False)
    result = check(report, "issuer.url")
    assert result.status == FAIL and "contains whitespace" in result.message
    assert report.discovery is None  # nothing was fetched for it


def test_the_endpoint_check_names_the_endpoints_that_use_http_on_loopback(idp):
    issuer = idp_server.serve_okta(idp)  # served over http:// on 127.0.0.1
    result = check(validate(oidc(issuer), allow_loopback_http=True), "endpoints.https")
    assert result.status == PASS
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert endpoint in result.message
    assert "SSO_ADMIN_ALLOW_PRIVATE_URLS for development only" in result.message


def test_a_discovery_url_that_answers_a_web_page_says_so(idp):
    idp.raw("/portal/.well-known/openid-configuration", b"<!DOCTYPE html><html>Sign in</html>")
    report = validate(oidc(idp.url("/portal")), allow_loopback_http=True)
    result = check(report, "discovery.fetch")
    assert result.status == FAIL
    assert "answered with a web page (HTML), not JSON" in result.message
    assert "not an OpenID issuer" in result.message
