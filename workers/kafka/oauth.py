"""SASL/OAUTHBEARER tokens from an OAuth 2.0 identity provider (client credentials grant, RFC 6749 §4.4).

One ``ClientCredentials`` per process and provider serves every client (faust, aiokafka,
kafka-python): a token is fetched once and reused until 80% of its lifetime has passed, as
librdkafka's ``sasl.oauthbearer.method=oidc`` and Java's login handler do. The broker checks
the token (signature, issuer, audience, expiry) and takes its subject as the principal.

The client secret goes only into the token request's Authorization header: never into logs,
errors or the token itself.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from workers.errors import KafkaUnavailableError
from workers.settings import Settings

REFRESH_AT = 0.8  # of a token's lifetime
DEFAULT_LIFETIME_S = 300.0  # a provider that says nothing of expiry (neither expires_in nor a JWT exp)
REQUEST_TIMEOUT_S = 10.0
# While the token in hand is still valid and the provider fails: ask again at most this often, and
# wait for it at most this long (kafka-python asks from its IO thread, which serves every connection)
RETRY_AFTER_FAILURE_S = 5.0
REQUEST_TIMEOUT_WITH_A_VALID_TOKEN_S = 2.0


class TokenError(KafkaUnavailableError):
    """The identity provider gave no token: unreachable, or it refused the client's credentials."""


