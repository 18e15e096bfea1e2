"""Identity providers through the forms, views and commands an admin uses."""

import os
import re
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from console import instances, kinds, versions
from console.models import (
    AuditEvent,
    Instance,
    Provider,
)
from tests import idp_server
from tests.support import make_instance, stored_cognito_provider

pytestmark = pytest.mark.django_db

CANARY = "canary-s3cret-9d2f4b"
REGION, POOL = "eu-west-1", "eu-west-1_AbC123xyz"
HOSTED_UI = "https://diffgram.auth.eu-west-1.amazoncognito.com"


def actions():
    return list(AuditEvent.objects.order_by("id").values_list("action", flat=True))


@pytest.fixture
def keycloak_server(idp):
    return idp_server.serve_keycloak(idp)


def keycloak_form(server_url, **overrides):
    return {
        "name": "Lab Keycloak",
        "keycloak_server_url": server_url,
        "keycloak_realm": "diffgram-realm",
        "client_id": "diffgram",
        "keycloak_master_user": "admin",
        "keycloak_master_password": CANARY,
        "keycloak_diffgram_user": "diffgram-admin",
        "keycloak_diffgram_password": CANARY + "-diffgram",
        "diffgram_url_base": "https://diffgram.example.test/",
        **overrides,
    }


def create_keycloak(admin_client, server_url, **overrides):
    response = admin_client.post(
        reverse("provider-create", args=["keycloak"]), keycloak_form(server_url, **overrides)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    return Provider.objects.get(name=overrides.get("name", "Lab Keycloak"))


def edit_data(provider, **changes):
    """What the edit form posts back: current values, secrets left blank, plus changes."""
    form = kinds.of(provider).form(instance=provider)
    data = {
        name: form[name].value()
        for name in form.fields
        if not name.startswith("clear_") and name not in Provider.SECRET_NAMES
    }
    data["revision"] = provider.revision
    return {key: value for key, value in {**data, **changes}.items() if value is not None}


class TestCreate:
    def test_it_creates_validates_and_audits_a_keycloak_provider(
        self, admin_client, keycloak_server
    ):
        provider = create_keycloak(admin_client, keycloak_server)
        assert provider.kind == "keycloak"
        assert provider.issuer == f"{keycloak_server}realms/diffgram-realm"
        assert provider.validation_passed is True
        assert provider.discovery_snapshot["issuer"] == provider.issuer
        assert provider.jwks_snapshot["keys"]
        assert actions() == [
            "provider.created",
            "provider.secret_set",
            "provider.secret_set",
            "provider.validated",
        ]
        created = AuditEvent.objects.get(action="provider.created")
        assert created.actor_label == "alice-admin"
        assert created.changes["keycloak_realm"] == [None, "diffgram-realm"]
        secret_events = AuditEvent.objects.filter(action="provider.secret_set")
        assert sorted(e.context["field"] for e in secret_events) == [
            "keycloak_diffgram_password",
            "keycloak_master_password",
        ]

    def test_it_creates_a_cognito_provider_with_the_computed_issuer(
        self, admin_client, idp, settings
    ):
        idp_server.serve_cognito(idp, REGION, POOL, HOSTED_UI)
        settings.AWS_ENDPOINT_URL = idp.base
        response = admin_client.post(
            reverse("provider-create", args=["cognito"]),
            {
                "name": "Corporate Cognito",
                "aws_region": REGION,
                "user_pool_id": POOL,
                "client_id": "4dn1c",
                "cognito_domain": "",
                "scopes": "openid email",
                "diffgram_url_base": "https://diffgram.example.test/",
            },
        )
        assert response.status_code == 302
        provider = Provider.objects.get()
        assert provider.issuer == f"https://cognito-idp.{REGION}.amazonaws.com/{POOL}"
        assert provider.validation_passed, provider.validation_checks
        page = admin_client.get(reverse("provider-detail", args=[provider.pk])).content.decode()
        assert f"{HOSTED_UI}/" in page  # OAUTH2_PROVIDER_HOST from discovery
        assert "https://diffgram.example.test/user/oauth2-login/" in page
        assert 'data-copy="https://diffgram.example.test/user/login/"' in page

    def test_it_creates_a_generic_oidc_provider_against_the_node_op(self, admin_client, node_op):
        response = admin_client.post(
            reverse("provider-create", args=["oidc"]),
            {
                "name": "Node OP",
                "issuer": node_op.issuer,
                "client_id": "console",
                "client_secret": "console-test-secret",
                "scopes": "openid email profile groups",
            },
        )
        assert response.status_code == 302
        assert Provider.objects.get().validation_passed

    def test_it_saves_a_provider_whose_validation_fails_and_says_so(self, admin_client, idp):
        issuer = idp_server.serve_okta(
            idp, change=lambda d: d.update(id_token_signing_alg_values_supported=["ES256"])
        )
        response = admin_client.post(
            reverse("provider-create", args=["oidc"]),
            {"name": "Bad", "issuer": issuer, "client_id": "x", "scopes": "openid"},
            follow=True,
        )
        provider = Provider.objects.get()
        assert provider.validation_passed is False
        assert b"failed validation (1 failing check)" in response.content
        assert b'data-check="id_token_alg.rs256"' in response.content
        # The failure heads the list, above the passes that ran before it.
        listed = re.findall(r'class="check check-(\w+)"', response.content.decode())
        assert listed[0] == "fail" and "pass" in listed
        assert listed == sorted(listed, key=["fail", "warn", "pass", "skip"].index)
        assert [c["status"] for c in provider.validation_checks][0] == "pass"  # as they ran

    @pytest.mark.parametrize(
        ("kind", "data", "field", "error"),
        [
            ("cognito", {"aws_region": "Europe"}, "aws_region", "Enter an AWS region"),
            ("cognito", {"user_pool_id": "us-east-1_Abc"}, "user_pool_id", "not in region"),
            ("cognito", {"scopes": "openid profile"}, "scopes", "needs the scope email"),
            (
                "keycloak",
                {"keycloak_server_url": "sso.example.test"},
                "keycloak_server_url",
                "full URL",
            ),
            (
                "oidc",
                {"issuer": "https://x.example.test/?a=1"},
                "issuer",
                "must not contain a query",
            ),
        ],
    )
    def test_it_shows_field_errors_and_keeps_the_input(
        self, admin_client, kind, data, field, error
    ):
        base = {
            "cognito": {
                "name": "C", "aws_region": REGION, "user_pool_id": POOL, "client_id": "c",
                "scopes": "openid email",
            },
            "keycloak": {
                "name": "K", "keycloak_server_url": "https://sso.example.test/",
                "keycloak_realm": "r", "client_id": "c",
            },
            "oidc": {
                "name": "O", "issuer": "https://x.example.test", "client_id": "c",
                "scopes": "openid",
            },
        }[kind]  # fmt: skip
        response = admin_client.post(reverse("provider-create", args=[kind]), {**base, **data})
        assert response.status_code == 200
        assert error in " ".join(response.context["form"].errors[field])
        assert response.context["form"].data[field] == data[field]
        assert not Provider.objects.exists()


class TestSecrets:
    def test_secrets_are_encrypted_at_rest_and_never_shown(self, admin_client, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server)
        row = Provider.objects.filter(pk=provider.pk).values().get()
        assert CANARY not in str(row)
        assert provider.secret("keycloak_master_password") == CANARY
        for url in (
            reverse("provider-detail", args=[provider.pk]),
            reverse("provider-edit", args=[provider.pk]),
            reverse("providers"),
            reverse("history"),
        ):
            assert CANARY not in admin_client.get(url).content.decode()
        assert CANARY not in str(list(AuditEvent.objects.values()))

    def test_blank_keeps_new_value_replaces_clear_removes(self, admin_client, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server, keycloak_diffgram_password="")
        edit_url = reverse("provider-edit", args=[provider.pk])
        page = admin_client.get(edit_url).content.decode()
        assert "Currently set. Leave blank to keep it." in page
        assert "Currently not set." in page  # the Diffgram admin password
        name = "keycloak_master_password"

        admin_client.post(edit_url, edit_data(provider, client_id="diffgram-2"))
        provider.refresh_from_db()
        assert provider.client_id == "diffgram-2"
        assert provider.secret(name) == CANARY

        admin_client.post(edit_url, edit_data(provider, **{name: "rotated-value"}))
        provider.refresh_from_db()
        assert provider.secret(name) == "rotated-value"

        admin_client.post(edit_url, edit_data(provider, **{f"clear_{name}": "on"}))
        provider.refresh_from_db()
        assert not provider.has_secret(name)
        events = AuditEvent.objects.filter(
            action__in=["provider.secret_set", "provider.secret_cleared"], id__gt=3
        ).order_by("id")
        assert [(e.action, e.changes) for e in events] == [
            ("provider.secret_set", {name: ["[set]", "[changed]"]}),
            ("provider.secret_cleared", {name: ["[set]", "[cleared]"]}),
        ]

    def test_a_new_value_and_clear_together_is_an_error(self, admin_client, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server)
        response = admin_client.post(
            reverse("provider-edit", args=[provider.pk]),
            edit_data(provider, keycloak_master_password="x", clear_keycloak_master_password="on"),
        )
        assert b"Either enter a new value or clear it, not both." in response.content

    def test_rotate_encryption_keys_re_encrypts_with_the_first_key(
        self, admin_client, keycloak_server, settings
    ):
        provider = create_keycloak(admin_client, keycloak_server)
        old_keys = list(settings.FIELD_ENCRYPTION_KEYS)
        new_key = Fernet.generate_key().decode()
        settings.FIELD_ENCRYPTION_KEYS = [new_key, *old_keys]
        out = StringIO()
        call_command("rotate_encryption_keys", stdout=out)
        assert "Re-encrypted 2 secrets" in out.getvalue()
        settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
        provider.refresh_from_db()
        assert provider.secret("keycloak_master_password") == CANARY
        event = AuditEvent.objects.get(action="keys.rotated")
        assert event.context == {"secrets_reencrypted": 2}


class TestEditing:
    def test_an_edit_is_audited_with_the_field_diff(self, admin_client, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server)
        admin_client.post(
            reverse("provider-edit", args=[provider.pk]), edit_data(provider, client_id="dg2")
        )
        event = AuditEvent.objects.get(action="provider.changed")
        assert event.changes == {"client_id": ["diffgram", "dg2"]}
        assert event.context == {"revision": 2}

    def test_a_stale_edit_is_refused_and_shows_what_changed(
        self, client, keycloak_server, django_user_model
    ):
        from tests.support import make_user

        alice = make_user(django_user_model, "alice", "admin")
        bob = make_user(django_user_model, "bob", "admin")
        client.force_login(alice)
        provider = create_keycloak(client, keycloak_server)
        alice_form = edit_data(provider, client_id="alice-client")
        bob_form = edit_data(provider, keycloak_realm="other-realm")

        client.force_login(bob)
        assert (
            client.post(reverse("provider-edit", args=[provider.pk]), bob_form).status_code == 302
        )
        client.force_login(alice)
        response = client.post(reverse("provider-edit", args=[provider.pk]), alice_form)
        assert response.status_code == 409
        page = response.content.decode()
        assert "someone else changed this provider" in page
        assert "bob" in page and "other-realm" in page
        provider.refresh_from_db()
        assert (provider.client_id, provider.keycloak_realm) == ("diffgram", "other-realm")

    def test_disable_enable_and_delete_are_audited(self, admin_client, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server)
        admin_client.post(reverse("provider-toggle", args=[provider.pk]))
        provider.refresh_from_db()
        assert not provider.enabled
        admin_client.post(reverse("provider-toggle", args=[provider.pk]))
        admin_client.post(reverse("provider-delete", args=[provider.pk]))
        assert not Provider.objects.exists()
        assert actions()[-3:] == ["provider.disabled", "provider.enabled", "provider.deleted"]
        deleted = AuditEvent.objects.get(action="provider.deleted")
        assert deleted.target_label == "Lab Keycloak"
        assert deleted.changes["name"] == ["Lab Keycloak", None]

    def test_validate_now_re_runs_the_checks(self, admin_client, idp, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server)
        idp.json("/auth/realms/diffgram-realm/protocol/openid-connect/certs", {"keys": []})
        response = admin_client.post(reverse("provider-validate", args=[provider.pk]), follow=True)
        provider.refresh_from_db()
        assert provider.validation_passed is False
        assert b"The JWKS has no keys" in response.content
        # The snapshot is from the last fetch that read both documents; this one did too.
        assert provider.jwks_snapshot == {"keys": []}
        event = AuditEvent.objects.filter(action="provider.validated").first()  # newest
        assert event.context == {
            "passed": False, "failed": ["jwks.keys"], "warnings": ["diffgram.known_issues"],
        }  # fmt: skip

    def test_the_discovery_preview_shows_endpoints(self, admin_client, idp):
        issuer = idp_server.serve_okta(idp)
        response = admin_client.post(
            reverse("provider-discover") + "?kind=oidc", {"issuer": issuer}, HTTP_HX_REQUEST="true"
        )
        page = response.content.decode()
        assert f"{issuer}/v1/token" in page
        assert 'data-check="jwks.keys"' in page
        assert "<html" not in page  # a fragment for htmx, not a page


class TestAuditorIsReadOnly:
    def test_auditors_see_providers_but_no_write_buttons(
        self, admin_client, auditor_client, keycloak_server
    ):
        provider = create_keycloak(admin_client, keycloak_server)
        page = auditor_client.get(reverse("provider-detail", args=[provider.pk])).content.decode()
        assert "Lab Keycloak" in page
        for button in ("Validate now", ">Edit<", "Disable", "Delete"):
            assert button not in page
        assert "Add provider" not in auditor_client.get(reverse("providers")).content.decode()

    def test_auditors_cannot_change_anything(self, admin_client, auditor_client, keycloak_server):
        provider = create_keycloak(admin_client, keycloak_server)
        before = actions()
        for name in ("provider-edit", "provider-validate", "provider-toggle", "provider-delete"):
            response = auditor_client.post(reverse(name, args=[provider.pk]), edit_data(provider))
            assert response.status_code == 403
        assert (
            auditor_client.post(
                reverse("provider-create", args=["oidc"]), {"name": "x"}
            ).status_code
            == 403
        )
        assert actions() == before


class TestCommands:
    def test_add_provider_reads_the_secrets_from_the_environment(
        self, keycloak_server, monkeypatch
    ):
        monkeypatch.setenv("KC_MASTER_PASSWORD", CANARY)
        monkeypatch.setenv("KC_DIFFGRAM_PASSWORD", CANARY + "-diffgram")
        out = StringIO()
        call_command(
            "add_provider", keycloak_server, "--kind", "keycloak", "--name", "CLI Keycloak",
            "--client-id", "diffgram-{instance}", "--realm", "diffgram-realm",
            "--master-user", "admin", "--master-password-env", "KC_MASTER_PASSWORD",
            "--diffgram-user", "diffgram-admin", "--diffgram-password-env", "KC_DIFFGRAM_PASSWORD",
            stdout=out,
        )  # fmt: skip
        provider = Provider.objects.get(name="CLI Keycloak")
        assert provider.validation_passed, provider.validation_checks
        assert provider.secret("keycloak_master_password") == CANARY
        assert provider.secret("keycloak_diffgram_password") == CANARY + "-diffgram"
        assert (provider.keycloak_master_user, provider.keycloak_diffgram_user) == (
            "admin", "diffgram-admin",
        )  # fmt: skip
        assert CANARY not in out.getvalue()
        assert "Created provider CLI Keycloak" in out.getvalue()
        created = AuditEvent.objects.get(action="provider.created")
        assert created.actor_type == "system"
        assert created.actor_label.startswith("manage.py add_provider (")

    def test_add_provider_refuses_invalid_input_and_creates_nothing(self, keycloak_server):
        with pytest.raises(CommandError) as caught:
            call_command(
                "add_provider", keycloak_server, "--kind", "keycloak", "--name", "K",
                "--client-id", "c", "--realm", "a/b",
            )  # fmt: skip
        assert caught.value.returncode == 2
        assert "keycloak_realm: Enter the realm name" in str(caught.value)
        assert not Provider.objects.exists()

    def test_add_provider_names_a_missing_environment_variable(self, keycloak_server):
        os.environ.pop("NOT_SET_ANYWHERE", None)
        with pytest.raises(CommandError, match="NOT_SET_ANYWHERE is not set"):
            call_command(
                "add_provider", keycloak_server, "--kind", "keycloak", "--name", "K",
                "--client-id", "c", "--realm", "r", "--master-password-env", "NOT_SET_ANYWHERE",
            )  # fmt: skip

    def test_add_provider_without_diffgrams_credentials_fails_on_the_keycloak_checks(
        self, keycloak_server
    ):
        errors = StringIO()
        with pytest.raises(SystemExit) as caught:
            call_command(
                "add_provider", keycloak_server, "--kind", "keycloak", "--name", "Bare",
                "--client-id", "diffgram", "--realm", "diffgram-realm", stdout=StringIO(),
                stderr=errors,
            )  # fmt: skip
        assert caught.value.code == 1
        provider = Provider.objects.get(name="Bare")
        failing = [c["id"] for c in provider.validation_checks if c["status"] == "fail"]
        assert failing == ["diffgram.keycloak_admin", "diffgram.keycloak_realm_user"]
        messages = {c["id"]: c["message"] for c in provider.validation_checks}
        assert "admin/admin" in messages["diffgram.keycloak_admin"]
        assert "password 'diffgram'" in messages["diffgram.keycloak_realm_user"]

    def test_add_provider_has_no_client_secret_for_keycloak(self, keycloak_server, monkeypatch):
        monkeypatch.setenv("KC_SECRET", "x")
        with pytest.raises(CommandError, match="A Keycloak provider takes no --client-secret-env"):
            call_command(
                "add_provider", keycloak_server, "--kind", "keycloak", "--name", "K",
                "--client-id", "c", "--realm", "r", "--client-secret-env", "KC_SECRET",
            )  # fmt: skip
        assert not Provider.objects.exists()


def test_a_provider_in_use_cannot_be_deleted(admin_client, keycloak_server):
    from tests.support import make_instance

    provider = create_keycloak(admin_client, keycloak_server)
    instance, _ = make_instance(provider, "lab")
    response = admin_client.post(reverse("provider-delete", args=[provider.pk]), follow=True)
    assert b"is assigned to 1 instance: assign it another provider" in response.content
    instance.delete()
    Provider.objects.filter(pk=provider.pk).update(validation_passed=True)
    make_instance(provider, "other")
    versions.publish(Provider.objects.get(pk=provider.pk))
    from console.models import Instance

    Instance.objects.all().delete()
    response = admin_client.post(reverse("provider-delete", args=[provider.pk]), follow=True)
    assert b"has published versions" in response.content
    assert Provider.objects.filter(pk=provider.pk).exists()


class TestASecretDoesNotFollowTheProvider:
    def test_changing_the_issuer_requires_the_secret_again(self, admin_client, sso, idp):
        elsewhere = idp_server.serve_okta(idp)
        url = reverse("provider-edit", args=[sso.pk])
        refused = admin_client.post(url, edit_data(sso, issuer=elsewhere))
        assert refused.status_code == 200
        assert "You changed issuer: the stored secret is not sent to a new place." in " ".join(
            refused.context["form"].errors["client_secret"]
        )
        stored = Provider.objects.get(pk=sso.pk)
        assert stored.issuer != elsewhere and stored.secret("client_secret") == "console-secret"

        # With the secret typed again it is saved, and the console's own sign-in waits for a
        # new test login against the new issuer.
        done = admin_client.post(
            url, edit_data(sso, issuer=elsewhere, client_secret="new-secret"), follow=True
        )
        assert b"no longer signs admins in to the console" in done.content
        stored.refresh_from_db()
        assert (stored.issuer, stored.console_login) == (elsewhere, False)
        event = AuditEvent.objects.filter(action="provider.changed").latest("id")
        assert event.changes["console_login"] == [True, False]

    def test_keycloak_passwords_do_not_follow_a_new_server(self, admin_client, keycloak_provider):
        url = reverse("provider-edit", args=[keycloak_provider.pk])
        response = admin_client.post(
            url, edit_data(keycloak_provider, keycloak_server_url="https://other.example.test/")
        )
        errors = response.context["form"].errors
        assert set(errors) == {"keycloak_master_password", "keycloak_diffgram_password"}


def test_the_provider_page_counts_its_instances_in_words(admin_client, keycloak_provider):
    make_instance(keycloak_provider, "lab")
    page = admin_client.get(reverse("provider-detail", args=[keycloak_provider.pk]))
    assert "1 instance uses this provider." in page.content.decode()
    make_instance(keycloak_provider, "prod")
    page = admin_client.get(reverse("provider-detail", args=[keycloak_provider.pk]))
    assert "2 instances use this provider." in page.content.decode()


@pytest.mark.parametrize(
    ("kind", "heading"),
    [
        ("cognito", "Add an AWS Cognito provider"),
        ("keycloak", "Add a Keycloak provider"),
        ("oidc", "Add a Generic OIDC provider"),
    ],
)
def test_the_new_provider_heading_has_the_right_article(admin_client, kind, heading):
    page = admin_client.get(reverse("provider-create", args=[kind])).content.decode()
    assert f"<h1>{heading}</h1>" in page


def test_a_keycloak_providers_history_shows_only_keycloak_fields(admin_client, idp):
    from tests import idp_server

    server = idp_server.serve_keycloak(idp)
    admin_client.post(
        reverse("provider-create", args=["keycloak"]),
        {
            "name": "Lab Keycloak", "keycloak_server_url": server,
            "keycloak_realm": "diffgram-realm", "client_id": "diffgram-{instance}",
        },
    )  # fmt: skip
    Provider.objects.get(name="Lab Keycloak")
    created = AuditEvent.objects.get(action="provider.created")
    assert set(created.changes) <= {
        "kind",
        "enabled",
        "issuer",
        *kinds.KEYCLOAK.editable_fields,
    }
    assert "aws_region" not in created.changes and "user_pool_id" not in created.changes
    page = admin_client.get(reverse("history-event", args=[created.pk])).content.decode()
    assert "aws_region" not in page and "cognito_domain" not in page


def test_the_list_searches_providers_by_name_kind_issuer_and_client_id(
    admin_client, keycloak_provider
):
    okta = Provider.objects.create(
        name="Okta staff", kind="oidc", issuer="https://staff.okta.test/oauth2/default",
        client_id="0oa-staff-console",
    )  # fmt: skip

    def found(term):
        page = admin_client.get(reverse("providers"), {"q": term}).content.decode()
        return [p.name for p in (keycloak_provider, okta) if f">{p.name}</a>" in page]

    assert found("OKTA STAFF") == ["Okta staff"]
    assert found("keycloak") == [keycloak_provider.name]  # the kind
    assert found("staff.okta.test") == ["Okta staff"]  # the issuer
    assert found("0oa-staff") == ["Okta staff"]  # the client id
    page = admin_client.get(reverse("providers"), {"q": "zzz-none"}).content.decode()
    assert "No providers match “zzz-none”" in page


def test_the_getting_started_steps_tick_from_the_consoles_own_state(admin_client, auditor_client):
    def ticked():
        page = admin_client.get(reverse("providers")).content.decode()
        if "Getting started" not in page:
            return None
        return [int(n) for n in re.findall(r'class="step-done" data-step="(\d)"', page)]

    page = admin_client.get(reverse("providers")).content.decode()
    assert ticked() == []
    assert f'href="{reverse("provider-new")}">Add an identity provider' in page

    provider = stored_cognito_provider()
    assert ticked() == [1]
    lab, _ = make_instance(provider, "lab")
    assert ticked() == [1, 2]
    page = admin_client.get(reverse("providers")).content.decode()
    agent_setup = reverse("instance-detail", args=[lab.pk])
    assert f'href="{agent_setup}">Install the agent on the Diffgram host' in page
    versions.publish(provider)
    assert ticked() == [1, 2, 4]
    instances.record_applied(lab, version_number=1, ok=True, detail="")  # the agent applied it
    assert ticked() == [1, 2, 3, 4]
    Instance.objects.update(
        verified_version_number=1, verify_ok=True, verify_kind="signin", verified_by="agent"
    )
    assert ticked() is None  # the whole path walked: the checklist is gone
    # Auditors change nothing: they are never shown it.
    Instance.objects.update(verify_kind="probe")
    assert "Getting started" not in auditor_client.get(reverse("providers")).content.decode()


def test_publish_is_disabled_with_the_reason_while_it_would_be_refused(admin_client):
    provider = stored_cognito_provider()

    def publish_button():
        page = admin_client.get(reverse("provider-detail", args=[provider.pk])).content.decode()
        button = re.search(r'<button type="submit" class="primary"[^>]*>Publish</button>', page)
        reason = re.search(r'id="publish-refusal">(.*?)</p>', page)
        return "disabled" in button[0], reason and reason[1]

    assert publish_button() == (
        True, "Cannot publish: No instance uses Corp Cognito: assign it to an instance first.",
    )  # fmt: skip
    make_instance(provider, "lab")
    assert publish_button() == (False, None)
    Provider.objects.filter(pk=provider.pk).update(validation_passed=False)
    disabled, reason = publish_button()
    assert disabled and reason.startswith("Cannot publish: The latest validation failed")
