"""Putting the agent on a Diffgram host: the commands the instance pages show work when pasted,
the console serves the agent with the hash it shows, and the agent says what each run did."""

import hashlib
import os
import re
import signal
import stat
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from agent import envfile
from console import agent_setup
from console.instance_forms import InstanceForm
from console.models import Instance
from tests.support import ROOT, agent_file, make_instance, subprocess_environment, wait_for

pytestmark = pytest.mark.django_db


def registration_page(admin_client, provider, host="testserver", **fields):
    data = {
        "name": "lab", "url_base": "https://lab.example.test/", "shape": "compose",
        "rollout_group": "default", "provider": provider.pk, "push_target": "none", **fields,
    }  # fmt: skip
    response = admin_client.post(reverse("instance-create"), data, HTTP_HOST=host, follow=True)
    assert response.status_code == 200, response.content.decode()[-2000:]
    return response


def test_a_pull_instance_gets_the_token_file_and_a_poller_but_no_signing_secret(
    admin_client, keycloak_provider
):
    response = registration_page(admin_client, keycloak_provider)
    commands = response.context["agent_commands"]
    token = response.context["token"]
    assert commands.startswith("install -d -m 700 /etc/diffgram-sso\n")
    assert f"(umask 077; printf '%s\\n' {token} > /etc/diffgram-sso/token)" in commands
    assert "signing-secret" not in commands and "signing-secret" not in response.content.decode()
    assert "pull --interval 60 --console http://testserver/" in commands
    assert agent_setup.agent_sha256() in commands


def test_a_webhook_instance_serves_on_its_webhook_port_with_tls(admin_client, keycloak_provider):
    response = registration_page(
        admin_client, keycloak_provider, push_target="webhook",
        webhook_url="https://lab-host.example.test:9443/",
    )  # fmt: skip
    commands = response.context["agent_commands"]
    secret = response.context["signing_secret"]
    assert f"printf '%s\\n' {secret} > /etc/diffgram-sso/signing-secret)" in commands
    assert "serve --listen 0.0.0.0:9443 \\\n    --tls-cert /etc/diffgram-sso/agent.crt" in commands
    assert "--secret-file /etc/diffgram-sso/signing-secret" in commands


def test_the_console_serves_the_agent_with_the_hash_it_shows(client, tmp_path):
    response = client.get(reverse("agent-download"))  # no sign-in: curl on a host fetches it
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == agent_setup.agent_sha256()
    # One file, built from agent/*.py the same way every time: the hash another console (or a
    # later start) publishes is the same.
    assert agent_setup.agent_source.__wrapped__() == response.content
    # It runs on its own, away from this checkout, with nothing but Python.
    alone = tmp_path / "diffgram_sso_agent.py"
    alone.write_bytes(response.content)
    shown = subprocess.run(
        [sys.executable, "-I", str(alone), "--help"], capture_output=True, text=True,
        timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "keeps the SSO variables of a Diffgram .env file in step" in shown.stdout


@pytest.mark.parametrize(
    "url",
    [
        "https://metadata.google.internal/",
        "https://instance-data.ec2.internal./",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:169.254.169.254]/",
        "https://169.254.169.254/latest/",
    ],
)
def test_the_instance_form_refuses_metadata_and_link_local_webhooks(keycloak_provider, url):
    form = InstanceForm(
        data={
            "name": "lab", "url_base": "https://lab.example.test/", "shape": "compose",
            "rollout_group": "default", "provider": keycloak_provider.pk,
            "push_target": "webhook", "webhook_url": url,
        }
    )  # fmt: skip
    assert not form.is_valid()
    assert "never allowed" in " ".join(form.errors["webhook_url"])


