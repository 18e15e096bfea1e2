"""Diffgram's Cognito guide, steps 1 to 3 in one (docs/COGNITO.md): create a public app client
with what Diffgram needs in an existing user pool, and a hosted-UI domain when the pool has none,
then store and validate the provider using it. Nothing is stored when AWS refuses."""

from __future__ import annotations

from console import audit, cognito, discovery, providers
from console.models import Provider


def provision(form, *, request=None, actor=None) -> tuple[Provider, discovery.Report]:
    """Create the app client of a valid ProvisionCognitoForm in its pool (and a hosted-UI
    domain when the pool has none), then store the provider using it and validate it.
    Returns (provider, validation report). Raises AWSError before anything is stored."""
    draft = form.instance  # region, pool and role, as the form validated them
    pool, url_bases = draft.user_pool_id, form.cleaned_data["url_bases"]
    client = cognito.client_for(draft)
    domain = cognito.pool_domain(draft, client)
    created_domain = ""
    if not domain:
        prefix = form.cleaned_data.get("domain_prefix")
        if not prefix:
            raise cognito.AWSError(
                f"The user pool {pool} has no hosted-UI domain, which Diffgram's login needs: "
                "give a domain prefix to create one."
            )
        cognito.call(
            client, "create_user_pool_domain", "cognito-idp:CreateUserPoolDomain",
            f"domain {prefix}", Domain=prefix, UserPoolId=pool,
        )  # fmt: skip
        domain = created_domain = prefix
    config = cognito.new_app_client_config(form.cleaned_data["client_name"], url_bases)
    created = cognito.call(
        client, "create_user_pool_client", "cognito-idp:CreateUserPoolClient",
        f"user pool {pool}", UserPoolId=pool, **config,
    )["UserPoolClient"]  # fmt: skip
    draft.client_id = created["ClientId"]
    draft.cognito_domain = cognito.hosted_ui_url(domain, draft.aws_region)
    draft.scopes = " ".join(cognito.NEW_CLIENT_SCOPES)
    draft.diffgram_url_base = url_bases[0]
    with audit.change():
        provider = providers.save_provider(form, request=request, actor=actor)
        context = {"user_pool": pool, "client": provider.client_id}
        if created_domain:
            audit.record(
                audit.Action.COGNITO_DOMAIN_CREATED, request=request, actor=actor,
                target=provider, context={**context, "domain": created_domain},
            )  # fmt: skip
        audit.record(
            audit.Action.COGNITO_CLIENT_CREATED, request=request, actor=actor, target=provider,
            changes=audit.field_changes({}, config), context=context,
        )  # fmt: skip
    return providers.run_validation(provider, request=request, actor=actor)
