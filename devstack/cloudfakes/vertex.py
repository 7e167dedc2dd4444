"""A Vertex AI stand-in for Gemini: the project and location path, an OAuth2 bearer, Google's error JSON.

- ``POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{action}`` (and ``/v1beta1``,
  which google-genai uses), action ``streamGenerateContent`` (``?alt=sse``) or ``generateContent``.
- Auth: ``Authorization: Bearer`` with an access token of `VertexConfig.tokens`; none is 401 UNAUTHENTICATED
  (reason CREDENTIALS_MISSING), another 401 UNAUTHENTICATED (ACCESS_TOKEN_TYPE_UNSUPPORTED); an API key (header or
  ``key=``) is not how this project is reached, and is refused the same way, never read.
- A project other than `VertexConfig.project`, or a location not in `VertexConfig.locations`, is 403
  PERMISSION_DENIED on the resource (IAM_PERMISSION_DENIED), as Google says when the token's account has no access.
- The body and answer are the Gemini API's: the local upstream's Gemini checks and generator answer it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from byokcommon.wire import bearer
from devstack.upstream import Response

_PATH = re.compile(r"/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):(\w+)")
ACTIONS = frozenset({"streamGenerateContent", "generateContent"})
# (model, action, query, token) → the Gemini API's answer (FakeUpstream's, bound by the server).
Generate = Callable[[str, str, str, str], Response]


@dataclass
class VertexConfig:
    """The stand-in's project, locations and accepted tokens (mutable: tests may change it between requests)."""

    project: str = "byok-test-project"
    locations: set[str] = field(default_factory=lambda: {"us-central1", "global"})
    tokens: Container[str] = field(default_factory=set)


def google_error(code: int, status: str, message: str, reason: str = "") -> Response:
    err: dict[str, object] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com", "metadata": {"service": "aiplatform.googleapis.com"}}]
    body = json.dumps({"error": err}).encode()
    return Response(code, [("content-type", "application/json; charset=UTF-8"), ("content-length", str(len(body)))],
                    body)


def unauthenticated(missing: bool) -> Response:
    if missing:
        return google_error(401, "UNAUTHENTICATED", "Request is missing required authentication credential. Expected "
                            "OAuth 2 access token, login cookie or other valid authentication credential.",
                            "CREDENTIALS_MISSING")
    return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                        "access token, login cookie or other valid authentication credential.",
                        "ACCESS_TOKEN_TYPE_UNSUPPORTED")


class VertexAI:
    """Answers Vertex AI's Gemini routes (see the module docstring)."""

    def __init__(self, config: VertexConfig | None = None) -> None:
        self.config = config or VertexConfig()

    def answer(self, method: str, target: str, headers: dict[str, str], generate: Generate) -> Response:
        parts = urlsplit(target)
        match = _PATH.fullmatch(unquote(parts.path))
        if method != "POST" or match is None or match.group(5) not in ACTIONS:
            return google_error(404, "NOT_FOUND", f"The requested URL {parts.path[:120]} was not found.")
        _, project, location, model, action = match.groups()
        query = dict(parse_qsl(parts.query))
        token = bearer(headers)
        if "key" in query or "x-goog-api-key" in headers or token not in self.config.tokens:
            return unauthenticated(missing=not token)
        if project != self.config.project or location not in self.config.locations:
            return google_error(403, "PERMISSION_DENIED", f"Permission 'aiplatform.endpoints.predict' denied on "
                                f"resource '//aiplatform.googleapis.com/projects/{project}/locations/{location}/"
                                f"publishers/google/models/{model}' (or it may not exist).", "IAM_PERMISSION_DENIED")
        return generate(model, action, parts.query, token)
