"""A real HTTP server on 127.0.0.1 that serves discovery documents and JWKS for tests.

Each test sets the exact responses it needs (documents of Cognito, Keycloak and Okta shapes,
and broken variants), so every check can be exercised over real HTTP without mocks.
"""

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler

from joserfc.jwk import RSAKey

from tests.loopback import LoopbackHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: tuple = ()
    delay: float = 0.0
    chunked: bool = False
    drip: float = 0.0  # seconds between 64 KiB pieces of the body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.server.requests.append(self.path)
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None and self.server.proxy_to:
            return self._forward()
        if route is None:
            route = Route(status=404, body=b'{"error": "not found"}')
        if route.delay:
            time.sleep(route.delay)
        self.send_response(route.status)
        for name, value in route.headers:
            self.send_header(name, value)
        if route.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(route.body), 65536):
                piece = route.body[start : start + 65536]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.drip:
            for start in range(0, len(route.body), 65536):
                self.wfile.write(route.body[start : start + 65536])
                self.wfile.flush()
                time.sleep(route.drip)
            return
        self.wfile.write(route.body)

    def do_POST(self):  # noqa: N802 - the stdlib's name
        self.server.requests.append(self.path)
        if not self.server.proxy_to:
            self.send_error(405)
            return
        self._forward()

    def _forward(self):
        """Pass the request on unchanged (e.g. boto3's calls to a moto server)."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        request = urllib.request.Request(
            self.server.proxy_to + self.path, data=body, headers=headers, method=self.command
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, answer, reply_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, answer, reply_headers = error.code, error.read(), error.headers
        self.send_response(status)
        for name, value in reply_headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


class _QuietServer(LoopbackHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up early (size caps, timeouts) are what the tests provoke


class DocumentServer:
    def __init__(self):
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}
        self.httpd.requests = []
        self.httpd.proxy_to = ""  # where requests without a route go, when set
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def requests(self):
        return self.httpd.requests

    def url(self, path):
        return self.base + path

    def json(self, path, document, status=200, **options):
        body = json.dumps(document).encode()
        self.httpd.routes[path] = Route(
            status=status, body=body, headers=(("Content-Type", "application/json"),), **options
        )

    def raw(self, path, body, status=200, content_type="text/html", **options):
        self.httpd.routes[path] = Route(
            status=status, body=body, headers=(("Content-Type", content_type),), **options
        )

    def slow_body(self, path, body, pause):
        """A body sent in 64 KiB pieces, `pause` seconds apart."""
        self.httpd.routes[path] = Route(body=body, drip=pause)

    def redirect(self, path, location, status=302):
        self.httpd.routes[path] = Route(status=status, headers=(("Location", location),))

    def forward_unknown_to(self, base_url):
        """Answer the routes set here, and pass every other request on to `base_url`: a moto
        server fronted with the discovery document real Cognito publishes."""
        self.httpd.proxy_to = base_url

    def reset(self):
        self.httpd.routes.clear()
        self.httpd.requests.clear()
        self.httpd.proxy_to = ""

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@cache
def signing_key(kid="test-key-1"):
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def public_jwks(*kids):
    return {"keys": [signing_key(kid).as_dict(private=False) for kid in kids or ("test-key-1",)]}


def okta_document(issuer):
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/v1/authorize",
        "token_endpoint": f"{issuer}/v1/token",
        "userinfo_endpoint": f"{issuer}/v1/userinfo",
        "jwks_uri": f"{issuer}/v1/keys",
        "end_session_endpoint": f"{issuer}/v1/logout",
        "response_types_supported": ["code", "id_token", "code id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "groups"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
    }


def keycloak_document(server_url, realm):
    issuer = f"{server_url}realms/{realm}"
    oidc = f"{issuer}/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{oidc}/auth",
        "token_endpoint": f"{oidc}/token",
        "userinfo_endpoint": f"{oidc}/userinfo",
        "end_session_endpoint": f"{oidc}/logout",
        "jwks_uri": f"{oidc}/certs",
        "response_types_supported": ["code", "none", "id_token", "token", "code id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["PS384", "RS256", "ES256", "HS256"],
        "scopes_supported": ["openid", "email", "profile", "roles"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt", "client_secret_basic", "client_secret_post", "client_secret_jwt",
        ],
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token"],
    }  # fmt: skip


def cognito_document(region, pool, hosted_ui, jwks_uri):
    """Real Cognito's shape: issuer on cognito-idp, endpoints on the hosted-UI domain."""
    return {
        "issuer": f"https://cognito-idp.{region}.amazonaws.com/{pool}",
        "authorization_endpoint": f"{hosted_ui}/oauth2/authorize",
        "token_endpoint": f"{hosted_ui}/oauth2/token",
        "userinfo_endpoint": f"{hosted_ui}/oauth2/userInfo",
        "end_session_endpoint": f"{hosted_ui}/logout",
        "revocation_endpoint": f"{hosted_ui}/oauth2/revoke",
        "jwks_uri": jwks_uri,
        "response_types_supported": ["code", "token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "phone", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }


def serve_okta(server, path="/oauth2/default", change=None, jwks=None):
    """Serve an Okta-shaped provider; returns its issuer."""
    issuer = server.url(path)
    document = okta_document(issuer)
    if change:
        change(document)
    server.json(f"{path}/.well-known/openid-configuration", document)
    server.json(f"{path}/v1/keys", jwks if jwks is not None else public_jwks())
    return issuer


def serve_keycloak(server, realm="diffgram-realm", change=None):
    """Serve a Keycloak-shaped realm under /auth/; returns the server URL."""
    server_url = server.url("/auth/")
    document = keycloak_document(server_url, realm)
    if change:
        change(document)
    server.json(f"/auth/realms/{realm}/.well-known/openid-configuration", document)
    server.json(f"/auth/realms/{realm}/protocol/openid-connect/certs", public_jwks())
    return server_url


def serve_cognito(server, region, pool, hosted_ui):
    """Serve a Cognito-shaped pool at /<pool>/ (point AWS_ENDPOINT_URL at the server)."""
    jwks_path = f"/{pool}/.well-known/jwks.json"
    server.json(
        f"/{pool}/.well-known/openid-configuration",
        cognito_document(region, pool, hosted_ui, server.url(jwks_path)),
    )
    server.json(jwks_path, public_jwks())
