"""The proxy's own refusals on the HTTP front, in the error shape of the API the caller speaks.

An SDK raises its usual exception only for an answer it recognises, so a refusal under `/anthropic` is an
Anthropic error object, under `/gemini` a Google one, and anywhere else (OpenAI and the OpenAI-compatible family,
the unified `/v1` endpoints) OpenAI's. The status follows the ProxyError (`status_of`); messages are the
ProxyError's, which never hold a key.
"""

from __future__ import annotations

import json

from proxyservice import errors

# Which shape a provider's path speaks; every provider not named here speaks OpenAI's.
_SHAPES = {"anthropic": "anthropic", "gemini": "gemini", "vertex_ai": "gemini"}

_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    503: "overloaded_error", 504: "api_error", 500: "api_error"}
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_exceeded",
                 503: "server_error", 504: "timeout", 500: "server_error"}
_GOOGLE_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                    413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE",
                    504: "DEADLINE_EXCEEDED", 500: "INTERNAL"}


def shape_for(provider: str) -> str:
    return _SHAPES.get(provider, "openai")


def status_of(exc: errors.ProxyError) -> int:
    """The HTTP status of a proxy refusal (the gRPC code's usual HTTP mapping; a refused key is 401)."""
    if isinstance(exc, errors.KeyRejected):
        return 401
    if isinstance(exc, errors.InvalidArgument | errors.FailedPrecondition):
        return 400
    if isinstance(exc, errors.PermissionDenied):
        return 403
    if isinstance(exc, errors.NotFound):
        return 404
    if isinstance(exc, errors.RateLimited):
        return 429
    if isinstance(exc, errors.DeadlineExceeded):
        return 504
    if isinstance(exc, errors.Unavailable):
        return 503
    return 500


def error_body(shape: str, status: int, message: str, param: str | None = None) -> bytes:
    """The JSON body of an error answer with `status` in `shape` ("openai", "anthropic" or "gemini")."""
    if shape == "anthropic":
        body: dict[str, object] = {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"),
                                                             "message": message}}
    elif shape == "gemini":
        body = {"error": {"code": status, "message": message, "status": _GOOGLE_STATUSES.get(status, "UNKNOWN")}}
    else:
        body = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"), "param": param,
                          "code": None}}
    return json.dumps(body, ensure_ascii=False).encode()
