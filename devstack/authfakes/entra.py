"""A local Microsoft Entra ID (v2.0 endpoints) for the client-credentials flow, answering what MSAL asks:

- GET /common/discovery/instance?api-version=…&authorization_endpoint=… : instance discovery (the document MSAL
  fetches for an authority host it does not know), naming the tenant's discovery document;
- GET /{tenant}/v2.0/.well-known/openid-configuration : the OpenID configuration (token_endpoint, issuer, …), or
  400 AADSTS90002 invalid_tenant for an unknown tenant;
- POST /{tenant}/oauth2/v2.0/token with grant_type=client_credentials, client_id, client_secret and scope
  (`<resource>/.default`): {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token":
  "eyJ…"} (a JWT-shaped token), or Entra ID's error JSON: 401 invalid_client AADSTS7000215 (a wrong secret), 400
  unauthorized_client AADSTS700016 (no such application in the tenant), 400 invalid_scope AADSTS1002012, each with
  error_codes, timestamp, trace_id, correlation_id and error_uri as Entra ID writes them.

Tokens issued are kept (`tokens`) so an Azure OpenAI stand-in can accept them; `token_requests` counts the token
calls (MSAL's cache answers the others).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from byokcommon.tls import TlsFiles
from devstack.authfakes.http import FakeHttpServer, Reply, Request
from devstack.authfakes.shapes import EntraApp


@dataclass(frozen=True)
class IssuedToken:
    tenant_id: str
    client_id: str
    scope: str
    expires_at: dt.datetime


@dataclass
class EntraFake:
    """Serve with `server(tls)`; `authority_host` is then its base URL. Thread-safe."""

    apps: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (tenant, client id) -> valid secrets
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    token_requests: int = 0
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def server(self, tls: TlsFiles | None = None) -> FakeHttpServer:
        return FakeHttpServer(self.answer, tls=tls, on_start=self._listening)

    def _listening(self, base_url: str) -> None:
        self.base_url = base_url

    def add_app(self, app: EntraApp) -> EntraApp:
        with self._lock:
            self.apps.setdefault((app.tenant_id, app.client_id), set()).add(app.client_secret)
        return app

    def remove_secret(self, app: EntraApp) -> None:
        """As deleting the client secret in the portal."""
        with self._lock:
            self.apps.get((app.tenant_id, app.client_id), set()).discard(app.client_secret)

    def _tenants(self) -> set[str]:
        with self._lock:
            return {tenant for tenant, _ in self.apps}

    def answer(self, request: Request) -> Reply:
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts == ["common", "discovery", "instance"]:
            return self._instance_discovery(request)
        if request.method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._openid_configuration(parts[0])
        if request.method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(parts[0], request.form)
        return Reply(404, b'{"error": "not_found"}')

    def _instance_discovery(self, request: Request) -> Reply:
        endpoint = request.query.get("authorization_endpoint", "")
        tenant = urlsplit(endpoint).path.strip("/").split("/")[0] if endpoint else "common"
        host = urlsplit(self.base_url).netloc
        discovery = f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration"
        return _json(200, {"tenant_discovery_endpoint": discovery, "api-version": "1.1",
                           "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]})

    def _openid_configuration(self, tenant: str) -> Reply:
        if tenant not in self._tenants():
            return _aadsts(400, "invalid_tenant", 90002, f"Tenant '{tenant[:64]}' not found. Check to make sure you "
                                                         "have the correct tenant ID and are signing into the correct "
                                                         "cloud.")
        base = f"{self.base_url}/{tenant}"
        return _json(200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"], "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0", "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout", "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com", "msgraph_host": "graph.microsoft.com",
        })

    def _token(self, tenant: str, form: dict[str, str]) -> Reply:
        with self._lock:
            self.token_requests += 1
            secrets_known = self.apps.get((tenant, form.get("client_id", "")))
        client_id = form.get("client_id", "")[:64]
        if form.get("grant_type") != "client_credentials":
            return _aadsts(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if tenant not in self._tenants():
            return _aadsts(400, "invalid_request", 90002, f"Tenant '{tenant[:64]}' not found.")
        if secrets_known is None:
            return _aadsts(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the directory "
                           f"'{tenant}'. This can happen if the application has not been installed by the "
                           "administrator of the tenant or consented to by any user in the tenant. You may have "
                           "sent your authentication request to the wrong tenant.")
        if form.get("client_secret", "") not in secrets_known:
            return _aadsts(401, "invalid_client", 7000215,
                           "Invalid client secret provided. Ensure the secret being sent in the request is the "
                           f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.")
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or " " in scope.strip():
            return _aadsts(400, "invalid_scope", 1002012, f"The provided value for scope {scope[:80]} is not valid. "
                                                          "Client credential flows must have a scope value with "
                                                          "/.default suffixed to the resource identifier "
                                                          "(application ID URI).")
        token = _jwt_shaped(tenant, client_id, scope)
        with self._lock:
            self.tokens[token] = IssuedToken(tenant, client_id, scope,
                                             dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3599))
        return _json(200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})


def _jwt_shaped(tenant: str, client_id: str, scope: str) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"aud": scope.removesuffix("/.default"), "iss": f"https://sts.windows.net/{tenant}/", "iat": now,
              "nbf": now, "exp": now + 3599, "appid": client_id, "tid": tenant, "oid": str(uuid.uuid4()),
              "uti": secrets.token_urlsafe(16), "ver": "1.0"}
    return f"{part({'typ': 'JWT', 'alg': 'RS256', 'kid': secrets.token_hex(8)})}.{part(claims)}." \
           f"{base64.urlsafe_b64encode(secrets.token_bytes(256)).decode().rstrip('=')}"


def _json(status: int, body: object) -> Reply:
    return Reply(status, json.dumps(body).encode())


def _aadsts(status: int, error: str, code: int, text: str) -> Reply:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return _json(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                             f"Timestamp: {now}",
        "error_codes": [code], "timestamp": now, "trace_id": trace, "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    })

