"""The generic OIDC kind (Okta, Entra ID, Google, Auth0): signs admins in to the console and
federates into Cognito, but Diffgram itself has no settings for it."""

from console.diffgram import ProviderConfig
from console.kinds import OIDC


def test_diffgram_gets_no_settings_and_nothing_is_registered():
    assert OIDC.diffgram_settings(ProviderConfig(client_id="x"), "https://d.example.test/") == {}
    assert OIDC.registrations("https://d.example.test/") == []
    assert not OIDC.signs_in_to_diffgram and OIDC.federates_into_cognito


def test_the_command_line_takes_the_issuer_as_given():
    fields = OIDC.command_fields("https://idp.example.test/", {"scopes": ""})
    assert fields == {"issuer": "https://idp.example.test/", "scopes": OIDC.default_scopes}
    provider = OIDC.draft({**fields, "client_id": "c"})
    assert provider.issuer == "https://idp.example.test/" and provider.kind == "oidc"
