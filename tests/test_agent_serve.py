"""The agent's `serve`: signed webhook pushes over TLS, what it refuses, and clients that try to
keep the console's pushes out (silent, slow, from one address or many)."""

import hashlib
import hmac
import ipaddress
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.utils import timezone

from agent import diffgram_sso_agent as agent_script
from console import delivery, instances, tasks, versions
from console.instance_forms import InstanceForm
from console.models import Instance, Provider, PushRequest
from tests import idp_server
from tests.support import validated_keycloak_provider

pytestmark = pytest.mark.django_db(transaction=True)


def tls_files(folder):
    """A private CA and a certificate for 127.0.0.1 signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = timezone.now()
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    certificate = (
        x509.CertificateBuilder().subject_name(name("agent")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = {name: folder / f"{name}.pem" for name in ("ca", "cert", "key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )  # fmt: skip
    )
    return paths


def raw_request(port, head, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        return sock.recv(4096).decode("latin-1")


def signed_post(instance, version, url=None, **overrides):
    body, headers = delivery.signed_webhook(instance, version)
    if overrides:
        document = {**json.loads(body), **overrides}
        body = json.dumps(document).encode()
        timestamp = headers["X-Diffgram-SSO-Timestamp"]
        digest = hmac.new(
            instance.signing_secret().encode(), timestamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        headers["X-Diffgram-SSO-Signature"] = f"sha256={digest}"
    request = urllib.request.Request(url or instance.webhook_url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def agent(webhook_instance, monkeypatch):
    """The tests deliver pushes themselves (delivery.deliver), so nothing is queued for a worker
    that could still be writing when the test database is emptied."""
    monkeypatch.setattr(tasks, "dispatch_after_commit", lambda push_request_ids: None)
    return webhook_instance


class TestTheAgent:
    def test_bad_lengths_are_refused_unread_and_an_idle_client_blocks_nobody(
        self, agent, keycloak_provider
    ):
        instance, process = agent
        process.serve(process.port)
        head = "POST / HTTP/1.1\r\nHost: agent\r\n"
        assert " 411 " in raw_request(process.port, f"{head}Content-Length: -1\r\n\r\n".encode())
        assert " 411 " in raw_request(process.port, f"{head}\r\n".encode())
        assert " 413 " in raw_request(
            process.port, f"{head}Content-Length: 9999999\r\n\r\n".encode()
        )
        with socket.create_connection(("127.0.0.1", process.port)):  # says nothing, stays open
            version = versions.publish(keycloak_provider)
            instance.refresh_from_db()
            assert signed_post(instance, version) == (200, {"applied": 1, "changed": True})
        assert process.server.poll() is None  # still serving

    def test_a_switch_to_another_provider_is_applied_not_refused_as_older(
        self, agent, keycloak_provider, idp
    ):
        instance, process = agent
        process.serve(process.port)

        def deliver_latest():
            push = PushRequest.objects.filter(instance=instance).latest("id")
            delivery.deliver([push.pk])
            push.refresh_from_db()
            return push

        versions.publish(keycloak_provider)
        versions.publish(keycloak_provider)
        assert deliver_latest().state == "succeeded"  # the agent runs v2 of the first provider
        other = validated_keycloak_provider(
            idp_server.serve_keycloak(idp), name="Other Keycloak", client_id="other-{instance}"
        )
        instance.refresh_from_db()
        switch = InstanceForm(
            data={**instance.audit_fields(), "provider": other.pk, "name": instance.name},
            instance=instance,
        )
        assert switch.is_valid(), switch.errors
        instances.update_instance(switch)
        version = versions.publish(Provider.objects.get(pk=other.pk))
        assert version.number == 1  # version numbers start again with each provider
        push = deliver_latest()
        assert (push.state, push.last_error) == ("succeeded", "")
        assert process.env()["OAUTH2_PROVIDER_CLIENT_ID"] == "other-pushed"

    def test_an_apply_error_answers_the_push_before_the_console_hears_of_it(
        self, agent, keycloak_provider, hook_receiver
    ):
        """The push waits for its answer only so long (console/outbound.py), and a console busy
        with a fleet's reports may take longer than that to hear the error."""
        instance, process = agent
        busy_console = hook_receiver
        busy_console.url = busy_console.url.removesuffix("/hook")  # the agent adds the API path
        process.console_url = busy_console.url
        process.serve(process.port, "--on-change", "exit 3")
        version = versions.publish(keycloak_provider)
        instance.refresh_from_db()
        busy_console.answering.clear()
        try:
            status, answer = signed_post(instance, version)
        finally:
            busy_console.answering.set()
        assert (status, answer) == (
            500,
            {"error": "could not apply: --on-change command exited with 3"},
        )
        assert busy_console.posted.acquire(timeout=30)
        assert busy_console.paths == [f"/api/v1/instances/{instance.pk}/applied"]
        assert busy_console.payloads() == [
            {"version": 1, "status": "error", "detail": "--on-change command exited with 3"}
        ]

    def test_it_writes_only_the_variables_it_manages(self, agent, keycloak_provider):
        instance, process = agent
        process.serve(process.port)
        process.env_file.write_text("POSTGRES_PASSWORD=keep-me\n")
        version = versions.publish(keycloak_provider)
        instance.refresh_from_db()
        for settings_ in (
            {"POSTGRES_PASSWORD": "attacker"},
            {"USE_OAUTH2": "True", "X\nPOSTGRES_PASSWORD": "attacker"},
        ):
            status, answer = signed_post(instance, version, settings=settings_)
            assert status == 400 and "refused variables" in answer["error"]
        assert process.env_file.read_text() == "POSTGRES_PASSWORD=keep-me\n"
        assert "refused a push naming variables it does not manage" in process.log_path.read_text()

    def test_it_serves_tls_and_the_console_pushes_over_it(
        self, agent, keycloak_provider, tmp_path, monkeypatch
    ):
        instance, process = agent
        files = tls_files(tmp_path)
        process.serve(
            process.port, "--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])
        )
        monkeypatch.setenv("SSL_CERT_FILE", str(files["ca"]))  # the console trusts the test CA
        Instance.objects.filter(pk=instance.pk).update(
            webhook_url=f"https://127.0.0.1:{process.port}/"
        )
        versions.publish(keycloak_provider)
        push = PushRequest.objects.get(instance=instance)
        delivery.deliver([push.pk])
        push.refresh_from_db()
        assert push.state == "succeeded", push.last_error
        assert process.env()["KEY_CLOAK_MASTER_PASSWORD"] == "kc-master-canary"


