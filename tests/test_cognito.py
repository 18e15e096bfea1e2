"""Cognito app-client audit, one-click fix and federated IdPs, against a moto server."""

import json

import boto3
import pytest
from django.urls import reverse

from console import aws as console_aws
from console import cognito, providers
from console.models import AuditEvent
from tests.support import GOOD_CLIENT, REGION, aws, make_pool, make_provider

pytestmark = pytest.mark.django_db


class Hooks:
    """Hooks on the boto3 session of this thread (console/aws.py), the one the console's calls
    in a test client's request use; removed after the test."""

    def __init__(self):
        self.events, self.registered = console_aws.session().events, []

    def register(self, name, handler):
        self.events.register(name, handler)
        self.registered.append((name, handler))

    def remove(self):
        for name, handler in self.registered:
            self.events.unregister(name, handler)


@pytest.fixture
def aws_events():
    hooks = Hooks()
    yield hooks
    hooks.remove()


def statuses(inspection):
    return {check.id: check.status for check in inspection.checks}


def test_a_correctly_configured_client_passes_every_check(moto):
    pool, app = make_pool(moto)
    inspection = cognito.inspect(make_provider(pool, app))
    assert inspection.ok, [(c.id, c.message) for c in inspection.checks]
    assert set(statuses(inspection)) == {
        "callback:https://lab.example.test/", "signout:https://lab.example.test/",
        "oauth.code_flow", "oauth.implicit", "oauth.scopes", "auth_flows.password",
        "client.secret",
        "domain.active", "identity_providers",
    }  # fmt: skip
    assert inspection.domain == "diffgram-lab" and inspection.domain_status == "ACTIVE"


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"CallbackURLs": ["https://other.app/cb"]}, "callback:https://lab.example.test/"),
        ({"LogoutURLs": []}, "signout:https://lab.example.test/"),
        ({"AllowedOAuthFlows": ["implicit"]}, "oauth.code_flow"),
        ({"AllowedOAuthFlowsUserPoolClient": False}, "oauth.code_flow"),
        ({"AllowedOAuthScopes": ["openid"]}, "oauth.scopes"),
        ({"ExplicitAuthFlows": ["ALLOW_REFRESH_TOKEN_AUTH"]}, "auth_flows.password"),
        ({"SupportedIdentityProviders": []}, "identity_providers"),
    ],
)
def test_each_misconfiguration_is_reported(moto, change, failing):
    pool, app = make_pool(moto, {**GOOD_CLIENT, **change})
    found = statuses(cognito.inspect(make_provider(pool, app)))
    assert [check for check, status in found.items() if status == "fail"] == [failing]


def test_a_secret_mismatch_and_a_missing_domain_are_reported(moto):
    pool, app = make_pool(moto, domain=None, secret=True)
    inspection = cognito.inspect(make_provider(pool, app))
    found = statuses(inspection)
    assert found["client.secret"] == "fail" and found["domain.active"] == "fail"
    message = next(c.message for c in inspection.checks if c.id == "client.secret")
    assert "has a secret the console does not hold" in message
    assert "ClientSecret" not in inspection.client  # never kept


def test_the_fix_turns_a_wrong_client_into_a_passing_one_sending_every_field(
    moto, admin_client, aws_events
):
    wrong = {
        **GOOD_CLIENT,
        "CallbackURLs": ["https://other.app/cb"],
        "LogoutURLs": [],
        "AllowedOAuthFlows": [],
        "AllowedOAuthFlowsUserPoolClient": False,
        "AllowedOAuthScopes": ["openid"],
        "ExplicitAuthFlows": ["ALLOW_REFRESH_TOKEN_AUTH"],
    }
    pool, app = make_pool(moto, wrong)
    provider = make_provider(pool, app)
    before = aws(moto).describe_user_pool_client(UserPoolId=pool, ClientId=app["ClientId"])[
        "UserPoolClient"
    ]
    sent = []
    # moto keeps omitted fields (real Cognito resets them), so look at the request itself.
    aws_events.register(
        "before-call.cognito-idp.UpdateUserPoolClient",
        lambda params, **kwargs: sent.append(json.loads(params["body"])),
    )
    plan = admin_client.get(reverse("cognito-fix", args=[provider.pk]))
    assert b"https://lab.example.test/user/oauth2-login/" in plan.content
    admin_client.post(reverse("cognito-fix", args=[provider.pk]))

    assert len(sent) == 1
    writable = cognito.writable_fields(aws(moto))
    left_out = [name for name in before if name in writable and name not in sent[0]]
    assert left_out == [], "these would be reset by real Cognito"
    assert len([name for name in before if name in writable]) >= 10
    assert sent[0]["RefreshTokenValidity"] == 7
    assert sent[0]["ReadAttributes"] == ["email", "name"]
    assert sent[0]["CallbackURLs"] == [
        "https://other.app/cb", "https://lab.example.test/user/oauth2-login/",
    ]  # fmt: skip
    assert cognito.inspect(provider).ok
    event = AuditEvent.objects.get(action="cognito.client_fixed")
    assert event.changes["AllowedOAuthScopes"] == [["openid"], ["openid", "email"]]


