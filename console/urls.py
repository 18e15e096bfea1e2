from django.urls import path
from django.views.generic import RedirectView

from console.agent_setup import AGENT_DOWNLOAD_NAME
from console.api import pull
from console.api.v1 import urls as api_urls
from console.roles import admin_only, role_not_required
from console.views import (
    account,
    accounts,
    alerts,
    cognito,
    config,
    health,
    history,
    instances,
    oidc,
    providers,
    signin_account,
    site,
    users,
    versions,
)

provider = "providers/<int:provider_id>/"
version = provider + "versions/<int:number>/"
instance = "instances/<int:instance_id>/"
user = "users/<int:user_id>/"
destination = "alerts/destinations/<int:destination_id>/"

urlpatterns = [
    # First: the fleet polls these far more often than anyone opens a page, and URL patterns
    # are tried in order.
    path("api/v1/instances/<int:instance_id>/config", pull.pull_config, name="api-pull-config"),
    path("api/v1/instances/<int:instance_id>/applied", pull.report_applied, name="api-applied"),
    path("", RedirectView.as_view(pattern_name="providers", permanent=False), name="home"),
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", role_not_required(accounts.LogoutView.as_view()), name="logout"),
    path("oidc/authenticate/", oidc.authenticate, name="oidc_authentication_init"),
    path("oidc/callback/", oidc.callback, name="oidc_authentication_callback"),
    # identity providers
    path("providers/", providers.provider_list, name="providers"),
    path("providers/new/", admin_only(providers.provider_new), name="provider-new"),
    path(
        "providers/new/cognito/app-client/", admin_only(cognito.provision), name="cognito-provision"
    ),
    path(
        "providers/new/<str:kind>/", admin_only(providers.provider_create), name="provider-create"
    ),
    path("providers/discover/", providers.provider_discover, name="provider-discover"),
    path(provider, providers.provider_detail, name="provider-detail"),
    path(provider + "edit/", admin_only(providers.provider_edit), name="provider-edit"),
    path(provider + "validate/", providers.provider_validate, name="provider-validate"),
    path(provider + "toggle/", providers.provider_toggle, name="provider-toggle"),
    path(provider + "delete/", admin_only(providers.provider_delete), name="provider-delete"),
    path(provider + "test-login/", oidc.test_login_start, name="provider-test-login"),
    path(
        provider + "test-login/result/",
        oidc.test_login_outcome,
        name="provider-test-login-result",
    ),  # fmt: skip
    path(provider + "console-login/", oidc.mark_console_login, name="provider-console-login"),
    path(
        provider + "test-account/",
        admin_only(signin_account.signin_account),
        name="provider-signin-account",
    ),
    path(
        provider + "test-account/rotate/",
        signin_account.signin_account_rotate,
        name="provider-signin-account-rotate",
    ),
    path(
        provider + "test-account/remove/",
        signin_account.signin_account_remove,
        name="provider-signin-account-remove",
    ),
    path(provider + "aws/", cognito.inspect, name="cognito-inspect"),
    path(provider + "aws/fix/", cognito.fix, name="cognito-fix"),
    path(
        provider + "aws/federate/<str:idp_type>/",
        admin_only(cognito.federation_new),
        name="federation-new",
    ),
    path(
        provider + "aws/federation/<str:name>/",
        admin_only(cognito.federation_edit),
        name="federation-edit",
    ),
    path(
        provider + "aws/federation/<str:name>/toggle/",
        cognito.federation_toggle,
        name="federation-toggle",
    ),
    path(
        provider + "aws/federation/<str:name>/remove/",
        admin_only(cognito.federation_remove),
        name="federation-remove",
    ),
    path(provider + "aws/domain/", cognito.use_domain, name="cognito-use-domain"),
    # versions and rollout
    path(provider + "publish/", versions.publish, name="provider-publish"),
    path(provider + "versions/diff/", versions.version_diff, name="version-diff"),
    path(version, versions.version_detail, name="version-detail"),
    path(version + "continue/", versions.rollout_continue, name="rollout-continue"),
    path(version + "halt/", versions.rollout_halt, name="rollout-halt"),
    path(version + "override/", versions.rollout_override, name="rollout-override"),
    path(version + "rollback/", versions.version_rollback, name="version-rollback"),
    # Diffgram instances
    path("instances/", instances.instance_list, name="instances"),
    path("instances/counts/", instances.instance_counts, name="instance-counts"),
    path(f"agent/{AGENT_DOWNLOAD_NAME}", instances.agent_download, name="agent-download"),
    path("instances/new/", admin_only(instances.instance_create), name="instance-create"),
    path(instance, instances.instance_detail, name="instance-detail"),
    path(instance + "edit/", admin_only(instances.instance_edit), name="instance-edit"),
    path(instance + "delete/", admin_only(instances.instance_delete), name="instance-delete"),
    path(instance + "push/", instances.instance_push, name="instance-push"),
    path(instance + "verify/", instances.instance_verify, name="instance-verify"),
    path(instance + "rotate-token/", instances.instance_rotate_token, name="instance-rotate-token"),
    path(
        instance + "credentials/",
        admin_only(instances.instance_credentials),
        name="instance-credentials",
    ),  # fmt: skip
    path(
        instance + "rotate-signing-secret/",
        instances.instance_rotate_signing_secret,
        name="instance-rotate-signing-secret",
    ),
    # alerts
    path("alerts/", alerts.alert_list, name="alerts"),
    path(destination, admin_only(alerts.alert_destination_edit), name="alert-destination-edit"),
    path(destination + "delete/", alerts.alert_destination_delete, name="alert-destination-delete"),
    path(destination + "test/", alerts.alert_destination_test, name="alert-destination-test"),
    # users and roles
    path("users/", users.user_list, name="users"),
    path("users/role-groups/", users.role_groups, name="role-groups"),
    path(user + "reset-password/", users.user_reset_password, name="user-reset-password"),
    path(user + "role/", users.user_set_role, name="user-set-role"),
    path(user + "active/", users.user_set_active, name="user-set-active"),
    path(user + "revoke-tokens/", users.user_revoke_tokens, name="user-revoke-tokens"),
    path("account/password/", users.choose_password, name="choose-password"),
    # configuration as code, personal API tokens
    path("config/export.yaml", config.export, name="config-export"),
    path("config/import/", admin_only(config.import_config), name="config-import"),
    path("account/tokens/", account.api_tokens, name="api-tokens"),
    path(
        "account/tokens/<int:token_id>/revoke/", account.api_token_revoke, name="api-token-revoke"
    ),
    # audit history
    path("history/", history.history, name="history"),
    path("history/verify/", history.verify, name="history-verify"),
    path("history/export.<str:export_format>", history.export, name="history-export"),
    path("history/<int:event_id>/", history.event_detail, name="history-event"),
    # machine endpoints: Diffgram instances (instance tokens) and automation (personal tokens)
    path("api/v1/", api_urls()),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
    path("favicon.ico", site.favicon, name="favicon"),
]
