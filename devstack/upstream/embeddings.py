"""Embeddings: OpenAI's ``POST /v1/embeddings`` and Gemini's ``:embedContent`` / ``:batchEmbedContents``.

Vectors are deterministic (`embedding`: a unit vector from SHAKE-256 of the text, each value exactly a float32, so
``encoding_format: "base64"`` — little-endian float32 bytes, what the openai SDK asks for and decodes by default —
and ``"float"`` carry the same numbers). ``dimensions`` / ``outputDimensionality`` set the length (default 8).

The providers' own request checks that a client's batching depends on are made as they make them: OpenAI takes at
most 2048 inputs a request (its reference: "any array must be 2048 dimensions or less"; past it the same
``'$.input' is invalid`` answer) and refuses a body field it does not know ("Unrecognized request argument
supplied"); Mistral's (on its route) at most 512 inputs (past them its 400 code 3210, "Too many inputs in request,
split into more batches.") with ``output_dimension`` for the length; Gemini's batchEmbedContents takes at most 100
requests ("at most 100 requests can be in one batch") and a ``taskType`` only among its TaskType names."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from typing import Any

from devstack.upstream.answers import Response, _bad_request, _json
from devstack.upstream.wire import proto_field

DIMS = 8
OPENAI_MAX_INPUTS = 2048
MISTRAL_MAX_INPUTS = 512
GEMINI_MAX_REQUESTS = 100
# The body fields of OpenAI's create-embeddings request.
OPENAI_FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
# Gemini's TaskType enum.
GEMINI_TASK_TYPES = frozenset({"TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY",
                               "CLASSIFICATION", "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION",
                               "CODE_RETRIEVAL_QUERY"})
_OPENAI_INVALID_INPUT = ("'$.input' is invalid. Please check the API reference: "
                         "https://platform.openai.com/docs/api-reference.")


def embedding(text: str, dims: int = DIMS) -> list[float]:
    """The vector the stand-in answers for ``text``."""
    raw = [(b - 127.5) / 127.5 for b in hashlib.shake_256(text.encode()).digest(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(x / norm for x in raw))))


def _dims(value: Any, family: str) -> int | Response:
    if value is None:
        return DIMS
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3072:
        return _bad_request(family, f"invalid output dimensionality {value!r}")
    return value


def openai_embeddings(model: str, payload: dict[str, Any]) -> Response:
    """OpenAI's answer: ``input`` a string, a list of strings, a token array or a list of token arrays."""
    unknown = sorted(set(payload) - OPENAI_FIELDS)
    if unknown:
        return _bad_request("openai", f"Unrecognized request argument supplied: {unknown[0]}")
    value = payload.get("input")
    items: Any = [value] if isinstance(value, str) or (
        isinstance(value, list) and value and all(isinstance(t, int) for t in value)) else value
    if not isinstance(items, list) or not items or len(items) > OPENAI_MAX_INPUTS or any(
            not (isinstance(x, str) and x) and not (isinstance(x, list) and x) for x in items):
        return _bad_request("openai", _OPENAI_INVALID_INPUT)
    fmt = payload.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return _bad_request("openai", f"Invalid value: '{fmt}'. Supported values are: 'float' and 'base64'.")
    dims = _dims(payload.get("dimensions"), "openai")
    if isinstance(dims, Response):
        return dims
    data, tokens = [], 0
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else json.dumps(item)
        tokens += len(text) // 4 + 1 if isinstance(item, str) else len(item)
        vec = embedding(text, dims)
        out: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if fmt == "base64" else vec
        data.append({"object": "embedding", "index": i, "embedding": out})
    return _json(200, {"object": "list", "data": data, "model": model,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _gemini_one(request: Any) -> dict[str, Any] | Response:
    content = request.get("content") if isinstance(request, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        return _bad_request("gemini", "* EmbedContentRequest.content: contents must not be empty")
    dims = _dims(proto_field(request, "outputDimensionality"), "gemini")
    if isinstance(dims, Response):
        return dims
    task = proto_field(request, "taskType")
    if task is not None and task not in GEMINI_TASK_TYPES:
        return _bad_request("gemini", f"Invalid value at 'task_type' "
                            f"(type.googleapis.com/google.ai.generativelanguage.v1beta.TaskType), {json.dumps(task)}")
    text = "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict))
    return {"values": embedding(text, dims)}


def gemini_embeddings(action: str, model: str, payload: dict[str, Any]) -> Response:
    """Gemini's answer to ``embedContent`` (``{"embedding": …}``) or ``batchEmbedContents`` (``{"embeddings": …}``)."""
    if action == "embedContent":
        one = _gemini_one(payload)
        return one if isinstance(one, Response) else _json(200, {"embedding": one})
    requests = payload.get("requests")
    if not isinstance(requests, list) or not requests:
        return _bad_request("gemini", "* BatchEmbedContentsRequest.requests: requests must not be empty")
    if len(requests) > GEMINI_MAX_REQUESTS:
        return _bad_request("gemini", f"* BatchEmbedContentsRequest.requests: at most {GEMINI_MAX_REQUESTS} requests "
                            "can be in one batch")
    out = []
    for i, req in enumerate(requests):
        named = req.get("model") if isinstance(req, dict) else None
        if named not in (None, f"models/{model}"):
            return _bad_request("gemini", f"* BatchEmbedContentsRequest.requests[{i}].model: the model "
                                f"{named} differs from models/{model} in the URL")
        one = _gemini_one(req)
        if isinstance(one, Response):
            return one
        out.append(one)
    return _json(200, {"embeddings": out})


def mistral_embeddings(model: str, payload: dict[str, Any]) -> Response:
    """Mistral's answer (the same body as OpenAI's): its batch limit, its length field (``output_dimension``); the
    route has already refused fields Mistral does not define."""
    items = payload.get("input")
    if isinstance(items, list) and len(items) > MISTRAL_MAX_INPUTS:
        return _json(400, {"object": "error", "message": "Too many inputs in request, split into more batches.",
                           "type": "invalid_request_error", "param": None, "code": "3210"})
    dtype = payload.get("output_dtype", "float")
    if dtype != "float":
        return _bad_request("openai", f"output_dtype {dtype!r} is not served by this stand-in")
    same = {k: v for k, v in payload.items() if k in ("model", "input", "encoding_format")}
    if "output_dimension" in payload:
        same["dimensions"] = payload["output_dimension"]
    return openai_embeddings(model, same)
