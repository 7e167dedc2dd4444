"""A Vertex AI stand-in for Gemini: the project and location path, an OAuth2 bearer, Google's error JSON.

- ``POST /v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{action}`` (and ``/v1beta1``,
  which google-genai uses), action ``streamGenerateContent`` (``?alt=sse``) or ``generateContent``.
- Auth: ``Authorization: Bearer`` with an access token of `VertexConfig.tokens`; none is 401 UNAUTHENTICATED
  (reason CREDENTIALS_MISSING), another 401 UNAUTHENTICATED (ACCESS_TOKEN_TYPE_UNSUPPORTED); an API key (header or
  ``key=``) is not how this project is reached, and is refused the same way, never read.
- A project other than `VertexConfig.project`, or a location not in `VertexConfig.locations`, is 403
  PERMISSION_DENIED on the resource (IAM_PERMISSION_DENIED), as Google says when the token's account has no access.
- The body and answer are the Gemini API's: the local upstream's Gemini checks and generator answer it.
- ``:predict`` of the text embeddings models (`EMBEDDING_MODELS`): ``{"instances": [{"content", "task_type"?,
  "title"?}], "parameters": {"outputDimensionality"?, "autoTruncate"?}}``, at most 250 instances (1 for
  gemini-embedding-001, which "supports one instance per request"), task types Google's TaskType names; unknown
  fields are Google's 400 "Unknown name". The answer ``{"predictions": [{"embeddings": {"values", "statistics":
  {"truncated", "token_count"}}}], "metadata": {"billableCharacterCount"}}`` with the local upstream's deterministic
  vectors (`embedding`) of the asked length, else the model's own (768; 3072 for gemini-embedding-001).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from byokcommon.wire import bearer
from devstack.upstream import Response, embedding
from devstack.upstream.embeddings import GEMINI_TASK_TYPES

_PATH = re.compile(r"/(v1|v1beta1)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):(\w+)")
ACTIONS = frozenset({"streamGenerateContent", "generateContent", "predict"})
# The text embeddings models :predict serves → their vectors' full length.
EMBEDDING_MODELS = {"gemini-embedding-001": 3072, "text-embedding-005": 768, "text-embedding-004": 768,
                    "text-multilingual-embedding-002": 768}
MAX_INSTANCES = 250
_INSTANCE_KEYS = frozenset({"content", "task_type", "title"})
_PARAMETER_KEYS = frozenset({"outputDimensionality", "autoTruncate"})
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

    def answer(self, method: str, target: str, headers: dict[str, str], generate: Generate, body: bytes = b""
               ) -> Response:
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
        if action == "predict":
            return predict(f"projects/{project}/locations/{location}/publishers/google/models/{model}", model, body)
        return generate(model, action, parts.query, token)


def _invalid(message: str) -> Response:
    return google_error(400, "INVALID_ARGUMENT", message)


def _unknown(obj: dict[str, Any], allowed: frozenset[str], where: str) -> Response | None:
    extra = sorted(set(obj) - allowed)
    return _invalid(f'Invalid JSON payload received. Unknown name "{extra[0]}" at \'{where}\': Cannot find field.') \
        if extra else None


def _instances(model: str, payload: dict[str, Any]) -> list[dict[str, Any]] | Response:
    """The request's instances, each checked as Vertex checks them, within the model's count."""
    instances = payload.get("instances")
    if not isinstance(instances, list) or not instances:
        return _invalid("instances must be a non-empty list.")
    limit = 1 if model.startswith("gemini-embedding") else MAX_INSTANCES
    if len(instances) > limit:
        return _invalid(f"Unable to submit request because {model} supports at most {limit} instances per request "
                        f"({len(instances)} given).")
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or not isinstance(instance.get("content"), str):
            return _invalid(f"instances[{i}].content is required.")
        bad = _unknown(instance, _INSTANCE_KEYS, f"instances[{i}]")
        if bad is not None:
            return bad
        task = instance.get("task_type")
        if task is not None and (task not in GEMINI_TASK_TYPES or task == "TASK_TYPE_UNSPECIFIED"):
            return _invalid(f"Invalid task_type {json.dumps(task)[:40]} at instances[{i}].")
    return instances


def predict(resource: str, model: str, body: bytes) -> Response:
    """A text embeddings model's :predict answer (see the module docstring)."""
    if model not in EMBEDDING_MODELS:
        return google_error(404, "NOT_FOUND", f"Publisher Model `{resource}` was not found or your project does not "
                            "have access to it.")
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return _invalid("Invalid JSON payload received.")
    parameters = payload.get("parameters", {})
    bad = _unknown(payload, frozenset({"instances", "parameters"}), "") or (
        _unknown(parameters, _PARAMETER_KEYS, "parameters") if isinstance(parameters, dict) else
        _invalid("parameters must be an object."))
    if bad is not None:
        return bad
    dims = parameters.get("outputDimensionality", EMBEDDING_MODELS[model])
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= EMBEDDING_MODELS[model]:
        return _invalid(f"outputDimensionality must be between 1 and {EMBEDDING_MODELS[model]}.")
    instances = _instances(model, payload)
    if isinstance(instances, Response):
        return instances
    predictions = [{"embeddings": {"values": embedding(i["content"], dims), "statistics": {
        "truncated": False, "token_count": len(i["content"]) // 4 + 1}}} for i in instances]
    out = json.dumps({"predictions": predictions,
                      "metadata": {"billableCharacterCount": sum(len(i["content"]) for i in instances)}}).encode()
    return Response(200, [("content-type", "application/json; charset=UTF-8"), ("content-length", str(len(out)))],
                    out)
