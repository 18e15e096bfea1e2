"""The only module that makes HTTP requests (to identity providers and Diffgram agents).

Every request has a connect and a read timeout, an overall deadline, a body size cap, at most
three redirects (each checked again), TLS verification, and refuses private, loopback,
link-local, multicast and reserved addresses, both when the host name is resolved and for the
address actually connected to (so DNS rebinding cannot slip past). SSO_ADMIN_ALLOW_PRIVATE_URLS=true
allows loopback (127.0.0.0/8 and ::1) and private ranges (development, tests, agents on your own
network), and plain http only to those; link-local addresses such as the cloud metadata service
stay refused. Hosts written as numbers other than a.b.c.d (2852039166, 0xa9fea9fe) are refused.

Failures raise OutboundError with a message an admin can act on and `permanent`, which tells
tasks whether retrying can help.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
TOTAL_DEADLINE = 15.0
MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 3
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
USER_AGENT = "diffgram-sso-console/1"


class OutboundError(Exception):
    def __init__(self, message, *, permanent):
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass
class Response:
    url: str
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    cookies: list = field(default_factory=list)  # every Set-Cookie value (headers keeps one)

    def json(self) -> Any:
        """The body parsed as JSON, or OutboundError saying why it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise OutboundError(f"{self.url} did not return UTF-8 text", permanent=True) from error
        except json.JSONDecodeError as error:
            raise OutboundError(
                f"{self.url} did not return JSON ({error.msg} at line {error.lineno})",
                permanent=True,
            ) from error


def private_urls_allowed() -> bool:
    return settings.SSO_ADMIN_ALLOW_PRIVATE_URLS


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip):
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), else None: such
    addresses reach that IPv4 host and are judged as it."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]  # the client's address
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


# Cloud metadata services, which hand out credentials: by name, and the one address that is
# not link-local (AWS's IPv6 endpoint). Link-local addresses (169.254.169.254) are refused
# anyway, and the address a connection reaches is checked again when it is made.
METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
     "instance-data.ec2.internal", "metadata.azure.internal"}
)  # fmt: skip
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254")})


def webhook_url_problem(url, *, allow_http) -> str:
    """Why the console will not push to this agent URL, or "" when it will. Pushes carry
    secrets: https, except to this host itself or with the instance's explicit "allow plain
    HTTP"; never to an address that is never allowed (cloud metadata and the like)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if problem := numeric_host_problem(host):
        return problem
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if host in METADATA_HOSTS or literal in METADATA_ADDRESSES:
        return f"{host} is a cloud metadata service: never allowed."
    if literal is not None and _never_allowed(_embedded_ipv4(literal) or literal):
        return f"{host} is a link-local, multicast or reserved address: never allowed."
    loopback = host == "localhost" or (literal is not None and literal.is_loopback)
    if parts.scheme == "http" and not loopback and not allow_http:
        return (
            "Pushes carry secrets: use https:// (serve the agent with --tls-cert and --tls-key), "
            'or tick "allow plain HTTP" for a network you trust end to end.'
        )
    return ""


def _never_allowed(ip):
    return (
        ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or ip in METADATA_ADDRESSES
    )


def address_refusal(address) -> str | None:
    """Why we never connect to `address`, or None when we may.

    Link-local (cloud metadata at 169.254.169.254), multicast, unspecified and reserved
    addresses are always refused. Loopback and private ranges are refused unless
    SSO_ADMIN_ALLOW_PRIVATE_URLS is on. An IPv6 address carrying an IPv4 one (mapped, 6to4,
    Teredo, NAT64) is judged as the IPv4 it carries.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    if ip.is_loopback:  # ::1 is in a reserved block, but it is this host, as 127.0.0.1 is
        return (
            None
            if private_urls_allowed()
            else (
                "a loopback address, which only SSO_ADMIN_ALLOW_PRIVATE_URLS=true allows: "
                "for development only"
            )
        )
    if _never_allowed(ip):
        return "a link-local, multicast or reserved address (never allowed)"
    if ip.is_global:
        return None
    if private_urls_allowed() and ip.is_private:
        return None
    return (
        "a private address, which only SSO_ADMIN_ALLOW_PRIVATE_URLS=true allows: for "
        "development, or for agents and identity providers on a network you trust"
    )


