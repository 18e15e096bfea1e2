"""Creating the Diffgram app client (the Cognito guide's steps 1 to 3) in a moto pool.

boto3 reaches moto through the local document server, which also answers the pool's discovery
document as real Cognito publishes it (moto's lacks the hosted-UI endpoints), so that the new
provider is validated end to end."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console import cognito, versions
from console.models import AuditEvent, Provider
from tests import idp_server
from tests.support import REGION, aws, make_instance

pytestmark = pytest.mark.django_db

PREFIX = "diffgram-new"
HOSTED_UI = f"https://{PREFIX}.auth.{REGION}.amazoncognito.com"


@pytest.fixture
def pool(moto, idp, settings):
    """An empty user pool (no app client, no domain), reached through the document server."""
    pool_id = aws(moto).create_user_pool(PoolName="corp")["UserPool"]["Id"]
    idp.forward_unknown_to(moto)
    idp_server.serve_cognito(idp, REGION, pool_id, HOSTED_UI)
    settings.AWS_ENDPOINT_URL = idp.base
    return pool_id


def app_clients(moto, pool_id):
    client = aws(moto)
    listed = client.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    return [
        client.describe_user_pool_client(UserPoolId=pool_id, ClientId=c["ClientId"])[
            "UserPoolClient"
        ]
        for c in listed
    ]


def provision(*extra):
    out, err = StringIO(), StringIO()
    call_command(
        "provision_cognito", "--region", REGION, "--name", "Corp Cognito", *extra,
        stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue()


def test_it_creates_a_public_client_and_a_domain_and_stores_a_valid_provider(moto, pool):
    output = provision(
        "--user-pool-id", pool, "--domain-prefix", PREFIX,
        "--url-base", "https://lab.example.test/", "--url-base", "https://prod.example.test/",
    )  # fmt: skip
    [client] = app_clients(moto, pool)
    assert "ClientSecret" not in client  # public
    assert client["CallbackURLs"] == [
        "https://lab.example.test/user/oauth2-login/",
        "https://prod.example.test/user/oauth2-login/",
    ]
    assert client["LogoutURLs"] == [
        "https://lab.example.test/user/login/", "https://prod.example.test/user/login/",
    ]  # fmt: skip
    assert client["AllowedOAuthFlows"] == ["code"] and client["AllowedOAuthFlowsUserPoolClient"]
    assert {"openid", "email"} <= set(client["AllowedOAuthScopes"])
    assert "ALLOW_USER_PASSWORD_AUTH" in client["ExplicitAuthFlows"]
    assert client["SupportedIdentityProviders"] == ["COGNITO"]
    assert aws(moto).describe_user_pool(UserPoolId=pool)["UserPool"]["Domain"] == PREFIX

    provider = Provider.objects.get()
    assert (provider.client_id, provider.cognito_domain) == (client["ClientId"], HOSTED_UI)
    assert not provider.has_secret("client_secret")
    assert provider.validation_passed, provider.validation_checks
    assert f"Created app client {client['ClientId']} in {pool}" in output
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "provider.created", "cognito.domain_created", "cognito.client_created",
        "provider.validated",
    ]  # fmt: skip
    created = AuditEvent.objects.get(action="cognito.client_created")
    assert created.changes["GenerateSecret"] == [None, False]
    assert created.actor_label.startswith("manage.py provision_cognito")

    # Ready: what the Inspect page checks passes, and it publishes to an instance.
    make_instance(provider, "lab", url_base="https://lab.example.test/")
    assert cognito.inspect(provider).ok
    version = versions.publish(provider)
    assert version.settings["OAUTH2_PROVIDER_HOST"] == HOSTED_UI + "/"
    assert "OAUTH2_PROVIDER_CLIENT_SECRET" not in version.all_settings()


def test_a_pool_with_a_domain_keeps_it(moto, pool):
    aws(moto).create_user_pool_domain(UserPoolId=pool, Domain=PREFIX)
    provision("--user-pool-id", pool, "--url-base", "https://lab.example.test/")
    assert not AuditEvent.objects.filter(action="cognito.domain_created").exists()
    assert Provider.objects.get().cognito_domain == HOSTED_UI


def test_nothing_is_created_when_the_pool_has_no_domain_and_no_prefix_is_given(moto, pool):
    with pytest.raises(CommandError, match="has no hosted-UI domain") as caught:
        provision("--user-pool-id", pool, "--url-base", "https://lab.example.test/")
    assert caught.value.returncode == 2
    assert app_clients(moto, pool) == [] and not Provider.objects.exists()


def test_bad_input_is_refused_before_aws_is_called(moto, pool):
    with pytest.raises(CommandError) as caught:
        provision("--user-pool-id", pool, "--url-base", "https://lab.example.test")
    assert "url_bases: End URL_BASE with /" in str(caught.value)
    with pytest.raises(CommandError, match="AWS has no user pool"):
        provision("--user-pool-id", f"{REGION}_Nope123", "--url-base", "https://l.test/")
    assert app_clients(moto, pool) == []


def test_the_form_creates_it_and_lands_on_the_validated_provider(admin_client, moto, pool):
    page = admin_client.get(reverse("provider-new")).content.decode()
    assert reverse("cognito-provision") in page
    response = admin_client.post(
        reverse("cognito-provision"),
        {
            "name": "Corp Cognito", "aws_region": REGION, "user_pool_id": pool,
            "client_name": "diffgram", "url_bases": "https://lab.example.test/",
            "domain_prefix": PREFIX,
        },
        follow=True,
    )  # fmt: skip
    provider = Provider.objects.get()
    assert response.redirect_chain[-1][0] == reverse("provider-detail", args=[provider.pk])
    text = response.content.decode()
    assert f"Created app client {provider.client_id}" in text
    assert "Corp Cognito passed validation" in text
    # A name already taken is a field error, before AWS is called.
    again = admin_client.post(
        reverse("cognito-provision"),
        {"name": "Corp Cognito", "aws_region": REGION, "user_pool_id": pool,
         "client_name": "diffgram", "url_bases": "https://lab.example.test/"},
    )  # fmt: skip
    assert "already exists" in " ".join(again.context["form"].errors["name"])
    assert len(app_clients(moto, pool)) == 1
