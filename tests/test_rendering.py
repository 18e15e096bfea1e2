"""The .env and helm outputs read back exactly as Diffgram's deployments read them."""

import io
import json

import yaml
from dotenv import dotenv_values

from agent import envfile
from console import diffgram

AWKWARD = {
    "USE_OAUTH2": "True",
    "PLAIN": "diffgram-client_1",
    "SPACES": "value with  spaces",
    "HASH": "secret#not-a-comment",
    "SINGLE_QUOTE": "it's",
    "DOUBLE_QUOTE": 'say "hi"',
    "BOTH_QUOTES": """it's "quoted\"""",
    "DOLLAR": "pa$$word and $HOME and ${HOME}",
    "BACKSLASH": "C:\\temp\\new",
    "NEWLINE": "line one\nline two",
    "URL": "https://x.auth.eu-west-1.amazoncognito.com/oauth2/authorize?client_id=a&scope=openid+email",
    "EMPTY": "",
    "UNICODE": "Zürich ✓",
    "EQUALS": "a=b=c",
}


def test_env_output_reads_back_exactly_with_python_dotenv():
    # Like docker compose, read single-quoted values literally (python-dotenv would otherwise
    # expand ${...} even inside single quotes, which compose never does).
    text = diffgram.render_env(AWKWARD)
    assert dotenv_values(stream=io.StringIO(text), interpolate=False) == AWKWARD


def test_a_dollar_next_to_a_quote_is_doubled_for_docker_compose():
    """Compose interpolates $ inside double quotes, so "$$" is its literal dollar; values that
    need double quotes (they hold ' or \\) and contain $ are written that way."""
    assert diffgram.env_value("it's $5") == '"it\'s $$5"'
    assert envfile.parse_env_body(diffgram.render_env({"X": "it's $5"})) == {"X": "it's $5"}


def test_the_agent_reads_the_console_env_body_back():
    for value in [*AWKWARD.values(), "it's $5", "a\\b'c$d\re"]:
        assert envfile.parse_env_body(diffgram.render_env({"X": value})) == {"X": value}


def test_helm_values_survive_the_charts_unquoted_paste():
    settings = {
        "USE_OAUTH2": "True",
        "OAUTH2_PROVIDER_NAME": "cognito",
        "OAUTH2_PROVIDER_CLIENT_ID": "0123",
        "COGNITO_LOGIN_URL": "https://x/oauth2/authorize?a=1&b=2",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "s3cr#t: 'x' \"y\"",
        "KEY_CLOAK_MASTER_PASSWORD": "null",
    }
    values = yaml.safe_load(diffgram.render_helm(settings))
    assert values["diffgramSettings"]["USE_OAUTH2"] == '"True"'
    assert set(values["diffgramSecrets"]) == {
        "OAUTH2_PROVIDER_CLIENT_SECRET",
        "KEY_CLOAK_MASTER_PASSWORD",
    }
    # Diffgram's chart writes `KEY: {{ value }}` lines into a ConfigMap / Secret, unquoted.
    for section in ("diffgramSettings", "diffgramSecrets"):
        pasted = "".join(f"{key}: {value}\n" for key, value in values[section].items())
        for key, value in yaml.safe_load(pasted).items():
            assert value == settings[key]
            assert isinstance(value, str)


def test_json_output_carries_instance_version_and_hash():
    document = json.loads(diffgram.render_json("lab", 3, "abc", {"USE_OAUTH2": "True"}))
    assert document == {
        "instance": "lab",
        "version": 3,
        "content_hash": "abc",
        "settings": {"USE_OAUTH2": "True"},
    }


def test_the_agent_replaces_only_the_sso_variables():
    existing = (
        "# Diffgram settings\n"
        "POSTGRES_PASSWORD=keep-me\n"
        "OAUTH2_PROVIDER_CLIENT_ID=old\n"
        "KEYCLOAK_REALM='multi\nline'\n"
        "export URL_BASE=https://lab.example.test/\n"
        "OAUTH2_PROVIDER_CLIENT_ID=duplicate\n"
        "# trailing comment\n"
    )
    merged = envfile.merge_env(existing, {"OAUTH2_PROVIDER_CLIENT_ID": "new", "USE_OAUTH2": "True"})
    assert merged == (
        "# Diffgram settings\n"
        "POSTGRES_PASSWORD=keep-me\n"
        "OAUTH2_PROVIDER_CLIENT_ID=new\n"
        "export URL_BASE=https://lab.example.test/\n"
        "# trailing comment\n"
        "\n"
        f"{envfile.HEADER_COMMENT}\n"
        "USE_OAUTH2=True\n"
    )
    assert envfile.merge_env(
        merged, {"OAUTH2_PROVIDER_CLIENT_ID": "new", "USE_OAUTH2": "True"}
    ) == (merged)  # applying the same settings again changes nothing
    assert dotenv_values(stream=io.StringIO(merged))["POSTGRES_PASSWORD"] == "keep-me"


def test_masked_hides_every_secret_variable():
    variables = {
        "OAUTH2_PROVIDER_CLIENT_ID": "id",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "a",
        "KEY_CLOAK_MASTER_PASSWORD": "b",
        "KEY_CLOAK_DIFFGRAM_PASSWORD": "c",
    }
    assert diffgram.masked(variables) == {
        "OAUTH2_PROVIDER_CLIENT_ID": "id",
        "OAUTH2_PROVIDER_CLIENT_SECRET": "[secret: set]",
        "KEY_CLOAK_MASTER_PASSWORD": "[secret: set]",
        "KEY_CLOAK_DIFFGRAM_PASSWORD": "[secret: set]",
    }
