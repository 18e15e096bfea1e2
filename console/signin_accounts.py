"""The test account of a provider's synthetic sign-ins: the console creates it at the identity
provider (Cognito: AdminCreateUser with a permanent password; Keycloak: the realm's admin API
with the master admin the provider holds), or an admin enters an existing one (anything
federated from elsewhere). The password is generated, kept encrypted, never shown, never in the
history, exports, logs or a Diffgram .env; creating, rotating and removing it is audited."""

from __future__ import annotations

import secrets
import string

from django.utils import timezone

from console import audit, instances, kinds
from console.models import Instance, SigninAccount
from console.pull_state import pull_states

Action = audit.Action
DEFAULT_USERNAME = "diffgram-sso-check"
PASSWORD_LENGTH = 24


class AccountError(Exception):
    """What the identity provider refused, in words an admin can act on."""


def can_create(provider) -> bool:
    return kinds.of(provider).test_accounts is not None


def _at_provider(provider) -> kinds.TestAccounts:
    """How the provider's kind handles the account (AccountError when it cannot)."""
    accounts = kinds.of(provider).test_accounts
    if accounts is None:
        raise AccountError(
            f"The console cannot create accounts at a {provider.get_kind_display()} provider: "
            "enter one."
        )
    return accounts


def generate_password() -> str:
    """Random, and meeting Cognito's and Keycloak's default policies (upper and lower case, a
    digit, a symbol)."""
    classes = (string.ascii_uppercase, string.ascii_lowercase, string.digits, "!#%*+-=?@^_")
    chosen = [secrets.choice(characters) for characters in classes]
    everything = "".join(classes)
    chosen += [secrets.choice(everything) for _ in range(PASSWORD_LENGTH - len(chosen))]
    secrets.SystemRandom().shuffle(chosen)
    return "".join(chosen)


def account_of(provider_id) -> SigninAccount | None:
    return SigninAccount.objects.filter(provider_id=provider_id).first()


def has_account(provider_id) -> bool:
    return SigninAccount.objects.filter(provider_id=provider_id).exists()


def create_at_provider(provider, *, username, email, request=None, actor=None) -> SigninAccount:
    """Create the account at the identity provider with a new password, and keep it."""
    accounts = _at_provider(provider)
    password = generate_password()
    try:
        accounts.create(provider, username, email, password)
    except accounts.refusal as error:
        raise AccountError(str(error)) from None
    return _store(provider, username, email, password, managed=True, request=request, actor=actor)


def enter(provider, *, username, email, password, request=None, actor=None) -> SigninAccount:
    """Keep an existing account an admin typed in (its password is never shown again)."""
    return _store(provider, username, email, password, managed=False, request=request, actor=actor)


def _store(provider, username, email, password, *, managed, request, actor) -> SigninAccount:
    with audit.change():
        replaced = SigninAccount.objects.select_for_update().filter(provider=provider).first()
        if replaced is not None:
            replaced.delete()
        account = SigninAccount(
            provider=provider, username=username, email=email, managed=managed,
            created_by=_who(request, actor),
            revision=(replaced.revision + 1) if replaced else 1,
        )  # fmt: skip
        account.set_secret("password", password)
        account.save()
        _announce(provider)
        audit.record(
            Action.SIGNIN_ACCOUNT_SET, request=request, actor=actor, target=provider,
            context={**account.audit_fields(), "password": audit.SECRET_SET},
        )  # fmt: skip
    return account


def rotate(provider, *, password="", request=None, actor=None) -> SigninAccount:
    """A new password: generated and set at the identity provider for an account the console
    made, else the one the admin typed (changed at the identity provider by them)."""
    account = account_of(provider.pk)
    if account is None:
        raise AccountError(f"{provider} has no test account.")
    if account.managed:
        accounts = _at_provider(provider)
        password = generate_password()
        try:
            accounts.set_password(provider, account.username, password)
        except accounts.refusal as error:
            raise AccountError(str(error)) from None
    elif not password:
        raise AccountError("Type the account's new password: the console did not make it.")
    with audit.change():
        account.set_secret("password", password)
        account.revision += 1
        account.rotated_at = timezone.now()
        account.save(update_fields=["password_encrypted", "revision", "rotated_at"])
        _announce(provider)
        audit.record(
            Action.SIGNIN_ACCOUNT_ROTATED, request=request, actor=actor, target=provider,
            context={"username": account.username, "password": audit.SECRET_CHANGED},
        )  # fmt: skip
    return account


def remove(provider, *, request=None, actor=None) -> None:
    """Forget the account; one the console made is removed from the identity provider too."""
    account = account_of(provider.pk)
    if account is None:
        return
    if account.managed:
        accounts = _at_provider(provider)
        try:
            accounts.delete(provider, account.username)
        except accounts.refusal as error:
            raise AccountError(str(error)) from None
    with audit.change():
        account.delete()
        _announce(provider)
        audit.record(
            Action.SIGNIN_ACCOUNT_REMOVED, request=request, actor=actor, target=provider,
            context=account.audit_fields(),
        )  # fmt: skip


def _announce(provider) -> None:
    """Agents that sign in get the new account: pulling ones with their next poll (their
    answer changes), pushed ones by a push of the version they run."""
    fleet = Instance.objects.filter(provider=provider)
    pull_states.invalidate(fleet.values_list("pk", flat=True))
    pushed = fleet.filter(
        signin_runner=Instance.SigninRunner.AGENT,
        push_target=Instance.PushTarget.WEBHOOK,
        assigned_version__isnull=False,
    )
    for instance in pushed:
        instances.repush(instance)


def _who(request, actor) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_username()
    return str(actor or "system")
