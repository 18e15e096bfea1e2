"""docs/CONFIGURATION.md's table and .env.example must list every variable settings read; the
README starts with the two commands and points at the table."""

import re

from tests.support import ROOT


def variables_read_by_settings():
    source = (ROOT / "sso_admin" / "settings.py").read_text()
    names = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', source))
    names |= set(re.findall(r'_required_in_production\(\s*"([A-Z_]+)"', source))
    return names


def test_it_documents_every_setting_in_the_configuration_table_and_env_example():
    names = variables_read_by_settings()
    assert {"DATABASE_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEYS"} <= names
    table = (ROOT / "docs" / "CONFIGURATION.md").read_text()
    env_example = (ROOT / ".env.example").read_text()
    assert "[docs/CONFIGURATION.md](docs/CONFIGURATION.md)" in (ROOT / "README.md").read_text()
    assert not [name for name in names if f"| `{name}` |" not in table]
    assert not [name for name in names if f"{name}=" not in env_example]


def test_it_starts_the_readme_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)