@pytest.mark.django_db(transaction=True)
def test_the_commands_work_when_pasted(live_server, keycloak_provider, admin_user, tmp_path):
    """Run what the registration page shows, as shown, with only the host's folders moved into
    a temporary one: the agent downloads, its hash checks, the token file is private, and the
    poller writes the published version."""
    from console import versions

    client = Client()
    client.force_login(admin_user)
    host = urlsplit(live_server.url).netloc
    response = registration_page(client, keycloak_provider, host=host)
    versions.publish(keycloak_provider)
    commands = response.context["agent_commands"]
    root = tmp_path / "host"
    # Docker cannot run here: Diffgram's restart is a file the command touches.
    restarted = root / "diffgram-restarted"
    commands = commands.replace(agent_setup.ON_CHANGE, f"touch {restarted}")
    for path in (agent_setup.SSO_DIR, agent_setup.AGENT_PATH, agent_setup.ENV_FILE):
        commands = commands.replace(path, f"{root}{path}")
    os.makedirs(root / "usr/local/bin")
    os.makedirs(root / "opt/diffgram")
    setup, start = commands.strip().split("\npython3 ", 1)
    start = "python3 " + start
    subprocess.run(["bash", "-euo", "pipefail", "-c", setup], check=True, timeout=60)

    token_file = root / "etc/diffgram-sso/token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(root / "etc/diffgram-sso").st_mode) == 0o700
    assert token_file.read_text() == response.context["token"] + "\n"
    poller = subprocess.Popen(
        ["bash", "-c", f"exec {start}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=subprocess_environment(), start_new_session=True,
    )  # fmt: skip
    env_file = root / "opt/diffgram/.env"
    try:
        wait_for(env_file.exists, "the agent writing the .env file", 30)
        assert "KEYCLOAK_REALM=diffgram-realm" in env_file.read_text()
        wait_for(restarted.exists, "--on-change restarting Diffgram with the new .env", 30)
        # Then it tells the console (stopped before the console has that, its report would
        # still be in flight at teardown) and waits for Diffgram to come back, to verify it.
        instance = Instance.objects.get(name="lab")
        wait_for(
            lambda: Instance.objects.filter(pk=instance.pk, applied_version_number=1).exists(),
            "the agent reporting v1 applied", 30,
        )  # fmt: skip
    finally:
        os.killpg(poller.pid, signal.SIGTERM)
        output = poller.communicate(timeout=10)[0]
    assert f"applied v1 to {env_file}" in output
    assert f"--diffgram-url {agent_setup.LOCAL_DIFFGRAM}" in start
    instance.refresh_from_db()
    assert instance.applied_status == "ok"


# --- the agent's own behaviour -------------------------------------------------------------------


def run_agent(*args):
    return subprocess.run(
        [sys.executable, str(agent_file()), *args], capture_output=True, text=True, timeout=60,
        env=subprocess_environment(), cwd=ROOT,
    )  # fmt: skip


def test_pull_needs_once_or_an_interval(tmp_path):
    common = ["--console", "http://127.0.0.1:9/", "--instance", "1", "--token-file",
              str(tmp_path / "t"), "--env-file", str(tmp_path / ".env")]  # fmt: skip
    result = run_agent("pull", *common)
    assert result.returncode == 2
    assert "one of the arguments --once --interval is required" in result.stderr
    both = run_agent("pull", "--once", "--interval", "5", *common)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.django_db(transaction=True)
def test_every_poll_says_in_one_line_what_it_did(live_server, keycloak_provider, tmp_path):
    from console import versions
    from tests.support import AgentProcess

    instance, token = make_instance(keycloak_provider, "lab")
    versions.publish(keycloak_provider)
    puller = AgentProcess(tmp_path, instance, token, live_server.url)
    first, second = puller.pull(), puller.pull()
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert re.fullmatch(rf"\S+ applied v1 to {re.escape(str(puller.env_file))}\n", first.stdout)
    assert re.fullmatch(r"\S+ unchanged at v1\n", second.stdout)


def test_pull_and_push_write_the_variables_in_the_same_order():
    settings = {
        "USE_OAUTH2": "True", "OAUTH2_PROVIDER_NAME": "keycloak", "KEYCLOAK_REALM": "r",
        "OAUTH2_PROVIDER_CLIENT_ID": "diffgram-lab", "OAUTH2_PROVIDER_HOST": "https://kc/",
    }  # fmt: skip
    existing = "POSTGRES_HOST=db\n"
    as_pulled = envfile.merge_env(existing, settings)
    as_pushed = envfile.merge_env(existing, dict(sorted(settings.items())))
    assert as_pulled == as_pushed
    names = [line.split("=")[0] for line in as_pulled.splitlines() if "=" in line]
    assert names == ["POSTGRES_HOST", *[n for n in envfile.MANAGED if n in settings]]
