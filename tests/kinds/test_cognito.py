"""The Cognito kind: the Diffgram settings it renders and what to register at the user pool's
app client (docs/DIFFGRAM.md)."""

from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from django.urls import reverse

from console import discovery, kinds, providers
from console.diffgram import ProviderConfig
from console.discovery import FAIL, PASS, WARN, Fetched, ProviderSpec
from console.kinds import COGNITO
from console.models import Provider
from tests import idp_server
from tests.idp_server import cognito_document
from tests.support import check_message as message
from tests.support import check_statuses as statuses
from tests.support import free_port

REGION, POOL = "eu-west-1", "eu-west-1_AbC123xyz"
HOSTED_UI = "https://diffgram.auth.eu-west-1.amazoncognito.com"
COGNITO_DISCOVERY = {
    "authorization_endpoint": f"{HOSTED_UI}/oauth2/authorize",
    "token_endpoint": f"{HOSTED_UI}/oauth2/token",
    "userinfo_endpoint": f"{HOSTED_UI}/oauth2/userInfo",
}


def test_settings_take_the_host_from_the_token_endpoint():
    config = ProviderConfig(
        client_id="4dn1c",
        client_secret="s3cret",
        scopes="openid email profile",
        discovery=COGNITO_DISCOVERY,
    )
    variables = COGNITO.diffgram_settings(config, "https://diffgram.example.test/")
    login_url = variables.pop("COGNITO_LOGIN_URL")
    assert variables == {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": "cognito",
        "OAUTH2_PROVIDER_HOST": f"{HOSTED_UI}/",
        "OAUTH2_PROVIDER_CLIENT_ID": "4dn1c",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "s3cret",
    }
    parts = urlsplit(login_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{HOSTED_UI}/oauth2/authorize"
    assert parse_qs(parts.query) == {
        "client_id": ["4dn1c"],
        "response_type": ["code"],
        "scope": ["openid email profile"],
        "redirect_uri": ["https://diffgram.example.test/user/oauth2-login/"],
    }


def test_without_discovery_the_entered_domain_is_used_and_a_missing_secret_omitted():
    config = ProviderConfig(client_id="4dn1c", cognito_domain="https://auth.example.test")
    variables = COGNITO.diffgram_settings(config, "https://diffgram.example.test")
    assert variables["OAUTH2_PROVIDER_HOST"] == "https://auth.example.test/"
    assert variables["COGNITO_LOGIN_URL"].startswith("https://auth.example.test/oauth2/authorize?")
    assert (
        "redirect_uri=https%3A%2F%2Fdiffgram.example.test%2Fuser%2Foauth2-login%2F"
        in (variables["COGNITO_LOGIN_URL"])
    )
    assert "OAUTH2_PROVIDER_CLIENT_SECRET" not in variables


def test_the_login_url_needs_a_url_base():
    config = ProviderConfig(client_id="c", discovery=COGNITO_DISCOVERY)
    assert "COGNITO_LOGIN_URL" not in COGNITO.diffgram_settings(config)


def test_registration_urls_follow_diffgrams_own_concatenation():
    assert COGNITO.registrations("https://d.example.test") == [
        {
            "label": "Allowed callback (redirect) URL",
            "value": "https://d.example.test/user/oauth2-login/",
        },
        {"label": "Allowed sign-out URL", "value": "https://d.example.test/user/login/"},
    ]


def test_the_issuer_is_derived_from_region_and_pool():
    provider = COGNITO.draft({"aws_region": "eu-west-1", "user_pool_id": "eu-west-1_AbC"})
    assert provider.issuer == "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC"


def test_the_command_line_reads_region_and_pool_from_the_issuer():
    fields = COGNITO.command_fields("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC", {})
    assert (fields["aws_region"], fields["user_pool_id"]) == ("eu-west-1", "eu-west-1_AbC")
    with pytest.raises(ValueError, match="give the issuer"):
        COGNITO.command_fields("https://idp.example.test/", {})


def known_issues_check(confidential):
    spec = ProviderSpec(
        issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X", confidential=confidential
    )
    unreadable = Fetched("https://cognito-idp.eu-west-1.amazonaws.com/", error="refused")
    results = discovery.evaluate(spec, COGNITO.checks, unreadable, None, allow_loopback_http=False)
    return next((c.status, c.message) for c in results if c.id == "diffgram.known_issues")


def test_diffgram_warns_of_the_sign_out_and_a_secret_adds_refresh():
    status, message = known_issues_check(confidential=False)
    assert status == WARN
    assert message.startswith("Diffgram 56f04d8 has 1 known defect here")
    assert '{"url_redirect": null}' in message and "hosted UI's /logout" in message
    assert "invalid_client" not in message
    status, message = known_issues_check(confidential=True)
    assert message.startswith("Diffgram 56f04d8 has 2 known defects here")
    assert "invalid_client" in message and "Use a public app client" in message


def test_no_known_defect_keeps_anyone_from_signing_in():
    for secret in (False, True):
        assert COGNITO.blocking_issues(client_secret=secret) == []


# --- against documents served over real HTTP on 127.0.0.1 --------------------------------------


def validate(spec):
    return discovery.validate(spec, COGNITO.checks, allow_loopback_http=True)


@pytest.fixture
def cognito(idp):
    idp_server.serve_cognito(idp, REGION, POOL, HOSTED_UI)
    return ProviderSpec(
        issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}",
        discovery_url=idp.url(f"/{POOL}/.well-known/openid-configuration"),
        client_id="4dn1c",
        url_base="https://diffgram.example.test/",
    )


