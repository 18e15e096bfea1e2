"""Setting up the agent on a Diffgram host: the agent file the console serves, its SHA-256, and
the shell commands the instance pages show, written to work when pasted as they are (as root,
on a docker-compose host; the agent writes the .env file)."""

from __future__ import annotations

import hashlib
import io
import shlex
import zipfile
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import agent

AGENT_PACKAGE = Path(agent.__file__).parent
AGENT_DOWNLOAD_NAME = agent.DOWNLOAD_NAME
# Where the commands put things on the host.
SSO_DIR = "/etc/diffgram-sso"
AGENT_PATH = f"/usr/local/bin/{AGENT_DOWNLOAD_NAME}"
DIFFGRAM_DIR = "/opt/diffgram"  # where Diffgram's docker-compose.yml and .env live
ENV_FILE = f"{DIFFGRAM_DIR}/.env"
# Diffgram reads its .env only when its containers start: compose recreates those whose
# environment changed. Without it the new version waits for the next restart, and the agent's
# verification times out.
ON_CHANGE = f"docker compose --project-directory {DIFFGRAM_DIR} up -d"
# Where the agent reaches Diffgram to verify, on the host itself (Diffgram's own default port):
# its public URL_BASE may not resolve, or may loop through a load balancer, from there.
LOCAL_DIFFGRAM = "http://127.0.0.1:8085/"
POLL_SECONDS = 60


@cache
def agent_source() -> bytes:
    """The one file operators download: the agent package (agent/*.py, which the console
    shares) as a zip application that `python3 <AGENT_DOWNLOAD_NAME> ...` runs (Python runs a
    zip file whatever its name). Built the same, byte for byte, every time: fixed dates and
    order, so its SHA-256 can be published and checked."""
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as bundle:
        # The package's own __main__.py starts the zip application too.
        members = [("__main__.py", (AGENT_PACKAGE / "__main__.py").read_bytes())] + [
            (f"agent/{path.name}", path.read_bytes())
            for path in sorted(AGENT_PACKAGE.glob("*.py"))
            if path.name != "__main__.py"
        ]
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, data)
    return buffer.getvalue()


@cache
def agent_sha256() -> str:
    return hashlib.sha256(agent_source()).hexdigest()


def uses_agent(instance) -> bool:
    """The agent keeps a compose .env file in step; SSM instances and Helm read elsewhere."""
    return instance.shape == "compose" and instance.push_target in ("none", "webhook")


def setup_commands(instance, console_url, *, token="", signing_secret="") -> str:
    """The commands that install the agent and start it, with the secrets written to files of
    mode 600 (only those given: they are shown once). `console_url` ends with "/"."""
    webhook = instance.push_target == "webhook"
    lines = [
        f"install -d -m 700 {SSO_DIR}",
        f"curl -fsSL -o {AGENT_PATH} {shlex.quote(console_url + 'agent/' + AGENT_DOWNLOAD_NAME)}",
        f"echo '{agent_sha256()}  {AGENT_PATH}' | sha256sum -c -",
    ]
    if token:
        lines.append(_write_secret(token, f"{SSO_DIR}/token"))
    if webhook and signing_secret:
        lines.append(_write_secret(signing_secret, f"{SSO_DIR}/signing-secret"))
    console = (
        f"--console {shlex.quote(console_url)} --instance {instance.pk} "
        f"--token-file {SSO_DIR}/token --env-file {ENV_FILE} \\\n"
        f"    --on-change {shlex.quote(ON_CHANGE)} --diffgram-url {LOCAL_DIFFGRAM}"
    )
    if instance.signin_runner == "agent":  # it signs in with the provider's test account
        console += " --signin"
    if webhook:
        parts = urlsplit(instance.webhook_url)
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        tls = (
            f" \\\n    --tls-cert {SSO_DIR}/agent.crt --tls-key {SSO_DIR}/agent.key"
            if https
            else ""
        )
        if https:
            lines.append(
                f"# TLS: the agent's certificate and key go in {SSO_DIR}/agent.crt and .key"
            )
        lines.append(
            f"python3 {AGENT_PATH} serve --listen 0.0.0.0:{port}{tls} \\\n"
            f"    --secret-file {SSO_DIR}/signing-secret {console}"
        )
    else:
        lines.append(f"python3 {AGENT_PATH} pull --interval {POLL_SECONDS} {console}")
    return "\n".join(lines) + "\n"


def _write_secret(value, path) -> str:
    # umask in a subshell: the file is created with mode 600, never readable for a moment.
    return f"(umask 077; printf '%s\\n' {shlex.quote(value)} > {path})"
