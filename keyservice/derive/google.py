"""Google: OAuth2 access tokens from a stored service-account key, with google-auth (service_account.Credentials
signs the JWT-bearer grant with the key and posts it to the key file's token_uri; the key never leaves).

The scope is cloud-platform (what Vertex AI needs). The token_uri is checked again before each grant (the egress
policy may have changed since the key was stored), and the grant goes through keyservice/derive/http.py, bounded
by the derivation's deadline (google-auth retries a 5xx token answer itself, within it).

Errors: the token endpoint refusing the key (invalid_grant: a deleted key, an unknown account, a bad signature;
invalid_client, unauthorized_client) is CredentialRejected; an unreachable or failing endpoint Unavailable. Neither
google-auth's exception text (it quotes the endpoint's answer) nor the answer is kept.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport
from google.oauth2 import service_account

from keyservice import fieldchecks
from keyservice.cloud_fields import DERIVE_GOOGLE
from keyservice.derive.cache import Derived
from keyservice.derive.http import TRANSPORT_ERRORS, Calls, CheckedHttp
from keyservice.errors import CredentialRejected, FailedPrecondition, InvalidArgument, Unavailable

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Google's OAuth2 errors that mean the key itself is refused (RFC 6749 5.2 and Google's own usage).
REJECTIONS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


class GoogleDeriver:
    def __init__(self, http: CheckedHttp, timeout: float) -> None:
        self._http = http
        self._timeout = timeout

    def derive(self, secret: Mapping[str, str]) -> Derived:
        info = json.loads(secret["service_account_json"])
        try:
            fieldchecks.check_token_uri(info["token_uri"], self._http.policy, "service_account_json")
        except InvalidArgument as exc:
            raise FailedPrecondition(f"{exc.message}; rotate the credential with a key file of Google's") from None
        try:
            credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        except (ValueError, KeyError):
            raise FailedPrecondition("the stored service-account key does not load") from None
        calls = self._http.calls(lambda host: host in fieldchecks.GOOGLE_TOKEN_HOSTS, "Google's token endpoint",
                                 self._timeout)
        try:
            credentials.refresh(_Request(calls))
        except google.auth.exceptions.RefreshError as exc:
            raise _refusal(exc) from None
        except google.auth.exceptions.TransportError:
            raise Unavailable("Google's token endpoint is unreachable or did not answer in time") from None
        expiry = credentials.expiry  # naive UTC, as google-auth keeps it
        if not credentials.token or expiry is None:
            raise Unavailable("Google's token endpoint answered without a token")
        return Derived(DERIVE_GOOGLE, expires_at=expiry.replace(tzinfo=dt.UTC), token=credentials.token,
                       project=info["project_id"])


class _Request(google.auth.transport.Request):
    """google-auth's transport interface over the checked, deadline-bound calls."""

    def __init__(self, calls: Calls) -> None:
        self._calls = calls

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: Any = None, **kwargs: Any) -> google.auth.transport.Response:
        try:
            answer = self._calls.send(method, url, body, headers)
        except TRANSPORT_ERRORS as exc:
            raise google.auth.exceptions.TransportError(type(exc).__name__) from None
        return _Response(answer.status, answer.headers, answer.body)


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status, self._headers, self._data = status, headers, data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


def _refusal(exc: google.auth.exceptions.RefreshError) -> Exception:
    data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
    error = str(data.get("error") or "")
    if error in REJECTIONS:
        return CredentialRejected("Google's token endpoint", error)
    if getattr(exc, "retryable", False):
        return Unavailable("Google's token endpoint is unavailable")
    return FailedPrecondition("Google's token endpoint refused the grant")
