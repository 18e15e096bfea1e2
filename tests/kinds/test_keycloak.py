"""The Keycloak kind: the Diffgram settings it renders, the checks that model what Diffgram's
own code does with them at start-up (docs/DIFFGRAM.md), and what the console refuses because
of it: shared clients, missing start-up credentials, the release's defects no setting fixes."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from console import diffgram, diffgram_releases, discovery, providers, versions
from console.diffgram import ProviderConfig
from console.discovery import FAIL, PASS, SKIP, WARN, Fetched, ProviderSpec
from console.instance_forms import InstanceForm
from console.kinds import KEYCLOAK as KIND
from console.kinds import OIDC
from console.models import Provider
from tests import idp_server
from tests.idp_server import keycloak_document
from tests.support import check_message as message
from tests.support import check_statuses as statuses
from tests.support import make_instance, run_check_issuer

KEYCLOAK = ProviderSpec(
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


def checks(spec, kind=KIND, **changes):
    """The checks of `spec` (with changes) when the provider could not even be reached: the
    Diffgram checks read only the configuration, so they run anyway."""
    spec = ProviderSpec(**{**spec.__dict__, **changes})
    results = discovery.evaluate(spec, kind.checks, UNREADABLE, None, allow_loopback_http=False)
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

    def test_a_generic_provider_gets_none_of_the_keycloak_checks(self):
        found = checks(ProviderSpec(issuer="https://idp.example.test"), kind=OIDC)
        assert list(found) == list(OIDC.checks.ids())
        assert not any(check_id.startswith("diffgram.keycloak") for check_id in found)


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
        # One line a defect, and a workaround shared by two said once, naming both.
        lines = message.split("\n")
        assert [line[:3] for line in lines[1:6]] == ["1. ", "2. ", "3. ", "4. ", "5. "]
        assert message.count("Federate this Keycloak realm") == 1
        assert "(defects 1, 2)." in message

    def test_only_the_keycloak_scope_and_route_defects_block_sign_in(self):
        blocking = diffgram_releases.blocking_issues(
            "56f04d8", KIND.diffgram_areas, client_secret=False
        )
        assert [issue.id for issue in blocking] == [
            "keycloak.scope_email", "keycloak.redirect_route",
        ]  # fmt: skip
        assert (
            diffgram_releases.blocking_issues("9.9.9", KIND.diffgram_areas, client_secret=False)
            == []
        )

    def test_an_unknown_diffgram_release_is_a_warning(self):
        status, message = checks(KEYCLOAK, diffgram_version="2.0.0")["diffgram.known_issues"]
        assert status == WARN
        assert "no record of Diffgram 2.0.0's defects (it knows 56f04d8)" in message


# --- against documents served over real HTTP on 127.0.0.1 --------------------------------------


def validate(spec):
    return discovery.validate(spec, KIND.checks, allow_loopback_http=True)


@pytest.fixture
def keycloak(idp):
    server = idp_server.serve_keycloak(idp)
    return ProviderSpec(
        issuer=f"{server}realms/diffgram-realm",
        client_id="diffgram-{instance}",
        keycloak_server_url=server,
        keycloak_realm="diffgram-realm",
        url_base="https://diffgram.example.test/",
        keycloak_master_user="admin",
        keycloak_master_password_set=True,
        keycloak_diffgram_user="diffgram-admin",
        keycloak_diffgram_password_set=True,
        instance_names=("lab", "prod"),
    )


def test_a_keycloak_shaped_provider_passes_including_diffgram_checks(keycloak):
    report = validate(keycloak)
    assert report.ok, report.as_list()
    assert [check.id for check in report.checks] == list(KIND.checks.ids())
    assert statuses(report)["diffgram.host"] == PASS
    assert statuses(report)["diffgram.url_base"] == PASS
    assert statuses(report)["diffgram.keycloak_admin"] == PASS
    assert statuses(report)["diffgram.keycloak_realm_user"] == PASS
    assert message(report, "diffgram.keycloak_client_per_instance") == (
        "Each instance gets its own Keycloak client: diffgram-lab, diffgram-prod."
    )
    assert statuses(report)["diffgram.known_issues"] == WARN  # Diffgram's, not the provider's
    assert f"OAUTH2_PROVIDER_HOST={keycloak.keycloak_server_url}" in message(
        report, "diffgram.host"
    )


def test_the_keycloak_token_auth_check_only_informs(idp, keycloak):
    """Diffgram creates its Keycloak client and reads the secret itself: nothing to fix here."""
    idp_server.serve_keycloak(
        idp, change=lambda d: d.update(token_endpoint_auth_methods_supported=["private_key_jwt"])
    )
    report = validate(keycloak)
    assert statuses(report)["token_auth.method"] == WARN
    assert "admin API" in message(report, "token_auth.method")
    assert report.ok


def test_diffgram_needs_the_userinfo_endpoint(idp, keycloak):
    document = keycloak_document(keycloak.keycloak_server_url, "diffgram-realm")
    del document["userinfo_endpoint"]
    idp.json("/auth/realms/diffgram-realm/.well-known/openid-configuration", document)
    assert statuses(validate(keycloak))["userinfo.present"] == FAIL


def test_a_keycloak_url_base_without_trailing_slash_fails(keycloak):
    report = validate(
        ProviderSpec(**{**keycloak.__dict__, "url_base": "https://diffgram.example.test"})
    )
    assert statuses(report)["diffgram.url_base"] == FAIL
    assert "'https://diffgram.example.testuser/oidc-login'" in message(report, "diffgram.url_base")


def test_a_keycloak_realm_that_does_not_match_the_issuer_fails(keycloak):
    report = validate(ProviderSpec(**{**keycloak.__dict__, "keycloak_realm": "other"}))
    assert statuses(report)["diffgram.host"] == FAIL
    assert "realms/other" in message(report, "diffgram.host")


def test_check_issuer_exits_0_and_prints_json_with_diffgram_settings(keycloak):
    code, output = run_check_issuer(
        keycloak.keycloak_server_url,
        "--kind", "keycloak", "--realm", "diffgram-realm", "--client-id", "diffgram",
        "--url-base", "https://diffgram.example.test/", "--json",
    )  # fmt: skip
    assert code == 0, output
    result = json.loads(output)
    assert result["ok"] is True
    assert [check["id"] for check in result["checks"]] == list(KIND.checks.ids())
    statuses_ = {check["id"]: check["status"] for check in result["checks"]}
    # The credentials and the instances are not known to check_issuer: add_provider checks them.
    assert statuses_["diffgram.keycloak_admin"] == statuses_["diffgram.keycloak_realm_user"] == SKIP
    assert {issue["id"] for issue in result["known_issues"]} >= {
        "keycloak.scope_email", "keycloak.redirect_route",
    }  # fmt: skip
    assert result["diffgram"] == {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": "keycloak",
        "OAUTH2_PROVIDER_HOST": keycloak.keycloak_server_url,
        "OAUTH2_PROVIDER_CLIENT_ID": "diffgram",
        "KEYCLOAK_REALM": "diffgram-realm",
    }


# --- what Diffgram receives --------------------------------------------------------------------


def test_settings_add_the_trailing_slash_and_admin_credentials():
    config = ProviderConfig(
        client_id="diffgram",
        keycloak_server_url="https://sso.example.test/auth",
        keycloak_realm="diffgram-realm",
        keycloak_master_user="admin",
        keycloak_master_password="m4ster",
        keycloak_diffgram_user="diffgram-admin",
        client_secret="stored-before-it-was-dropped",  # never published for Keycloak
    )
    assert KIND.diffgram_settings(config) == {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": "keycloak",
        "OAUTH2_PROVIDER_HOST": "https://sso.example.test/auth/",
        "OAUTH2_PROVIDER_CLIENT_ID": "diffgram",
        "KEYCLOAK_REALM": "diffgram-realm",
        "KEY_CLOAK_MASTER_USER": "admin",
        "KEY_CLOAK_MASTER_PASSWORD": "m4ster",
        "KEY_CLOAK_DIFFGRAM_USER": "diffgram-admin",
    }


def test_each_instance_receives_its_own_client_id():
    version_settings = {"OAUTH2_PROVIDER_CLIENT_ID": "diffgram-{instance}", "USE_OAUTH2": "True"}
    assert diffgram.instance_settings(version_settings, "", "https://lab.example.test/", "lab") == {
        "OAUTH2_PROVIDER_CLIENT_ID": "diffgram-lab",
        "USE_OAUTH2": "True",
    }
    assert version_settings["OAUTH2_PROVIDER_CLIENT_ID"] == "diffgram-{instance}"  # untouched


def test_the_redirect_uri_follows_diffgrams_own_concatenation():
    # Diffgram inserts no slash, so a URL_BASE without one gives a broken URI.
    assert KIND.callback_url("https://d.example.test/") == "https://d.example.test/user/oidc-login"
    assert KIND.callback_url("https://d.example.test") == "https://d.example.testuser/oidc-login"
    assert KIND.registrations("https://d.example.test/")[0]["value"] == (
        "https://d.example.test/user/oidc-login"
    )


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
    assert "Not with Lab Keycloak: 2 instances (lab, prod) share client id 'diffgram'" in message
    assert "Put {instance} in the client id" in message


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
    with pytest.raises(versions.PublishRefused, match=r"2 instances \(lab, prod\) share client"):
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
