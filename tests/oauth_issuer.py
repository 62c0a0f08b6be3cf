"""A local OAuth 2.0 token endpoint for the tests (client credentials grant), whose RS256 tokens the
secure local broker accepts: signed with its issuer key (scripts/kafka-local --secure, tls/oauth-issuer.key)."""
from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote_plus

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

ISSUER, AUDIENCE, KEY_ID = "kafka-local", "kafka", "kafka-local"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint(key_file: Path, subject: str, lifetime_s: float, issuer: str = ISSUER, audience: str = AUDIENCE,
         scope: str | None = None) -> str:
    """A signed JWT (RS256) for ``subject``, valid ``lifetime_s`` from now."""
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + int(lifetime_s)}
    if scope:
        claims["scope"] = scope
    header = {"alg": "RS256", "typ": "JWT", "kid": KEY_ID}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}".encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    return f"{signing_input.decode()}.{_b64url(signature)}"


@dataclass
class TokenEndpoint:
    url: str
    clients: dict[str, str]
    lifetime_s: float
    audience: str = AUDIENCE  # what the tokens name; the secure local broker wants "kafka"
    unavailable: bool = False  # answer 503 to every request (the provider is down)
    redirect_to: str | None = None  # answer 302 to this URL instead
    issued: list[str] = field(default_factory=list)  # client ids, one per token issued
    refused: int = 0
    requests: int = 0


@contextmanager
def token_endpoint(key_file: Path, clients: dict[str, str], lifetime_s: float = 3600) -> Iterator[TokenEndpoint]:
    """POST /token, client credentials in HTTP basic auth (or the form); the token's subject is the client id."""
    state = TokenEndpoint("", clients, lifetime_s)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"] or 0)).decode()
            state.requests += 1
            if state.unavailable:
                self._answer(503, {"error": "temporarily_unavailable"})
                return
            if state.redirect_to:
                self.send_response(302)
                self.send_header("Location", state.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            form = {k: v[0] for k, v in parse_qs(body).items()}
            client_id, secret = form.get("client_id"), form.get("client_secret")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                # RFC 6749 2.3.1: each part form-encoded before joining (so an id may hold a colon)
                client_id, secret = (unquote_plus(part) for part in
                                     base64.b64decode(auth[6:]).decode().partition(":")[::2])
            if form.get("grant_type") != "client_credentials" or state.clients.get(client_id or "") != secret:
                state.refused += 1
                self._answer(401, {"error": "invalid_client", "error_description": "unknown client or wrong secret"})
                return
            state.issued.append(client_id or "")
            token = mint(key_file, client_id or "", state.lifetime_s, audience=state.audience, scope=form.get("scope"))
            self._answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": int(state.lifetime_s)})

        def _answer(self, status: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
