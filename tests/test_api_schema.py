"""The JSON API against its own OpenAPI document: Schemathesis (property-based, every check but
positive-data acceptance, the stateful phase on, a fixed seed) sends generated requests to a
live console and fails on any answer the document does not describe: a 500, HTML where JSON is
documented, an undocumented status, a schema-valid request refused without a documented reason.

The console under test may contact only 127.0.0.1: the fuzzer names arbitrary issuers, so name
resolution is limited to loopback at the process boundary (socket.getaddrinfo)."""

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.urls import reverse
from openapi_spec_validator import validate

from console import versions
from tests.support import (
    make_instance,
    make_pool,
    make_provider,
    subprocess_environment,
    token_for,
)

pytestmark = pytest.mark.django_db(transaction=True)
SEED = 20261203
MAX_EXAMPLES = 5


@pytest.fixture
def loopback_only(monkeypatch):
    """Names resolve to loopback addresses or not at all, whatever a request names."""
    resolve = socket.getaddrinfo

    def loopback(host, *args, **kwargs):
        found = [info for info in resolve(host, *args, **kwargs) if _loopback(info[4][0])]
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not resolved in this test")
        return found

    monkeypatch.setattr(socket, "getaddrinfo", loopback)


def _loopback(address):
    return address.startswith("127.") or address == "::1"


@pytest.fixture
def fleet(keycloak_provider, admin_user, moto):
    """Something for every operation to find: providers of each kind, an instance with a
    published version, a Cognito pool."""
    cognito = make_provider(*make_pool(moto))
    instance, instance_token = make_instance(keycloak_provider, "fuzzed")
    versions.publish(keycloak_provider)
    return {
        "admin": token_for(admin_user),
        "instance": instance_token,
        "ids": {"provider": keycloak_provider.pk, "cognito": cognito.pk, "instance": instance.pk},
    }


def schemathesis(base_url, token, *selection):
    """Run Schemathesis against the live console; (exit code, its report)."""
    command = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    result = subprocess.run(
        [
            command, "run", f"{base_url}/api/v1/openapi.json",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
            "--header", f"Authorization: Bearer {token}",
            "--request-timeout", "20", "--workers", "2", "--no-color", *selection,
        ],
        # A fresh folder: no cache of an earlier run's failures changes what is generated.
        cwd=tempfile.mkdtemp(prefix="schemathesis-"),
        env={**subprocess_environment(), "NO_COLOR": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return result.returncode, result.stdout[-8000:] + result.stderr[-4000:]


def test_the_document_is_valid_openapi(client):
    document = client.get(reverse("api-v1:openapi-json")).json()
    validate(document)  # raises, naming the problem
    assert document["openapi"].startswith("3.1")


def test_every_operation_answers_as_documented_with_a_personal_token(
    live_server, fleet, loopback_only
):
    code, report = schemathesis(
        live_server.url, fleet["admin"], "--exclude-tag", "instances (machine)"
    )
    assert code == 0, report


def test_the_pull_operations_answer_as_documented_with_an_instance_token(
    live_server, fleet, loopback_only
):
    code, report = schemathesis(
        live_server.url, fleet["instance"], "--include-tag", "instances (machine)"
    )
    assert code == 0, report


def test_the_fuzzer_fails_on_an_answer_the_document_does_not_describe(
    live_server, fleet, loopback_only, monkeypatch
):
    """The fuzzer can fail: a 404 answered as an HTML page instead of the documented JSON."""
    from django.http import HttpResponseNotFound

    from console.api import errors, v1

    json_error = v1.error
    monkeypatch.setattr(
        v1, "error",
        lambda status, message, **extra: HttpResponseNotFound("<h1>Not found</h1>")
        if status == 404 else json_error(status, message, **extra),
    )  # fmt: skip
    monkeypatch.setattr(
        errors.ApiErrorsMiddleware, "__call__", lambda self, request: self.get_response(request)
    )
    code, report = schemathesis(
        live_server.url, fleet["admin"], "--include-operation-id", "getInstance"
    )
    assert code != 0, report
