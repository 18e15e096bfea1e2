"""Checks that model what Diffgram's own code does with the settings (docs/DIFFGRAM.md), and
what the console refuses because of it: shared Keycloak clients, missing start-up credentials,
and the release's defects that no setting fixes."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from console import diffgram_releases, discovery, providers, versions
from console.discovery import FAIL, PASS, SKIP, WARN, Fetched, ProviderSpec
from console.forms import InstanceForm
from console.models import Provider
from tests import idp_server
from tests.support import make_instance

KEYCLOAK = ProviderSpec(
    kind="keycloak",
    issuer="https://sso.example.test/auth/realms/diffgram-realm",
    client_id="diffgram-{instance}",
    keycloak_server_url="https://sso.example.test/auth/",
    keycloak_realm="diffgram-realm",
    keycloak_master_user="admin",
    keycloak_master_password_set=True,
    keycloak_diffgram_user="diffgram-admin",
    keycloak_diffgram_password_set=True,
    instance_names=("lab",),
)
pytestmark = pytest.mark.django_db

UNREADABLE = Fetched("https://sso.example.test/", error="connection refused")


def checks(spec, **changes):
    """The checks of `spec` (with changes) when the provider could not even be reached: the
    Diffgram checks read only the configuration, so they run anyway."""
    spec = ProviderSpec(**{**spec.__dict__, **changes})
    results = discovery.evaluate(spec, UNREADABLE, None, allow_loopback_http=False)
    return {check.id: (check.status, check.message) for check in results}


class TestKeycloakStartUpCredentials:
    def test_complete_credentials_pass_even_when_keycloak_is_unreachable(self):
        found = checks(KEYCLOAK)
        assert found["discovery.fetch"][0] == FAIL
        assert found["diffgram.keycloak_admin"] == (
            PASS,
            "Diffgram will log in to the master realm as admin to set up its realm and client.",
        )
        assert found["diffgram.keycloak_realm_user"][0] == PASS

    @pytest.mark.parametrize(
        ("changes", "missing"),
        [
            ({"keycloak_master_user": ""}, "No master admin user:"),
            ({"keycloak_master_password_set": False}, "No master admin password:"),
            (
                {"keycloak_master_user": "", "keycloak_master_password_set": False},
                "No master admin user and password:",
            ),
        ],
    )
    def test_missing_master_credentials_fail_because_diffgram_would_try_admin_admin(
        self, changes, missing
    ):
        status, message = checks(KEYCLOAK, **changes)["diffgram.keycloak_admin"]
        assert status == FAIL
        assert message.startswith(missing)
        assert "tries admin/admin" in message and "SSO never starts" in message

    @pytest.mark.parametrize(
        ("changes", "known"),
        [
            ({"keycloak_diffgram_user": ""}, "the user 'diffgram'"),
            ({"keycloak_diffgram_password_set": False}, "the password 'diffgram'"),
        ],
    )
    def test_a_missing_realm_user_fails_because_diffgram_would_use_a_known_password(
        self, changes, known
    ):
        status, message = checks(KEYCLOAK, **changes)["diffgram.keycloak_realm_user"]
        assert status == FAIL
        assert known in message and "realm 'diffgram-realm'" in message

    def test_check_issuer_does_not_know_them_and_skips_both(self):
        found = checks(KEYCLOAK, keycloak_master_user=None, keycloak_diffgram_user=None)
        assert found["diffgram.keycloak_admin"][0] == SKIP
        assert found["diffgram.keycloak_realm_user"][0] == SKIP


class TestOneKeycloakClientPerInstance:
    def test_a_shared_client_id_fails_once_two_instances_use_it(self):
        status, message = checks(KEYCLOAK, client_id="diffgram", instance_names=("lab", "prod"))[
            "diffgram.keycloak_client_per_instance"
        ]
        assert status == FAIL
        assert message.startswith("2 instances (lab, prod) share client id 'diffgram'")
        assert "diffgram-{instance}" in message

    def test_one_instance_on_a_shared_client_id_passes_with_advice(self):
        status, message = checks(KEYCLOAK, client_id="diffgram")[
            "diffgram.keycloak_client_per_instance"
        ]
        assert status == PASS and "Before assigning a second" in message

    def test_instance_names_in_the_client_id_pass(self):
        status, message = checks(KEYCLOAK, instance_names=("prod", "lab"))[
            "diffgram.keycloak_client_per_instance"
        ]
        assert (status, message) == (
            PASS,
            "Each instance gets its own Keycloak client: diffgram-lab, diffgram-prod.",
        )

    def test_only_keycloak_gets_the_keycloak_checks(self):
        assert "diffgram.keycloak_admin" not in discovery.check_ids("cognito")
        assert "diffgram.known_issues" in discovery.check_ids("cognito")
        assert "diffgram.known_issues" not in discovery.check_ids("oidc")
        found = checks(ProviderSpec(kind="oidc", issuer="https://idp.example.test"))
        assert list(found) == list(discovery.check_ids("oidc"))


class TestKnownDiffgramDefects:
    def test_keycloak_lists_every_defect_with_its_consequence_and_the_way_that_works(self):
        status, message = checks(KEYCLOAK)["diffgram.known_issues"]
        assert status == WARN  # a warning: nothing here can be fixed by a setting
        assert message.startswith("Diffgram 56f04d8 has 5 known defects here")
        for fact in (
            "scope=email only",
            "insufficient_scope",
            "user/oidc-login",
            "404 page",
            "start-up fail with 404",  # a client created by hand in Keycloak
            "python-keycloak==1.9.1",
            "the identity provider's session stays",
            "Federate this Keycloak realm into a Cognito user pool",
        ):
            assert fact in message

    def test_cognito_warns_of_the_sign_out_and_a_secret_adds_refresh(self):
        cognito = ProviderSpec(
            kind="cognito", issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_X"
        )
        status, message = checks(cognito)["diffgram.known_issues"]
        assert status == WARN
        assert message.startswith("Diffgram 56f04d8 has 1 known defect here")
        assert '{"url_redirect": null}' in message and "hosted UI's /logout" in message
        assert "invalid_client" not in message
        status, message = checks(cognito, confidential=True)["diffgram.known_issues"]
        assert message.startswith("Diffgram 56f04d8 has 2 known defects here")
        assert "invalid_client" in message and "Use a public app client" in message

    def test_only_the_keycloak_scope_and_route_defects_block_sign_in(self):
        blocking = diffgram_releases.blocking_issues("56f04d8", "keycloak", client_secret=False)
        assert [issue.id for issue in blocking] == [
            "keycloak.scope_email", "keycloak.redirect_route",
        ]  # fmt: skip
        for secret in (False, True):
            assert (
                diffgram_releases.blocking_issues("56f04d8", "cognito", client_secret=secret) == []
            )
        assert diffgram_releases.blocking_issues("9.9.9", "keycloak", client_secret=False) == []

    def test_an_unknown_diffgram_release_is_a_warning(self):
        status, message = checks(KEYCLOAK, diffgram_version="2.0.0")["diffgram.known_issues"]
        assert status == WARN
        assert "no record of Diffgram 2.0.0's defects (it knows 56f04d8)" in message


def test_check_issuer_prints_the_known_defects(idp):
    server_url = idp_server.serve_keycloak(idp)
    out = StringIO()
    call_command(
        "check_issuer", server_url, "--kind", "keycloak", "--realm", "diffgram-realm",
        "--client-id", "diffgram", stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "Known defects of Diffgram 56f04d8 no setting fixes:" in text
    assert "Workaround: Build Diffgram's images with python-keycloak==1.9.1" in text


# --- the fleet: what the console refuses and what each instance receives ------------------------


def shared_client(provider):
    """The provider edited (as an admin could) to one client id for every instance."""
    provider.client_id = "diffgram"
    provider.save()
    return provider


def test_two_instances_pull_their_own_keycloak_client_ids(client, keycloak_provider):
    lab, lab_token = make_instance(keycloak_provider, "lab")
    prod, prod_token = make_instance(keycloak_provider, "prod", shape="helm")
    versions.publish(keycloak_provider)

    def pull(instance, token, output="env"):
        return client.get(
            reverse("api-pull-config", args=[instance.pk]),
            {"format": output},
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    lab_pull, prod_pull = pull(lab, lab_token), pull(prod, prod_token)
    assert "OAUTH2_PROVIDER_CLIENT_ID=diffgram-lab\n" in lab_pull.content.decode()
    assert "OAUTH2_PROVIDER_CLIENT_ID=diffgram-prod\n" in prod_pull.content.decode()
    assert lab_pull["ETag"] != prod_pull["ETag"]  # different content, different tags
    helm = pull(prod, prod_token, "helm").content.decode()
    assert "OAUTH2_PROVIDER_CLIENT_ID: '\"diffgram-prod\"'" in helm
    document = json.loads(pull(lab, lab_token, "json").content)
    assert document["settings"]["OAUTH2_PROVIDER_CLIENT_ID"] == "diffgram-lab"
    assert "OAUTH2_PROVIDER_CLIENT_SECRET" not in document["settings"]  # read from Keycloak


def test_assigning_a_second_instance_to_a_shared_client_is_refused(keycloak_provider):
    shared_client(keycloak_provider)
    make_instance(keycloak_provider, "lab")
    form = InstanceForm(
        data={
            "name": "prod", "url_base": "https://prod.example.test/", "shape": "compose",
            "rollout_group": "default", "provider": keycloak_provider.pk, "push_target": "none",
        }
    )  # fmt: skip
    assert not form.is_valid()
    message = " ".join(form.errors["provider"])
    assert "client id 'diffgram', which lab already uses" in message
    assert "Put {instance} in Lab Keycloak's client id first" in message


def test_publishing_to_instances_sharing_a_client_is_refused_naming_the_check(
    admin_client, keycloak_provider
):
    make_instance(keycloak_provider, "lab")
    make_instance(keycloak_provider, "prod")
    provider, report = providers.run_validation(shared_client(keycloak_provider))
    assert provider.validation_passed is False
    assert [c.id for c in report.checks if c.status == FAIL] == [
        "diffgram.keycloak_client_per_instance"
    ]
    response = admin_client.post(reverse("provider-publish", args=[provider.pk]), follow=True)
    assert b"diffgram.keycloak_client_per_instance" in response.content
    assert not provider.versions.exists()

    # Validated before the second instance arrived (e.g. by an import): refused under lock too.
    Provider.objects.filter(pk=provider.pk).update(validation_passed=True, validation_checks=[])
    with pytest.raises(versions.PublishRefused, match="diffgram.keycloak_client_per_instance: 2"):
        versions.publish(Provider.objects.get(pk=provider.pk))


def test_the_provider_page_lists_each_instances_client_and_redirect_uri(
    admin_client, keycloak_provider
):
    make_instance(keycloak_provider, "lab")
    make_instance(keycloak_provider, "prod")
    page = admin_client.get(reverse("provider-detail", args=[keycloak_provider.pk]))
    rows = page.context["instance_rows"]
    assert [(row["instance"].name, row["client_id"]) for row in rows] == [
        ("lab", "diffgram-lab"),
        ("prod", "diffgram-prod"),
    ]
    text = page.content.decode()
    assert "https://prod.example.test/user/oidc-login" in text
    assert "none to enter: Diffgram creates the client and reads its secret" in text


def test_only_keycloak_client_ids_may_name_the_instance(admin_client, idp, settings):
    response = admin_client.post(
        reverse("provider-create", args=["oidc"]),
        {"name": "X", "issuer": "https://idp.example.test", "client_id": "a-{instance}",
         "scopes": "openid"},
    )  # fmt: skip
    assert "Only a Keycloak client id can contain {instance}" in " ".join(
        response.context["form"].errors["client_id"]
    )
    response = admin_client.post(
        reverse("provider-create", args=["keycloak"]),
        {"name": "K", "keycloak_server_url": "https://sso.example.test/", "keycloak_realm": "r",
         "client_id": "diffgram-{name}"},
    )  # fmt: skip
    assert "The only placeholder" in " ".join(response.context["form"].errors["client_id"])
    assert not Provider.objects.exists()
