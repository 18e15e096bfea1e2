"""Messages that lead somewhere: each names what is wrong and what to do, so that a first-time
admin can act on it without reading the code."""

import urllib.parse

import pytest
from django.urls import reverse

from console import discovery, kinds, providers
from console.discovery import FAIL, PASS, ProviderSpec
from console.kinds import OIDCProviderForm
from console.models import Provider
from tests import idp_server
from tests.support import authorize_at_op, free_port, set_groups

pytestmark = pytest.mark.django_db


def check(report, check_id):
    return next(c for c in report.checks if c.id == check_id)


def validate(spec, allow_loopback_http):
    return discovery.validate(spec, kinds.OIDC.checks, allow_loopback_http=allow_loopback_http)


def oidc(issuer):
    return ProviderSpec(issuer=issuer, client_id="c", confidential=True)


# --- issuer URLs --------------------------------------------------------------------------------


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


# --- Cognito without discovery ------------------------------------------------------------------


def test_a_cognito_provider_without_discovery_shows_incomplete_settings_and_the_way_out(
    admin_client, settings
):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    provider = Provider(
        name="Corp Cognito", kind="cognito", aws_region="eu-west-1",
        user_pool_id="eu-west-1_AbC123xyz", client_id="client", scopes="openid email",
        diffgram_url_base="https://lab.example.test/",
    )  # fmt: skip
    provider.issuer = kinds.of(provider).issuer(provider)
    provider.save()
    provider, report = providers.run_validation(provider)
    failure = check(report, "discovery.fetch").message
    assert "outbound HTTPS to cognito-idp.eu-west-1.amazonaws.com (port 443)" in failure
    assert "AWS_ENDPOINT_URL" in failure and "for tests only" in failure

    page = admin_client.get(reverse("provider-detail", args=[provider.pk])).content.decode()
    variables = page[page.index('<table class="variables">') :]
    variables = variables[: variables.index("</table>")]
    assert '<code>OAUTH2_PROVIDER_HOST</code></th><td><span class="status-fail">incomplete' in (
        variables
    )
    assert '<code>COGNITO_LOGIN_URL</code></th><td><span class="status-fail">incomplete' in (
        variables
    )
    assert "oauth2/authorize?" not in variables  # no relative login URL shown as if valid
    assert "Diffgram cannot sign anyone in with them yet" in page


# --- test login ---------------------------------------------------------------------------------


def run_test_login(admin_client, mock_op, settings, sub, scopes):
    settings.SSO_ADMIN_ALLOW_PRIVATE_URLS = True
    settings.CONSOLE_ADMIN_GROUPS = ["sso-admins"]
    set_groups(mock_op, "alice-sub", ["sso-admins"])
    set_groups(mock_op, "nora-sub", [])
    form = OIDCProviderForm(
        data={"name": "Okta", "issuer": mock_op, "client_id": "c", "client_secret": "s",
              "scopes": scopes}
    )  # fmt: skip
    assert form.is_valid(), form.errors
    provider, _ = providers.run_validation(providers.save_provider(form))
    start = admin_client.get(reverse("provider-test-login", args=[provider.pk]))
    parts = urllib.parse.urlsplit(authorize_at_op(start["Location"], sub))
    return provider, admin_client.get(f"{parts.path}?{parts.query}").content.decode()


def test_a_test_login_in_no_console_group_is_not_green_and_says_what_to_add(
    admin_client, mock_op, settings
):
    provider, page = run_test_login(admin_client, mock_op, settings, "nora-sub", "openid email")
    assert "result-ok" not in page and "result-warn" in page
    assert "the console would refuse it" in page
    assert "The <code>groups</code> claim was empty or absent" in page
    assert "Add <code>groups</code> to this provider" in page
    assert "for the console's own sign-in" not in page
    refused = admin_client.post(reverse("provider-console-login", args=[provider.pk]))
    assert refused.status_code == 302
    assert not Provider.objects.get(pk=provider.pk).console_login


def test_only_a_test_login_that_maps_to_admin_offers_the_console_sign_in(
    admin_client, mock_op, settings
):
    provider, page = run_test_login(
        admin_client, mock_op, settings, "alice-sub", "openid email groups"
    )
    assert "result-ok" in page and "would sign in as <strong>admin</strong>" in page
    assert "Add <code>groups</code>" not in page
    assert "for the console's own sign-in" in page
    admin_client.post(reverse("provider-console-login", args=[provider.pk]))
    assert Provider.objects.get(pk=provider.pk).console_login
