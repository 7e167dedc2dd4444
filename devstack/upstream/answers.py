"""The stand-in's answers in each provider's own shapes: JSON and SSE responses, errors (401, 429, 5xx, 400, Gemini's
ErrorInfo, Mistral's 422 extra_forbidden) and model lists."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from byokcommon.wire import KEY_HEADERS

_MODELS = {
    "openai": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
    "anthropic": ["claude-sonnet-4-5", "claude-3-5-haiku-latest"],
    "gemini": ["gemini-2.0-flash", "gemini-2.5-pro"],
}


def _redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k in KEY_HEADERS else v) for k, v in headers.items()}


@dataclass
class _Opts:
    """Per-request overrides from the model name's `?k=v` suffix (see the package docstring)."""

    frames: int
    delay: float
    chunk: int | None
    tool: bool
    thoughts: int = 3  # thinking frames, when the request asks for thinking
    cached: int = 0  # input tokens reported as read from the prompt cache
    cache_write: int = 0  # input tokens reported as written to the prompt cache (Anthropic)
    cite: bool = False  # the answer carries citations in the family's form (``cite=1``, see `citations`)
    fallback: str = ""  # Anthropic: a server-side fallback to this model mid-answer (``fallback=<model>``)
    modelversion: str = ""  # Gemini: the modelVersion the second half of the stream reports (``modelversion=<v>``)


@dataclass
class Response:
    """One answer of the stand-in: status, headers, and a body or a stream of frames."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    frames: AsyncIterator[bytes] | None = None
    opts: _Opts | None = None
    reset: bool = False


def _sse_headers() -> list[tuple[str, str]]:
    return [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache")]


def _json(status: int, obj: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(obj).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    return Response(status, headers + (extra or []), body)


def _gemini_error(code: int, status: str, message: str, reason: str = "") -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                           "domain": "googleapis.com",
                           "metadata": {"service": "generativelanguage.googleapis.com"}},
                          {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                           "message": message}]
    return {"error": err}


def _error(family: str, status: int, otype: str, atype: str, gstatus: str, message: str,
           extra: list[tuple[str, str]] | None = None, greason: str = "") -> Response:
    if family == "openai":
        obj: Any = {"error": {"message": message, "type": otype, "param": None, "code": None}}
        if status == 401:
            obj["error"]["code"] = "invalid_api_key"
    elif family == "anthropic":
        obj = {"type": "error", "error": {"type": atype, "message": message},
               "request_id": "req_" + uuid.uuid4().hex[:24]}
    else:
        obj = _gemini_error(status, gstatus, message, greason)
    return _json(status, obj, extra)


def _unauthorized(family: str, *, missing: bool = False) -> Response:
    if family == "gemini":  # Google's answers: 403 without a key, 400 API_KEY_INVALID with a wrong one
        if missing:
            return _json(403, _gemini_error(
                403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call this API."))
        return _json(400, _gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                                        "API_KEY_INVALID"))
    return _error(family, 401, "invalid_request_error", "authentication_error", "UNAUTHENTICATED",
                  "Incorrect API key provided.")


def _mistral_invalid(kind: str, loc: list[Any], msg: str, value: Any) -> Response:
    """Mistral's 422: its request models are pydantic models, so a bad body gets pydantic's error list."""
    return _json(422, {"object": "error", "message": {"detail": [
        {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}]},
        "type": "invalid_request_error", "param": None, "code": None})


def _mistral_extra_forbidden(name: str, value: Any) -> Response:
    """Mistral's answer to a body field it does not define (its request models forbid extra fields)."""
    return _mistral_invalid("extra_forbidden", [name], "Extra inputs are not permitted", value)


def _openai_invalid(message: str, param: str | None, code: str | None = "invalid_value") -> Response:
    """OpenAI's 400 for a request it parsed but refuses: the message names the field, ``param`` is its path."""
    return _json(400, {"error": {"message": message, "type": "invalid_request_error", "param": param,
                                 "code": code}})


def _gemini_invalid(message: str, field: str = "") -> Response:
    """Google's 400 INVALID_ARGUMENT; with ``field``, the ``google.rpc.BadRequest`` detail its JSON parser adds."""
    obj = _gemini_error(400, "INVALID_ARGUMENT", message)
    if field:
        obj["error"]["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                    "fieldViolations": [{"field": field, "description": message}]}]
    return _json(400, obj)


def _rate_limited(family: str) -> Response:
    return _error(family, 429, "requests", "rate_limit_error", "RESOURCE_EXHAUSTED",
                  "Rate limit reached; retry later.", [("retry-after", "7")])


def _server_error(family: str) -> Response:
    return _error(family, 500, "server_error", "api_error", "INTERNAL", "The server had an error.")


def _bad_request(family: str, message: str) -> Response:
    return _error(family, 400, "invalid_request_error", "invalid_request_error", "INVALID_ARGUMENT", message)


def _models(family: str) -> dict[str, Any]:
    names = _MODELS[family]
    if family == "openai":
        return {"object": "list",
                "data": [{"id": n, "object": "model", "created": 1700000000, "owned_by": "system"} for n in names]}
    if family == "anthropic":
        return {"data": [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"}
                         for n in names],
                "has_more": False, "first_id": names[0], "last_id": names[-1]}
    return {"models": [{"name": f"models/{n}", "displayName": n, "supportedGenerationMethods":
                        ["generateContent", "streamGenerateContent"]} for n in names]
            + [{"name": "models/gemini-embedding-001", "displayName": "Gemini Embedding 001",
                "supportedGenerationMethods": ["embedContent", "batchEmbedContents"]}]}
