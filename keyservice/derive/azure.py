"""Azure: Entra ID access tokens from a stored application secret, with MSAL's client-credentials flow
(ConfidentialClientApplication.acquire_token_for_client, scope https://cognitiveservices.azure.com/.default).

One MSAL application per credential and secret version, kept until the credential is rotated or revoked: MSAL's
own token cache (one per application) answers until shortly before a token expires, and its authority metadata is
fetched once. The authority is BYOK_ENTRA_AUTHORITY_HOST/<tenant_id>; for a host MSAL does not know (Azure
Government's are known; a test stand-in is not), instance discovery is off, since MSAL would ask
login.microsoftonline.com about it. MSAL's HTTP goes through keyservice/derive/http.py: the client secret is
posted only to a token endpoint on the authority's host (or one ops allow), whatever a discovery document names.

Errors: Entra ID refusing the application (invalid_client: AADSTS7000215 wrong secret, AADSTS7000222 expired
secret; unauthorized_client: AADSTS700016 no such application in the tenant; invalid_tenant: AADSTS90002) is
CredentialRejected, with the AADSTS code as the reason; an unreachable or failing Entra ID is Unavailable. MSAL's
exception text and Entra ID's error descriptions are never kept.
"""

from __future__ import annotations

import datetime as dt
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any

import msal
from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

from keyservice.cloud_fields import DERIVE_ENTRA
from keyservice.derive.cache import CacheKey, Derived
from keyservice.derive.http import TRANSPORT_ERRORS, Calls, CheckedHttp, json_error
from keyservice.errors import CredentialRejected, FailedPrecondition, Unavailable

SCOPE = "https://cognitiveservices.azure.com/.default"
# OAuth2 errors with which Entra ID refuses the application itself.
REJECTIONS = frozenset({"invalid_client", "unauthorized_client", "invalid_tenant"})
OUTAGES = frozenset({"temporarily_unavailable", "server_error"})
_MAX_APPS = 10_000


class EntraDeriver:
    """Thread-safe; DerivedCache runs one derivation per credential at a time, so one application is never used by
    two threads at once."""

    def __init__(self, http: CheckedHttp, authority_host: str, timeout: float) -> None:
        self._http = http
        self._authority_host = authority_host.rstrip("/")
        self._host = (urllib.parse.urlsplit(self._authority_host).hostname or "").lower()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._apps: dict[CacheKey, tuple[msal.ConfidentialClientApplication, _HttpClient]] = {}

    def derive(self, key: CacheKey, secret: Mapping[str, str], settings: Mapping[str, str]) -> Derived:
        calls = self._http.calls(lambda host: host == self._host, f"Entra ID ({self._host})", self._timeout)
        try:
            app = self._app(key, secret, settings, calls)
            result = app.acquire_token_for_client(scopes=[SCOPE])
        except TRANSPORT_ERRORS:
            raise Unavailable("Entra ID is unreachable or did not answer in time") from None
        except ValueError:  # MSAL's refused tenant discovery (text quoting the answer, not kept)
            raise _refusal(json_error(calls.last), calls) from None
        if "access_token" not in result:
            raise _refusal(result, calls)
        expires_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(result.get("expires_in") or 0))
        return Derived(DERIVE_ENTRA, expires_at=expires_at, token=str(result["access_token"]))

    def forget(self, credential_id: str) -> None:
        with self._lock:
            for key in [k for k in self._apps if k[0] == credential_id]:
                del self._apps[key]

    def _app(self, key: CacheKey, secret: Mapping[str, str], settings: Mapping[str, str],
             calls: Calls) -> msal.ConfidentialClientApplication:
        with self._lock:
            found = self._apps.get(key)
        if found is not None:
            found[1].calls = calls
            return found[0]
        client = _HttpClient(calls)
        authority = f"{self._authority_host}/{settings['tenant_id']}"
        # MSAL asks login.microsoftonline.com about hosts it does not know (also after a refused token request, to
        # look for aliases), which the egress rules refuse: for such a host, instance discovery is off and MSAL
        # reads the tenant's OpenID configuration from the host itself.
        discovery = None if self._host in WELL_KNOWN_AUTHORITY_HOSTS else False
        app = msal.ConfidentialClientApplication(
            settings["client_id"], client_credential=secret["client_secret"], authority=authority,
            http_client=client, instance_discovery=discovery, token_cache=msal.TokenCache())
        with self._lock:
            if len(self._apps) >= _MAX_APPS:
                self._apps.pop(next(iter(self._apps)))
            self._apps[key] = (app, client)
        return app


class _HttpClient:
    """MSAL's HTTP client interface (msal.oauth2cli.http.HttpClient) over the current derivation's calls."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any) -> _Response:
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else (data or "").encode()
        sent = {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
        return _Response(self.calls.send("POST", _with_query(url, params), body, sent))

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> _Response:
        return _Response(self.calls.send("GET", _with_query(url, params), None, headers))


class _Response:
    """msal.oauth2cli.http.Response: status_code, text, headers, raise_for_status()."""

    def __init__(self, answer: Any) -> None:
        self.status_code = answer.status
        self.headers = answer.headers
        self.text = answer.body.decode("utf-8", "replace")

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise OSError(f"HTTP {self.status_code}")  # a TRANSPORT_ERRORS member: Entra ID is failing


def _with_query(url: str, params: Any) -> str:
    if not params:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params)}"


def _refusal(result: Mapping[str, Any], calls: Calls) -> Exception:
    error = str(result.get("error") or "")
    codes = result.get("error_codes") or []
    reason = f"AADSTS{int(codes[0])}" if codes and str(codes[0]).isdigit() else (error or "error")
    if error in REJECTIONS:
        return CredentialRejected("Entra ID", reason)
    status = calls.last.status if calls.last is not None else 0
    if error in OUTAGES or status >= 500 or status == 429:
        return Unavailable(f"Entra ID is unavailable ({reason})")
    return FailedPrecondition(f"Entra ID refused the token request ({reason})")