class Dribbler:
    """A client that opens a connection from `address` and sends its request one byte at a
    time, a byte every `every` seconds, for as long as the connection lasts (slowloris)."""

    def __init__(self, port, address="127.0.0.1", every=0.5):
        self.sock = socket.create_connection(("127.0.0.1", port), source_address=(address, 0))
        self.closed = threading.Event()
        self.stop = threading.Event()
        threading.Thread(target=self._dribble, args=(every,), daemon=True).start()

    def _dribble(self, every):
        head = b"POST / HTTP/1.1\r\nHost: agent\r\nContent-Length: 100\r\n" + b"X-Pad: y\r\n" * 99
        for byte in head:
            try:
                self.sock.send(bytes([byte]))
            except OSError:
                break
            if self.stop.wait(every):
                break
        self.closed.set()

    def cut_off(self, timeout):
        """Whether the agent closed the connection within `timeout` seconds."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, OSError):
            return False

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture
def dribblers():
    made = []
    yield made
    for dribbler in made:
        dribbler.close()


def test_slow_clients_from_one_address_or_many_cannot_keep_pushes_out(
    agent, keycloak_provider, dribblers
):
    """16 unauthenticated connections each sending a byte every few seconds made every signed
    push fail while they lasted. Now: at most 4 from one address, 16 in all, and then reserved
    slots for a request that shows a signed push's head at once."""
    instance, process = agent
    process.serve(process.port)
    version = versions.publish(keycloak_provider)
    instance.refresh_from_db()
    # 20 from one address (not the console's, 127.0.0.1): only 4 are kept open.
    dribblers += [Dribbler(process.port, "127.0.0.50") for _ in range(20)]
    assert sum(d.cut_off(timeout=2) for d in dribblers) >= 16
    assert signed_post(instance, version) == (200, {"applied": 1, "changed": True})
    # 16 from 16 addresses (127.0.0.2 to .17 all reach this host): every normal slot is
    # taken, and the console's push still gets through a reserved one.
    dribblers += [Dribbler(process.port, f"127.0.0.{n}") for n in range(2, 18)]
    assert signed_post(instance, version) == (200, {"applied": 1, "changed": False})
    assert process.server.poll() is None


def test_a_request_must_arrive_whole_by_its_deadline_not_byte_by_byte(agent, dribblers):
    """A per-byte timeout let a byte every two seconds hold a connection for ever."""
    _, process = agent
    process.serve(process.port)
    started = time.monotonic()
    dribblers.append(Dribbler(process.port, every=1))
    assert dribblers[0].cut_off(timeout=agent_script.CONNECTION_TIMEOUT + 5)
    assert time.monotonic() - started < agent_script.CONNECTION_TIMEOUT + 3
