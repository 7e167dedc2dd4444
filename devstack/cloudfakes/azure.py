"""An Azure OpenAI stand-in: a resource's deployments, its two URL forms, its two credentials, its error JSON.

- ``POST /openai/deployments/{deployment}/{operation}?api-version=V`` (V one of `AzureConfig.api_versions`;
  without it Azure answers 404 "Resource not found", with an unknown one 400 "API version not supported"), and
  Azure's ``/openai/v1/{operation}``, where the body's ``model`` names the deployment; the operations are
  ``chat/completions`` and ``embeddings``.
- Auth: ``api-key`` (one of `AzureConfig.api_keys`) or ``Authorization: Bearer`` with an Entra ID token (one of
  `AzureConfig.tokens`); refused with Azure's 401 ``{"error": {"code": "401", "message": …}}``.
- A deployment not in `AzureConfig.deployments` is 404 ``DeploymentNotFound``; a known one is answered by the local
  upstream's OpenAI generator for the model it serves (so ``"tools": "gpt-4o?tool=1"`` steers as there); embeddings
  by the local upstream's OpenAI embeddings (its checks: at most 2048 inputs, known fields; its deterministic
  vectors, float or base64), naming the model the deployment serves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from byokcommon.wire import bearer
from devstack.upstream import Response
from devstack.upstream.embeddings import openai_embeddings

# (model, body, stream, key) → the OpenAI-shaped answer (FakeUpstream's generator, bound by the server).
Generate = Callable[[str, dict[str, Any], bool, str], Response]


@dataclass
class AzureConfig:
    """What the stand-in's resource has and accepts (mutable: tests may change it between requests)."""

    api_keys: set[str] = field(default_factory=set)
    tokens: Container[str] = field(default_factory=set)  # Entra ID access tokens (scope cognitiveservices)
    deployments: dict[str, str] = field(default_factory=lambda: {  # name → model
        "gpt-4o-prod": "gpt-4o", "embed-prod": "text-embedding-3-small"})
    api_versions: frozenset[str] = frozenset({"2024-06-01", "2024-10-21", "2025-04-01-preview"})


def azure_error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Response(status, [("content-type", "application/json"), ("content-length", str(len(body)))], body)


UNAUTHORIZED_KEY = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
                    "valid key for an active subscription and use a correct regional API endpoint for your resource.")
UNAUTHORIZED_TOKEN = ("Unauthorized. Access token is missing, invalid, audience is incorrect "
                      "(https://cognitiveservices.azure.com), or have expired.")


class AzureOpenAI:
    """Answers a resource's routes (see the module docstring)."""

    def __init__(self, config: AzureConfig | None = None) -> None:
        self.config = config or AzureConfig()

    def credential(self, headers: dict[str, str]) -> tuple[str, Response | None]:
        """(the key or token presented, Azure's refusal or None)."""
        key = headers.get("api-key", "")
        if key:
            return key, None if key in self.config.api_keys else azure_error(401, "401", UNAUTHORIZED_KEY)
        token = bearer(headers)
        return token, None if token and token in self.config.tokens else azure_error(401, "401", UNAUTHORIZED_TOKEN)

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes, generate: Generate) -> Response:
        parts = urlsplit(target)
        path, query = unquote(parts.path), dict(parse_qsl(parts.query))
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return azure_error(400, "BadRequest", "The request body is not valid JSON.")
        route = _route(method, path, query, payload, self.config.api_versions)
        if isinstance(route, Response):
            return route
        deployment, operation = route
        key, refused = self.credential(headers)
        if refused is not None:
            return refused
        model = self.config.deployments.get(deployment) if isinstance(deployment, str) else None
        if model is None:
            return azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If "
                               "you created the deployment within the last 5 minutes, please wait a moment and try "
                               "again.")
        if operation == "embeddings":
            return openai_embeddings(model, payload)
        return generate(model, payload, bool(payload.get("stream")), key)


_OPERATIONS = ("/chat/completions", "/embeddings")


def _route(method: str, path: str, query: dict[str, str], payload: dict[str, Any], versions: Container[str]
           ) -> tuple[Any, str] | Response:
    """(the deployment named, the operation) of a request, or Azure's answer to a path or api-version it lacks."""
    operation = next((op for op in _OPERATIONS if path.endswith(op)), "")
    if method != "POST" or not operation:
        return azure_error(404, "404", "Resource not found")
    if path == "/openai/v1" + operation:
        if "api-version" in query and query["api-version"] not in ("preview", "latest"):
            return azure_error(400, "BadRequest", "API version not supported")
        return payload.get("model"), operation[1:]
    if not path.startswith("/openai/deployments/"):
        return azure_error(404, "404", "Resource not found")
    version = query.get("api-version")
    if version is None:
        return azure_error(404, "404", "Resource not found")
    if version not in versions:
        return azure_error(400, "BadRequest", "API version not supported")
    return path[len("/openai/deployments/"):-len(operation)], operation[1:]