class ClientCredentials:
    """Bearer tokens for one client at one token endpoint, cached until they near their expiry."""

    def __init__(self, url: str, client_id: str, client_secret: str, scope: str | None = None,
                 clock: Callable[[], float] = time.time, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.url, self.client_id, self.scope = url, client_id, scope
        self._secret = client_secret
        self._clock, self._timeout_s = clock, timeout_s
        self._lock = threading.Lock()  # kafka-python asks from its IO thread, aiokafka from the loop's executor
        # (token, refresh at, expires at): one tuple, so that a lock-free reader never pairs a token
        # with another token's times
        self._current: tuple[str, float, float] | None = None
        self._retry_at = 0.0
        self.fetched = 0

    def __repr__(self) -> str:  # never the secret
        return f"ClientCredentials(url={self.url!r}, client_id={self.client_id!r}, scope={self.scope!r})"

    def fresh(self) -> str | None:
        """The cached token while it is fresh, else None."""
        current = self._current
        return current[0] if current is not None and self._clock() < current[1] else None

    def token(self) -> str:
        """A token that is fresh: the cached one, or a new one from the provider (blocking)."""
        with self._lock:
            current, now = self._current, self._clock()
            valid = current is not None and now < current[2]
            if current is not None and (now < current[1] or (valid and now < self._retry_at)):
                return current[0]
            try:
                return self._fetch(REQUEST_TIMEOUT_WITH_A_VALID_TOKEN_S if valid else self._timeout_s)
            except TokenError:
                if current is not None and self._clock() < current[2]:
                    self._retry_at = self._clock() + RETRY_AFTER_FAILURE_S
                    return current[0]  # the provider is away: the token in hand is still valid, use it
                raise

    @property
    def subject(self) -> str | None:
        """The current token's subject (``sub``), which the broker takes as the principal; None
        before the first token or when the token is not a JWT."""
        current = self._current
        claims = jwt_claims(current[0]) if current is not None else None
        sub = claims.get("sub") if claims else None
        return sub if isinstance(sub, str) else None

    def _fetch(self, timeout_s: float) -> str:
        form = {"grant_type": "client_credentials", **({"scope": self.scope} if self.scope else {})}
        # RFC 6749 §2.3.1: id and secret are form-encoded, then joined for HTTP basic authentication
        basic = f"{urllib.parse.quote(self.client_id, safe='')}:{urllib.parse.quote(self._secret, safe='')}"
        request = urllib.request.Request(self.url, data=urllib.parse.urlencode(form).encode(), method="POST", headers={
            "Authorization": "Basic " + base64.b64encode(basic.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        started = self._clock()
        where = f"the OAuth token endpoint {self.url} (client {self.client_id})"
        try:
            with _OPENER.open(request, timeout=min(timeout_s, self._timeout_s)) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                raise TokenError(f"{where} answered with a redirect (HTTP {exc.code} to "
                                 f"{exc.headers.get('Location')}): give the endpoint's own URL") from None
            raise TokenError(f"{where} refused: HTTP {exc.code} {_provider_error(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise TokenError(f"cannot reach {where}: {reason}") from None
        except ValueError:
            raise TokenError(f"{where} answered with something other than JSON") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenError(f"{where} answered without an access_token")
        lifetime = _lifetime_s(body, token, started)
        self._current = (token, started + REFRESH_AT * lifetime, started + lifetime)
        self.fetched += 1
        return token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would re-send the client's credentials (the Authorization header) to wherever it
    points: it is an error instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _provider_error(exc: urllib.error.HTTPError) -> str:
    """The provider's own words (RFC 6749 §5.2: error, error_description), else the HTTP reason."""
    try:
        body = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        body = {}
    if isinstance(body, dict) and body.get("error"):
        return ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
    return str(exc.reason)


def _lifetime_s(body: dict[str, Any], token: str, now: float) -> float:
    expires_in = body.get("expires_in")
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    exp = (jwt_claims(token) or {}).get("exp")
    if isinstance(exp, (int, float)) and exp > now:
        return float(exp) - now
    return DEFAULT_LIFETIME_S


def jwt_claims(token: str) -> dict[str, Any] | None:
    """A JWT's claims, read without checking its signature (the broker checks it); None if not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


_SOURCES: dict[tuple[str, str, str | None, str], ClientCredentials] = {}
_SOURCES_LOCK = threading.Lock()


def token_source(settings: Settings) -> ClientCredentials | None:
    """The process's token source for these settings (shared by all its clients); None without OAUTHBEARER."""
    if settings.sasl_mechanism != "OAUTHBEARER":
        return None
    url, client_id = settings.sasl_oauthbearer_token_endpoint_url, settings.sasl_oauthbearer_client_id
    secret = settings.sasl_oauthbearer_client_secret
    assert url and client_id and secret is not None  # Settings refuses OAUTHBEARER without them
    key = (url, client_id, settings.sasl_oauthbearer_scope, secret.get_secret_value())
    with _SOURCES_LOCK:
        if key not in _SOURCES:
            _SOURCES[key] = ClientCredentials(url, client_id, key[3], settings.sasl_oauthbearer_scope)
        return _SOURCES[key]


def kafka_python_provider(source: ClientCredentials, extensions: Mapping[str, str] | None = None) -> Any:
    """For kafka-python's ``sasl_oauth_token_provider`` (called from its IO thread); ``extensions``
    go with every token (SASL extensions, RFC 7628)."""
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class _Tokens(AbstractTokenProvider):
        def token(self) -> str:
            return source.token()

        def extensions(self) -> dict[str, str]:
            return dict(extensions or {})

    return _Tokens()


def aiokafka_provider(source: ClientCredentials, extensions: Mapping[str, str] | None = None) -> Any:
    """For aiokafka's (and faust's) ``sasl_oauth_token_provider``: the event loop never waits on the
    provider; ``extensions`` as for kafka-python."""
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.errors import KafkaConnectionError

    class _Tokens(AbstractTokenProvider):
        async def token(self) -> str:
            token = source.fresh()
            if token is not None:
                return token
            try:
                return await asyncio.to_thread(source.token)
            except TokenError as exc:
                # a connection error to aiokafka: it retries the connection. Any other exception
                # escapes its connect step and ends the fetcher's, sender's or coordinator's task.
                raise KafkaConnectionError(str(exc)) from None

        def extensions(self) -> dict[str, str]:
            return dict(extensions or {})

    return _Tokens()
