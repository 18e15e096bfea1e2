"""The registry of provider kinds (console/kinds/__init__.py): one entry per model choice, each
with what shared code asks of it."""

import pytest

from console import kinds
from console.models import Provider


def test_every_model_choice_has_a_kind_and_no_kind_lacks_a_choice():
    assert list(kinds.KINDS) == list(Provider.Kind.values)


@pytest.mark.parametrize("kind", kinds.KINDS.values(), ids=lambda kind: kind.slug)
def test_each_kind_brings_its_form_templates_and_checks(kind):
    assert kind.form.kind is kind
    assert kind.checks.ids()[:2] == ("issuer.url", "discovery.fetch")
    assert len(set(kind.checks.ids())) == len(kind.checks.ids())  # no check twice
    for template in (kind.howto_template, kind.cards_template, kind.facts_template):
        assert template.startswith("console/kinds/")
    assert set(kind.secret_names) <= set(Provider.SECRET_NAMES)


def test_unknown_input_names_no_kind():
    assert kinds.get("saml") is None and kinds.get(["oidc"]) is None
    assert kinds.get("oidc") is kinds.OIDC


def test_published_settings_name_their_kind():
    assert kinds.of_settings({"OAUTH2_PROVIDER_NAME": "keycloak"}) is kinds.KEYCLOAK
    assert kinds.of_settings({"OAUTH2_PROVIDER_NAME": "cognito"}) is kinds.COGNITO
    assert kinds.of_settings({}) is None
    assert kinds.diffgram_slugs() == ["cognito", "keycloak"]
