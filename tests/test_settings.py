"""Production settings: refuse to start without what protects production, pass check --deploy."""

import json
import re
import secrets
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

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


def test_it_refuses_to_start_with_a_short_metrics_token():
    result = manage("check", "--deploy", **{**PRODUCTION, "METRICS_TOKEN": "x"})
    assert result.returncode != 0
    assert "METRICS_TOKEN must be at least 32 characters (it has 1)" in result.stderr


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


def beat_schedule(**environment):
    """The beat schedule as a fresh process builds it, with each task's name and whether the
    worker knows a task of that name."""
    program = (
        "import django, json; django.setup()\n"
        "from django.conf import settings\n"
        "from sso_admin.celery import app\n"
        "app.loader.import_default_modules()\n"
        "print(json.dumps({name: [entry['task'], entry['task'] in app.tasks, entry['schedule']]\n"
        "                  for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}))\n"
    )
    clean = {k: v for k, v in subprocess_environment().items() if k not in PRODUCTION}
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "DATABASE_URL": "sqlite:////tmp/never-opened.sqlite3", **environment},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_every_task_the_beat_schedules_exists_and_the_sign_in_watch_follows_its_setting():
    schedule = beat_schedule(SIGNIN_CHECK_MINUTES="15")
    assert [name for name, (_, known, _) in schedule.items() if not known] == []
    assert schedule["synthetic-signins"][::2] == ["console.tasks.run_signin_checks", 900.0]
    assert "synthetic-signins" not in beat_schedule(SIGNIN_CHECK_MINUTES="0")


def test_reading_the_settings_creates_nothing_and_start_up_creates_the_embedded_folders(tmp_path):
    """A production disk may be read-only: the settings only read; the embedded defaults'
    folders (SQLite, the filesystem broker) are made when the console starts."""
    program = (
        "import pathlib, django\n"
        "real_mkdir = pathlib.Path.mkdir\n"
        "def refuse(*args, **kwargs): raise AssertionError('a folder made at import')\n"
        "pathlib.Path.mkdir = refuse\n"
        "from django.conf import settings\n"
        "settings.DATABASES\n"  # reads the whole settings module
        "pathlib.Path.mkdir = real_mkdir\n"
        "django.setup()\n"
        "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['control_folder'])\n"
    )
    clean = {k: v for k, v in subprocess_environment().items() if k not in PRODUCTION}
    clean.pop("CELERY_BROKER_URL", None)
    database = tmp_path / "var" / "console.sqlite3"
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "DATABASE_URL": f"sqlite:///{database}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert database.parent.is_dir()
    assert (ROOT / result.stdout.split()[-1]).is_dir()


def test_check_deploy_refuses_the_development_keys(settings):
    from console import checks

    settings.FIELD_ENCRYPTION_KEYS = [settings.DEVELOPMENT_FIELD_ENCRYPTION_KEY]
    settings.SECRET_KEY = settings.DEVELOPMENT_SECRET_KEY
    assert {e.id for e in checks.check_development_keys(None)} == {"console.E002", "console.E003"}
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.SECRET_KEY = "x" * 10
    assert {e.id for e in checks.check_development_keys(None)} == {"console.E003"}
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    assert checks.check_development_keys(None) == []


# Loads the settings module once per variable, without it and with the value .env.example shows,
# and names the variables whose value changes any setting: the example's "default" is not one.
COMPARE_DEFAULTS = """
import importlib, json, os, re, sys
baseline, shown = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def settings_with(environment):
    os.environ.clear()
    os.environ.update(environment)
    sys.modules.pop("sso_admin.settings", None)
    module = importlib.import_module("sso_admin.settings")
    # Objects without a value repr (a function, an integration) differ only by address.
    return {name: re.sub(r" at 0x[0-9a-f]+", "", repr(value))
            for name, value in vars(module).items() if name.isupper()}

differ = []
for name, value in shown.items():
    without = {k: v for k, v in baseline.items() if k != name}
    if settings_with(without) != settings_with({**without, name: value}):
        differ.append(name)
print(json.dumps(differ))
"""


def defaults_shown_in_env_example():
    """{NAME: value} of every "# NAME=value" line (a default, not an "e.g." example)."""
    shown = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        found = re.match(r"# ([A-Z][A-Z0-9_]*)=(.*)$", line)
        if found:
            value = found.group(2).split("  #")[0].strip()  # without a comment after it
            if value:
                shown[found.group(1)] = value
    return shown


@pytest.mark.skipif((ROOT / ".env").exists(), reason="a .env file next to manage.py sets values")
def test_every_default_env_example_shows_is_the_settings_default():
    shown = defaults_shown_in_env_example()
    assert {"PUSH_MAX_ATTEMPTS", "LOG_LEVEL", "SECURE_HSTS_SECONDS"} <= set(shown)
    # Production's baseline: the HTTPS defaults .env.example shows are those of DEBUG=false.
    environment = subprocess_environment()
    baseline = {**PRODUCTION, "PATH": environment["PATH"], "HOME": environment.get("HOME", "/")}
    result = subprocess.run(
        [sys.executable, "-c", COMPARE_DEFAULTS, json.dumps(baseline), json.dumps(shown)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], "shown as a default in .env.example, but not one"