def numeric_host_problem(host) -> str:
    """Why a host written as a number other than a.b.c.d (2852039166, 0xa9fea9fe, 0251.0376…,
    169.254.43518: spellings the C library still resolves) is refused, or "". Such a
    spelling hides which address it is from whoever reads the URL."""
    host = (host or "").strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return ""  # written as an address: judged as one
    except ValueError:
        pass
    if not re.fullmatch(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", host):
        return ""
    try:
        address = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return f"{host} is not a valid address or host name."
    return (
        f"{host} is a numeric spelling of the address {address}: write addresses as "
        f"{address}, or use a host name."
    )


def _plain_http_refusal(address, host):
    """Plain http carries secrets unencrypted: only to this host or a private network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    ip = (_embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None) or ip
    if ip.is_global:
        raise OutboundError(
            f"Refused http://{host}: plain http goes only to loopback and private addresses "
            f"({host} is at {address}, a public address); use https://",
            permanent=True,
        )


def _refuse_private(address, host):
    reason = address_refusal(address)
    if reason:
        raise OutboundError(f"Refused: {host} is at {address}, {reason}.", permanent=True)


def _checked(sock, host):
    """The socket of a new connection, once the address it reached is allowed (nothing has been
    sent on it yet)."""
    try:
        _refuse_private(sock.getpeername()[0], host)
    except OutboundError:
        sock.close()
        raise
    return sock


class _GuardedHTTPConnection(HTTPConnection):
    def _new_conn(self):
        sock = _checked(super()._new_conn(), self.host)
        try:
            _plain_http_refusal(sock.getpeername()[0], self.host)
        except OutboundError:
            sock.close()
            raise
        return sock


class _GuardedHTTPSConnection(HTTPSConnection):
    def _new_conn(self):
        return _checked(super()._new_conn(), self.host)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


def _pool_manager():
    manager = urllib3.PoolManager(
        maxsize=16,  # connections kept per host, for concurrent pushes from threaded workers
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        retries=False,
        cert_reqs="CERT_REQUIRED",
        headers={"User-Agent": USER_AGENT},
    )
    manager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
    return manager


_MANAGER = _pool_manager()


def check_url(url) -> None:
    """Refuse URLs we never fetch: not http(s), no host, credentials, or a private address."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise OutboundError(f"Refused {url!r}: only https:// URLs are fetched", permanent=True)
    if parts.scheme == "http" and not private_urls_allowed():
        raise OutboundError(
            f"Refused {url}: plain http is not allowed, use https:// (SSO_ADMIN_ALLOW_PRIVATE_URLS"
            "=true allows http:// to loopback and private addresses: for development only)",
            permanent=True,
        )
    if not parts.hostname:
        raise OutboundError(f"Refused {url!r}: the URL has no host", permanent=True)
    if problem := numeric_host_problem(parts.hostname):
        raise OutboundError(f"Refused {url}: {problem}", permanent=True)
    if parts.username or parts.password:
        raise OutboundError(f"Refused {url}: credentials in URLs are not allowed", permanent=True)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise OutboundError(f"Refused {url!r}: invalid port", permanent=True) from error
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port)}
    except (socket.gaierror, UnicodeError) as error:
        raise OutboundError(
            f"Cannot resolve host {parts.hostname!r}: {error}", permanent=False
        ) from error
    for address in sorted(addresses):
        _refuse_private(address, parts.hostname)
        if parts.scheme == "http":
            _plain_http_refusal(address, parts.hostname)