def test_a_cognito_shaped_provider_passes_including_diffgram_checks(cognito):
    report = validate(cognito)
    assert report.ok, report.as_list()
    assert message(report, "diffgram.host") == (
        f"OAUTH2_PROVIDER_HOST={HOSTED_UI}/ matches the discovery document."
    )


def test_a_confidential_cognito_client_needs_client_secret_post(idp, cognito):
    def basic_only(document):
        document["token_endpoint_auth_methods_supported"] = ["client_secret_basic"]

    confidential = ProviderSpec(**{**cognito.__dict__, "confidential": True})
    document = cognito_document(REGION, POOL, HOSTED_UI, idp.url(f"/{POOL}/.well-known/jwks.json"))
    basic_only(document)
    idp.json(f"/{POOL}/.well-known/openid-configuration", document)
    report = validate(confidential)
    assert statuses(report)["token_auth.method"] == FAIL
    assert "client_secret_post" in message(report, "token_auth.method")
    # Absent means client_secret_basic only, per the spec.
    del document["token_endpoint_auth_methods_supported"]
    idp.json(f"/{POOL}/.well-known/openid-configuration", document)
    assert statuses(validate(confidential))["token_auth.method"] == FAIL
    assert statuses(validate(cognito))["token_auth.method"] == PASS  # public: nothing sent


def test_cognito_endpoints_off_the_hosted_ui_domain_fail_the_host_check(idp, cognito):
    document = cognito_document(REGION, POOL, HOSTED_UI, idp.url(f"/{POOL}/.well-known/jwks.json"))
    document["userinfo_endpoint"] = "https://elsewhere.example.test/oauth2/userInfo"
    idp.json(f"/{POOL}/.well-known/openid-configuration", document)
    report = validate(cognito)
    assert statuses(report)["diffgram.host"] == FAIL
    assert (
        "Diffgram will call 'https://diffgram.auth.eu-west-1.amazoncognito.com/oauth2/userInfo'"
        in (message(report, "diffgram.host"))
    )


def test_moto_cognito_discovery_and_jwks(moto):
    client = boto3.client("cognito-idp", region_name=REGION)
    pool_id = client.create_user_pool(PoolName="diffgram")["UserPool"]["Id"]
    spec = ProviderSpec(
        issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
        discovery_url=f"{moto}/{pool_id}/.well-known/openid-configuration",
    )
    report = validate(spec)
    assert statuses(report)["discovery.fetch"] == PASS
    assert statuses(report)["issuer.match"] == PASS
    assert statuses(report)["jwks.keys"] == PASS
    # moto's document lacks the hosted-UI endpoints real Cognito publishes, and we say so.
    assert statuses(report)["metadata.required"] == FAIL
    assert "authorization_endpoint, token_endpoint" in message(report, "metadata.required")


@pytest.mark.django_db
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
    failure = message(report, "discovery.fetch")
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
