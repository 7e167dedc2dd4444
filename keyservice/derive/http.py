"""The HTTP client of the Google and Entra ID token calls (urllib3, under google-auth's and MSAL's own transport
interfaces): every URL is checked before a byte is sent, and calls are bounded in time.

- Destinations: each call names which hosts are the cloud's own (`official`); a URL elsewhere is refused unless
  ops allow its host (BYOK_API_BASE_ALLOWLIST) or, in development, it is loopback (byokcommon/egress.py). This
  covers URLs a library learns on the way: MSAL posts the client secret to the token_endpoint an OpenID discovery
  document names, google-auth its signed grant to the key file's token_uri.
- Time: one deadline per derivation (all its calls together, BYOK_DERIVE_TIMEOUT_SECONDS); each call gets what
  is left of it as its connect and read timeouts, and none starts after it.
- No retries or redirects (a redirect could carry a secret elsewhere), no proxy or CA from the environment
  (urllib3 reads neither), the system's trust store unless BYOK_CLOUD_AUTH_CA_FILE names one.

This module imports urllib3; keyservice/derive/google.py and azure.py adapt it to their libraries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
import urllib3.exceptions

from byokcommon.egress import EgressPolicy
from keyservice.errors import FailedPrecondition, InvalidArgument
from keyservice.providers import check_destination


class DeadlinePassed(Exception):
    """The derivation's deadline passed before (or while) a call could be made."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class CheckedHttp:
    """One pool for all derivations (thread-safe); `calls(official, what)` makes a per-derivation caller."""

    def __init__(self, policy: EgressPolicy, *, ca_file: str = "", max_connections: int = 8) -> None:
        self.policy = policy
        self._pool = urllib3.PoolManager(num_pools=32, maxsize=max_connections, retries=False,
                                         cert_reqs="CERT_REQUIRED", ca_certs=ca_file or None)

    def calls(self, official: Callable[[str], bool], what: str, timeout: float) -> Calls:
        return Calls(self, official, what, time.monotonic() + timeout)

    def close(self) -> None:
        self._pool.clear()

    def send(self, calls: Calls, method: str, url: str, body: bytes | None, headers: Mapping[str, str] | None
             ) -> Answer:
        try:
            check_destination(url, self.policy, field="url", official=calls.official, expected=calls.what)
        except InvalidArgument as exc:
            raise FailedPrecondition(f"{calls.what}: {exc.message.removeprefix('url: ')}") from None
        left = calls.deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed
        response = self._pool.request(method, url, body=body, headers=dict(headers or {}), redirect=False,
                                      timeout=urllib3.Timeout(connect=left, read=left), preload_content=True)
        return Answer(response.status, dict(response.headers), response.data)


class Calls:
    """The calls of one derivation: one deadline and one set of allowed hosts. Remembers the last answer, so a
    library's exception (MSAL raises ValueError on a refused tenant discovery) can be told from an outage."""

    def __init__(self, http: CheckedHttp, official: Callable[[str], bool], what: str, deadline: float) -> None:
        self.http = http
        self.official = official
        self.what = what
        self.deadline = deadline
        self.last: Answer | None = None
        self._lock = threading.Lock()

    def send(self, method: str, url: str, body: bytes | None = None,
             headers: Mapping[str, str] | None = None) -> Answer:
        answer = self.http.send(self, method, url, body, headers)
        with self._lock:
            self.last = answer
        return answer


# urllib3's failures to get an answer at all (the cloud is unreachable, slow or speaks no HTTP): UNAVAILABLE.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, DeadlinePassed, OSError)


def json_error(answer: Answer | None) -> dict[str, Any]:
    """The error JSON of an answer (OAuth2's {"error": …}), {} if it has none."""
    if answer is None or answer.status < 400:
        return {}
    try:
        parsed = json.loads(answer.body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
