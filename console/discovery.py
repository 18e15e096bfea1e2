"""Validate an identity provider against its OIDC discovery document and JWKS.

`validate()` fetches (through console.outbound) and then runs `evaluate()`, a pure function over
what was fetched, so every check can be tested on plain data. Each check has a stable id and
ends pass / warn / fail / skip with a message an admin can act on. Checks never raise on bad
input: any JSON at all yields check results.

Rules: OpenID Connect Discovery 1.0, at the depth of the conformance suite, plus what Diffgram's
own code needs and does (docs/DIFFGRAM.md). Which checks run is the provider kind's plan
(console/kinds/); the checks that read only the configuration run even when the documents could
not be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from console import outbound
from console.diffgram_checks import client_per_instance_verdict
from console.oidc_checks import (
    DISCOVERY_PATH,
    ENDPOINT_KEYS,
    FAIL,
    PASS,
    SKIP,
    WARN,
    CheckPlan,
    CheckResult,
    Documents,
    ProviderSpec,
    jwks_verdict,
    url_problems,
)

__all__ = [  # what the rest of the console uses from here
    "DISCOVERY_PATH", "ENDPOINT_KEYS", "FAIL", "PASS", "SKIP", "WARN", "CheckPlan", "CheckResult",
    "Fetched", "ProviderSpec", "Report", "client_per_instance_verdict", "evaluate", "fetch_json",
    "jwks_verdict", "url_problems", "validate",
]  # fmt: skip


@dataclass
class Fetched:
    """The outcome of fetching one JSON document: a status and parsed JSON, or an error."""

    url: str
    status: int | None = None
    document: object = None
    error: str = ""


@dataclass
class Report:
    checks: list = field(default_factory=list)
    discovery: Fetched | None = None
    jwks: Fetched | None = None

    @property
    def ok(self) -> bool:
        return not any(check.status == FAIL for check in self.checks)

    def snapshot(self) -> tuple[dict, dict] | None:
        """The discovery document and JWKS when both were read as JSON objects (a snapshot
        worth keeping), else None."""
        documents = [
            fetched.document
            for fetched in (self.discovery, self.jwks)
            if fetched is not None and not fetched.error and isinstance(fetched.document, dict)
        ]
        return (documents[0], documents[1]) if len(documents) == 2 else None

    def as_list(self) -> list[dict[str, str]]:
        return [check.as_dict() for check in self.checks]


# --- I/O ----------------------------------------------------------------------------------------


def looks_like_html(response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    start = response.body[:200].lstrip().lower()
    return "html" in content_type or start.startswith((b"<!doctype html", b"<html"))


def fetch_json(url) -> Fetched:
    try:
        response = outbound.get(url, headers={"Accept": "application/json"})
    except outbound.OutboundError as error:
        return Fetched(url, error=error.message)
    if response.status != 200:
        return Fetched(url, status=response.status, error=f"{url} answered HTTP {response.status}")
    if looks_like_html(response):
        return Fetched(
            url,
            status=200,
            error=f"{url} answered with a web page (HTML), not JSON: it looks like a web page, "
            "not an OpenID issuer. Check the issuer URL (the address shown as the issuer in "
            "the identity provider's own settings).",
        )
    try:
        return Fetched(url, status=200, document=response.json())
    except outbound.OutboundError as error:
        return Fetched(url, status=200, error=error.message)


def validate(spec, plan, *, allow_loopback_http, fetch=fetch_json) -> Report:
    """Fetch the discovery document and the JWKS it names, then evaluate the plan's checks."""
    discovery_fetched = jwks_fetched = None
    if not url_problems(spec.issuer, allow_loopback_http):
        discovery_fetched = fetch(spec.discovery_location())
        document = discovery_fetched.document
        if isinstance(document, dict):
            jwks_uri = document.get("jwks_uri")
            if isinstance(jwks_uri, str) and not url_problems(jwks_uri, allow_loopback_http):
                jwks_fetched = fetch(jwks_uri)
    checks = evaluate(spec, plan, discovery_fetched, jwks_fetched, allow_loopback_http)
    return Report(checks=checks, discovery=discovery_fetched, jwks=jwks_fetched)


# --- the checks, in order ------------------------------------------------------------------------


def evaluate(spec, plan, discovery_fetched, jwks_fetched, allow_loopback_http) -> list[CheckResult]:
    """The plan's checks (the provider kind's), in its order; a check that cannot run because
    of an earlier failure is `skip`, never `fail`."""
    results = []

    def add(check_id, status, message) -> None:
        results.append(CheckResult(check_id, status, message))

    document, stopped = _read_documents(add, spec, discovery_fetched, allow_loopback_http)
    if stopped:
        for check_id in plan.document_ids():
            add(check_id, SKIP, stopped)
    else:
        documents = Documents(document, jwks_fetched, allow_loopback_http)
        for check in plan.documents:
            check.run(add, spec, documents)
    for check in plan.configuration:
        check.run(add, spec)
    return results


def _read_documents(add, spec, discovery_fetched, allow_loopback_http) -> tuple[dict, str]:
    """The checks that the issuer is acceptable and its discovery document was read. Returns
    the document, and why the document checks cannot run ("" when they can)."""
    problems = url_problems(spec.issuer, allow_loopback_http)
    if problems:
        add(
            "issuer.url",
            FAIL,
            f"The issuer {spec.issuer!r} is not acceptable: {'; '.join(problems)}.",
        )
        add("discovery.fetch", SKIP, "Skipped: the issuer URL is not acceptable.")
        return {}, "Skipped: the issuer URL is not acceptable."
    add("issuer.url", PASS, f"The issuer {spec.issuer} is a well-formed issuer URL.")

    location = spec.discovery_location()
    if discovery_fetched is None or discovery_fetched.error:
        reason = discovery_fetched.error if discovery_fetched else "not fetched"
        add(
            "discovery.fetch",
            FAIL,
            f"Could not read the discovery document at {location}: {reason}{spec.reach_hint}",
        )
        return {}, "Skipped: the discovery document could not be read."
    document = discovery_fetched.document
    if not isinstance(document, dict):
        add(
            "discovery.fetch",
            FAIL,
            f"The discovery document at {location} is JSON but not an object "
            f"(it is a {type(document).__name__}).",
        )
        return {}, "Skipped: the discovery document is not a JSON object."
    add("discovery.fetch", PASS, f"Read the discovery document at {location}.")
    return document, ""