def request(method, url, *, body=None, headers=None, max_redirects=MAX_REDIRECTS) -> Response:
    """Send one request (following up to `max_redirects` checked redirects) and read the body.

    Returns a Response for any HTTP status; raises OutboundError when no response was read.
    """
    deadline = time.monotonic() + TOTAL_DEADLINE
    for _hop in range(max_redirects + 1):
        check_url(url)
        response = _send(method, url, body, headers, deadline)
        location = response.headers.get("location")
        if response.status not in REDIRECT_STATUSES or not location or max_redirects == 0:
            return response
        url = urljoin(url, location)
        if response.status == 303:
            method, body = "GET", None
    raise OutboundError(f"Too many redirects (more than {max_redirects})", permanent=True)


def get(url, **kwargs) -> Response:
    return request("GET", url, **kwargs)


def post(url, body, headers, **kwargs) -> Response:
    return request("POST", url, body=body, headers=headers, max_redirects=0, **kwargs)


def _send(method, url, body, headers, deadline):
    host = urlsplit(url).netloc
    try:
        raw = _MANAGER.request(
            method,
            url,
            body=body,
            headers={**(_MANAGER.headers or {}), **(headers or {})},
            redirect=False,
            preload_content=False,
        )
    except OutboundError:
        raise
    except ReadTimeoutError as error:
        raise OutboundError(
            f"{host} did not answer within {READ_TIMEOUT:g} s", permanent=False
        ) from error
    except SSLError as error:
        raise OutboundError(
            f"TLS to {host} failed (certificate verification is always on): {error}",
            permanent=True,
        ) from error
    except NameResolutionError as error:
        raise OutboundError(f"Cannot resolve host of {url}", permanent=False) from error
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, so it must come first.
    except (NewConnectionError, MaxRetryError, ProtocolError, OSError) as error:
        raise OutboundError(
            f"Could not connect to {host}: {_reason(error)}", permanent=False
        ) from error
    except ConnectTimeoutError as error:
        raise OutboundError(
            f"Timed out connecting to {host} (after {CONNECT_TIMEOUT:g} s)", permanent=False
        ) from error
    try:
        return Response(
            url=url,
            status=raw.status,
            headers={name.lower(): value for name, value in raw.headers.items()},
            body=_read_capped(raw, url, deadline),
            cookies=raw.headers.getlist("set-cookie"),
        )
    except OutboundError:
        raw.close()  # the rest of an abandoned body must not be read as the next answer
        raise
    finally:
        raw.release_conn()


def _read_capped(raw, url, deadline):
    declared = raw.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise OutboundError(_too_large(url), permanent=True)
    chunks, size = [], 0
    try:
        for chunk in raw.stream(64 * 1024, decode_content=True):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise OutboundError(_too_large(url), permanent=True)
            chunks.append(chunk)
            # The deadline guards the waiting: an answer read in full is an answer, however
            # late this process got to read it (a paused worker, a slow --on-change).
            if time.monotonic() > deadline and not _complete(raw):
                raise OutboundError(
                    f"{url} took longer than {TOTAL_DEADLINE:g} s to send its answer",
                    permanent=False,
                )
    except ReadTimeoutError as error:
        raise OutboundError(
            f"{url} stopped sending for more than {READ_TIMEOUT:g} s", permanent=False
        ) from error
    except ProtocolError as error:
        raise OutboundError(
            f"{url} broke off its answer: {_reason(error)}", permanent=False
        ) from error
    return b"".join(chunks)


def _complete(raw):
    """Whether the whole body has been read (its declared length, or the stream's end)."""
    remaining = raw.length_remaining
    return (remaining is not None and remaining <= 0) or raw.isclosed()


def _too_large(url):
    return f"{url} answered with more than {MAX_BODY_BYTES // 1024} KiB; refusing to read it"


def _reason(error):
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    for known in ("Connection refused", "Connection reset", "No route to host"):
        if known.lower() in text.lower():
            return known.lower()
    return text
