"""A local Google OAuth2 token endpoint for service accounts: the JWT-bearer grant (RFC 7523) as
https://oauth2.googleapis.com/token takes it, its signature checked with google-auth against the public key of the
service account that signed it.

POST /token, form grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and assertion=<JWT>: the JWT must be RS256,
its `kid` a key of the account named by `iss`, `aud` Google's token endpoint (or this one's URL), and `iat`/`exp`
at most an hour apart around now (google.auth.jwt.decode verifies all of it). Answers: {"access_token":
"ya29.…", "expires_in": 3599, "token_type": "Bearer"}, or Google's error JSON, 400 {"error": "invalid_grant",
"error_description": "Invalid JWT Signature."} (a wrong or deleted key), "Invalid grant: account not found",
"Invalid JWT: Token must be a short-lived token …", and "unsupported_grant_type". Tokens issued are kept (`tokens`)
so a Vertex AI stand-in can accept them.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.auth import jwt

from byokcommon.tls import TlsFiles
from devstack.authfakes.http import FakeHttpServer, Reply, Request

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/token"
# The audience Google wants in a service account's grant, wherever the key file's token_uri sends it (google-auth
# always writes it).
GOOGLE_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass(frozen=True)
class IssuedToken:
    client_email: str
    scope: str
    expires_at: dt.datetime


@dataclass
class GoogleTokenFake:
    """Serve with `server(tls)`, then `token_uri` is where keys must send their grants. Thread-safe."""

    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # client_email -> {private_key_id: public PEM}
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    grants: int = 0
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_uri(self) -> str:
        return self.base_url + TOKEN_PATH

    def server(self, tls: TlsFiles | None = None) -> FakeHttpServer:
        return FakeHttpServer(self.answer, tls=tls, on_start=self._listening)

    def _listening(self, base_url: str) -> None:
        self.base_url = base_url

    def add_key(self, key_file: str) -> None:
        """Register a service-account key file's key (its public half) under its account."""
        info = json.loads(key_file)
        public = load_pem_private_key(info["private_key"].encode(), None).public_key()
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        with self._lock:
            self.keys.setdefault(info["client_email"], {})[info["private_key_id"]] = pem.decode()

    def delete_key(self, key_file: str) -> None:
        """As deleting the key in IAM: grants it signs are refused from now on."""
        info = json.loads(key_file)
        with self._lock:
            self.keys.get(info["client_email"], {}).pop(info["private_key_id"], None)

    def answer(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != TOKEN_PATH:
            return Reply(404, b'{"error": "not_found"}')
        form = request.form
        if form.get("grant_type") != JWT_BEARER:
            return _error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')[:40]}")
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, verify=False)
            header = jwt.decode_header(assertion)
        except (ValueError, TypeError):
            return _error("invalid_request", "Invalid JWT.")
        email = str(unverified.get("iss", ""))
        with self._lock:
            self.grants += 1
            known = email in self.keys
            account = dict(self.keys.get(email, {}))
        if not known:
            return _error("invalid_grant", "Invalid grant: account not found")
        if header.get("alg") != "RS256" or header.get("kid") not in account:
            return _error("invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(assertion, certs=account, audience=[GOOGLE_AUDIENCE, self.token_uri])
        except ValueError as exc:
            if "signature" in str(exc).lower() or "verif" in str(exc).lower():
                return _error("invalid_grant", "Invalid JWT Signature.")
            return _error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                                           "reasonable timeframe. Check your iat and exp values in the JWT claim.")
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return _error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                                           "reasonable timeframe. Check your iat and exp values in the JWT claim.")
        token = "ya29.c." + secrets.token_urlsafe(150)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3599)
        with self._lock:
            self.tokens[token] = IssuedToken(email, str(claims.get("scope", "")), expires)
        return Reply(200, json.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).encode())


def _error(error: str, description: str) -> Reply:
    return Reply(400, json.dumps({"error": error, "error_description": description}).encode())

