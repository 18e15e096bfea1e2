"""Production settings: refuse to start without what protects production, pass check --deploy."""

import subprocess
import sys

import pytest

from tests.support import ROOT, subprocess_environment

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
    "FIELD_ENCRYPTION_KEYS": "Z3Q1bWJ5c2JlcWV3aGZpanZ5d3F0a2Rtbm9wcXJzdHU=",
    "ALLOWED_HOSTS": "sso.example.test",
    "DATABASE_URL": "sqlite:////tmp/never-opened.sqlite3",
    "CACHE_URL": "redis://127.0.0.1:6379/2",
}


def manage(*args, **environment):
    clean = {k: v for k, v in subprocess_environment().items() if k not in PRODUCTION}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "ALLOWED_HOSTS"])
def test_it_refuses_to_start_in_production_without(missing):
    # Set to empty rather than removed, so that a developer's .env cannot fill the gap
    # (django-environ never overrides a variable that is already set).
    result = manage("check", **{**PRODUCTION, missing: ""})
    assert result.returncode != 0
    assert f"{missing} must be set when DEBUG=false" in result.stderr


def test_it_passes_check_deploy_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_starts_in_development_without_any_configuration():
    result = manage("check", DEBUG="true", DATABASE_URL="sqlite:////tmp/never-opened.sqlite3")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("cache_url", "says"),
    [
        ("locmemcache://", "local to each process"),
        ("dbcache://console_cache", "Without Redis the pull API reads the database"),
    ],
)
def test_check_deploy_warns_when_the_cache_is_not_redis(cache_url, says):
    environment = {**PRODUCTION, "CACHE_URL": cache_url}
    result = manage("check", "--deploy", "--fail-level", "WARNING", **environment)
    assert result.returncode != 0
    assert "console.W001" in result.stderr + result.stdout
    assert says in " ".join((result.stderr + result.stdout).split())