def test_access_denied_is_reported_readably(moto, admin_client, aws_events):
    pool, app = make_pool(moto)
    provider = make_provider(pool, app)

    def deny(**kwargs):
        # moto serves every caller, so deny at the client boundary, as AWS would.
        return (
            type("Response", (), {"status_code": 400, "headers": {}})(),
            {
                "Error": {"Code": "AccessDeniedException", "Message": "not authorized"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            },
        )

    aws_events.register("before-call.cognito-idp.DescribeUserPoolClient", deny)
    response = admin_client.get(reverse("cognito-inspect", args=[provider.pk]))
    assert response.status_code == 200
    assert (
        f"AWS denied cognito-idp:DescribeUserPoolClient on app client {app['ClientId']} of "
        f"{pool}: add it to the console&#x27;s IAM policy."
    ) in response.content.decode()


def test_a_missing_pool_is_reported_readably(moto):
    provider = make_provider(f"{REGION}_Missing1", {"ClientId": "nope"})
    with pytest.raises(cognito.AWSError, match="AWS has no"):
        cognito.inspect(provider)


def test_the_hosted_ui_domain_is_read_from_aws(moto, admin_client):
    pool, app = make_pool(moto)
    provider = make_provider(pool, app)
    page = admin_client.get(reverse("cognito-inspect", args=[provider.pk])).content.decode()
    assert "https://diffgram-lab.auth.eu-west-1.amazoncognito.com" in page
    admin_client.post(reverse("cognito-use-domain", args=[provider.pk]))
    provider.refresh_from_db()
    assert provider.cognito_domain == "https://diffgram-lab.auth.eu-west-1.amazoncognito.com"
    event = AuditEvent.objects.get(action="provider.changed")
    assert event.context["source"] == "read from AWS"


def test_a_good_app_client_of_a_pool_moto_serves_is_not_called_ready_for_diffgram(
    moto, admin_client
):
    """moto's discovery document has no hosted-UI endpoints: the provider fails its checks and
    cannot be published, so Inspect must not say it is ready (a trial met exactly this)."""
    pool, app = make_pool(moto)
    provider = providers.run_validation(make_provider(pool, app))[0]
    assert not provider.validation_passed
    assert cognito.inspect(provider).ok  # the app client itself is as Diffgram needs it
    page = admin_client.get(reverse("cognito-inspect", args=[provider.pk])).content.decode()
    assert "✔ app client ready" in page
    assert "Corp Cognito is not ready for Diffgram:" in page
    assert "make demo</code> is a trial that signs in end to end" in page

    provider.validation_passed = True  # as with real Cognito's document
    provider.save(update_fields=["validation_passed"])
    page = admin_client.get(reverse("cognito-inspect", args=[provider.pk])).content.decode()
    assert "not ready for Diffgram" not in page


def test_an_assumed_role_is_used_when_configured(moto):
    iam = boto3.client("iam", region_name=REGION, endpoint_url=moto)
    role = iam.create_role(RoleName="sso-console", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    pool, app = make_pool(moto)
    provider = make_provider(pool, app)
    provider.aws_role_arn = role
    provider.save()
    assert cognito.inspect(provider).ok


def test_inspect_warns_about_the_implicit_grant_and_fix_removes_it(moto, admin_client):
    from console import cognito
    from tests.support import GOOD_CLIENT, aws, make_pool, make_provider

    pool, app = make_pool(moto, {**GOOD_CLIENT, "AllowedOAuthFlows": ["code", "implicit"]})
    provider = make_provider(pool, app)
    checks = {c.id: c for c in cognito.inspect(provider).checks}
    assert checks["oauth.implicit"].status == "warn"
    page = admin_client.get(reverse("cognito-fix", args=[provider.pk])).content.decode()
    assert "The implicit grant is removed" in page
    kept = admin_client.get(reverse("cognito-fix", args=[provider.pk]), {"keep_implicit": "1"})
    assert "The implicit grant stays enabled" in kept.content.decode()
    admin_client.post(reverse("cognito-fix", args=[provider.pk]), {"keep_implicit": "0"})
    client = aws(moto).describe_user_pool_client(UserPoolId=pool, ClientId=app["ClientId"])
    assert client["UserPoolClient"]["AllowedOAuthFlows"] == ["code"]
    event = AuditEvent.objects.get(action="cognito.client_fixed")
    assert event.changes["AllowedOAuthFlows"] == [["code", "implicit"], ["code"]]
