"""Personal API tokens (console/api_tokens.py): what a token may do, for how long, and who
revokes it."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from console.models import (
    ApiToken,
    AuditEvent,
    ExternalIdentity,
)
from tests.support import (
    set_groups,
    sso_login,
    token_for,
)

pytestmark = pytest.mark.django_db


def api_patch(token, provider, body):
    return Client().patch(
        f"/api/v1/providers/{provider.pk}", json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


class TestTokensOfSingleSignOnUsers:
    def signed_in_admin_with_a_token(self, client):
        sso_login(client, "alice-sub")
        identity = ExternalIdentity.objects.get(subject="alice-sub")
        return identity, token_for(identity.user)

    def test_a_token_stops_acting_when_the_idp_has_not_confirmed_the_account_lately(
        self, client, sso
    ):
        identity, token = self.signed_in_admin_with_a_token(client)
        assert api_patch(token, sso, {"scopes": "openid email"}).status_code == 200
        # Disabled at the IdP: no sign-in and no silent re-check confirms the account any more.
        ExternalIdentity.objects.filter(pk=identity.pk).update(
            last_login_at=timezone.now() - timedelta(hours=25)
        )
        refused = api_patch(token, sso, {"scopes": "openid email profile"})
        assert refused.status_code == 403
        assert "tokens of single sign-on users act only within 24 h" in refused.json()["error"]
        sso_login(client, "alice-sub")  # confirmed again
        assert api_patch(token, sso, {"scopes": "openid"}).status_code == 200

    def test_a_token_is_refused_after_a_sync_that_removed_the_role(self, client, sso, mock_op):
        _, token = self.signed_in_admin_with_a_token(client)
        set_groups(mock_op, "alice-sub", ["engineering"])
        sso_login(client, "alice-sub")  # the re-check finds no console group any more
        refused = api_patch(token, sso, {"scopes": "openid"})
        assert refused.status_code == 403 and "no role" in refused.json()["error"]

    def test_admins_list_and_revoke_anyones_tokens_and_auditors_cannot(
        self, admin_client, auditor_client, auditor_user, admin_user
    ):
        auditor_token = token_for(auditor_user)
        page = admin_client.get(reverse("api-tokens"))
        [listed] = page.context["others"]
        assert listed.user == auditor_user
        own = ApiToken.objects.create(
            user=admin_user, name="admin's", token_hash="x" * 64,
            expires_at=timezone.now() + timedelta(days=1),
        )  # fmt: skip
        assert auditor_client.post(reverse("api-token-revoke", args=[own.pk])).status_code == 404
        admin_client.post(reverse("api-token-revoke", args=[listed.pk]))
        assert ApiToken.find_active(auditor_token) is None
        event = AuditEvent.objects.get(action="api_token.revoked")
        assert (event.actor_label, event.target_label) == ("alice-admin", "oscar-auditor")
