"""Embeddings for the Embed RPC: each wire family's request, the vectors of its answer, and batches split to the
provider's limit. Pure translation, no I/O, like the chat adapters: the servicer sends the calls and hands the
bodies back here.

What maps natively, and what is refused (INVALID_ARGUMENT naming the request's field, before any upstream call):

- **OpenAI-compatible** (OpenAI, Mistral, Together, Fireworks, OpenRouter, any api_base):
  ``POST {api_base}/embeddings`` ``{"model", "input": [text, …], "encoding_format"}``. ``dimensions`` is OpenAI's
  ``dimensions``, which its reference says is "only supported in text-embedding-3 and later models" (refused for
  text-embedding-ada-002), and Mistral's ``output_dimension`` ("when feature available": codestral-embed; refused
  for mistral-embed, whose 1024 dimensions are fixed). ``task_type``: the family has none, refused. The answer's
  ``data[]`` items are placed by their ``index``, never by their position; usage is ``usage.prompt_tokens``.
  ``encoding_format`` is ``"base64"`` (little-endian float32 bytes) where the provider documents it (OpenAI,
  Mistral): measured here on 64 vectors of 1536 dimensions, decoding base64 took 0.07 ms a vector where JSON floats
  took 0.37 ms (9 significant digits, as OpenAI prints them) to 0.54 ms (17), and the body is 2.5 to 4 times
  smaller. Elsewhere ``"float"``, the API's default, which every compatible server speaks. Either shape is read.
- **Gemini**: ``POST {api_base}/models/{m}:batchEmbedContents``, one call even for one input, ``requests[]`` each
  ``{"model": "models/{m}", "content": {"parts": [{"text"}]}, "taskType", "outputDimensionality"}``. The answer's
  ``embeddings[]`` (``{"values": […]}``) are "in the same order as provided in the batch request"; the Gemini API
  reports no usage (Vertex's ``usageMetadata.promptTokenCount`` is read where present), so usage stays unset.
  ``outputDimensionality`` is refused for embedding-001 ("the earlier model (models/embedding-001) cannot specify
  this value").
- **Anthropic** has no embeddings API: refused (``model``).
- **Images** (``inputs[i].image``) are refused for every family: OpenAI's ``input`` is text or tokens, Gemini's
  embedContent counts "only the parts.text fields", Mistral's and the others' take text.

A batch over the provider's limit (`BATCH_LIMITS`, inputs per call) is split into calls of at most that many
inputs, sent at most `MAX_CONCURRENT_CALLS` at a time, and re-joined in input order. An answer that does not fit
its call (a wrong count of vectors, a missing or repeated index, non-numbers, vectors of other lengths) is an
`AdapterError` (the caller's UNAVAILABLE), never a partial answer.
"""

from __future__ import annotations

import array
import base64
import binascii
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import auth_headers
from proxyservice.adapters import FAMILIES, adapter_for
from proxyservice.adapters.base import (
    AdapterError,
    UpstreamRequest,
    count,
    dumps,
    error_message,
    join_url,
    loads,
    string,
    unsupported,
)
from proxyservice.adapters.gemini import bare_model, model_path
from proxyservice.adapters.openai import dialect
from proxyservice.errors import InvalidArgument
from proxyservice.validation import validate_route

# Inputs per provider call, by the server (the provider, or a known host: see `_server`), else by wire family (one
# not named, openai_compatible or OpenRouter, keeps its family's contract). Where each number comes from:
BATCH_LIMITS: dict[str, int] = {
    "openai": 2048,  # API reference: "any array must be 2048 dimensions or less"
    "mistral": 512,  # past 512 Mistral answers 400 code 3210 "Too many inputs in request, split into more batches."
    "together": 512,  # Together documents no cap; LangChain's TogetherAIEmbeddings sends 512 a request
    "fireworks": 8,  # LangChain.js FireworksEmbeddings: "limited by the Fireworks AI API to a maximum of 8"
    "gemini": 100,  # Gemini: "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
}
# Split calls of one request in flight at once: enough to overlap the provider's latency (a 8192-input OpenAI batch
# goes out whole), few enough that one caller's batch neither drains the tenant's rate limit in a burst nor
# takes more than a handful of the upstream pool's connections.
MAX_CONCURRENT_CALLS = 4
MAX_INPUTS = 16384
MAX_DIMENSIONS = 65536

_BASE64_PROVIDERS = frozenset({"openai", "mistral"})  # whose API references document encoding_format "base64"
_TASK_PREFIX = "EMBED_TASK_TYPE_"  # the proto's enum names are Gemini's TaskType names behind this prefix
def validate_embed_request(r: pb.EmbedRequest) -> None:
    """The provider-independent checks (INVALID_ARGUMENT naming the field), before a lease is taken. The model is
    required: a credential's default model is a chat model, never an embeddings one."""
    validate_route("", r.tenant, r.model, r.provider, r.credential_id)
    if not r.model:
        raise InvalidArgument("model", "is required (an embeddings model, e.g. text-embedding-3-small)")
    if not r.inputs:
        raise InvalidArgument("inputs", "at least one input is required")
    if len(r.inputs) > MAX_INPUTS:
        raise InvalidArgument("inputs", f"at most {MAX_INPUTS} inputs")
    for i, item in enumerate(r.inputs):
        kind = item.WhichOneof("input")
        if kind is None:
            raise InvalidArgument(f"inputs[{i}]", "text or image is required")
        if kind == "text" and not item.text:
            raise InvalidArgument(f"inputs[{i}].text", "must not be empty (providers refuse an empty string)")
    if r.HasField("dimensions") and not 1 <= r.dimensions <= MAX_DIMENSIONS:
        raise InvalidArgument("dimensions", f"must be between 1 and {MAX_DIMENSIONS}")
    if r.task_type not in pb.EmbedTaskType.values():
        raise InvalidArgument("task_type", "is not a known EmbedTaskType")
    if len(r.request_id) > 128:
        raise InvalidArgument("request_id", "at most 128 characters")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the lease's provider, family and api_base, its key, and the model asked for."""

    family: str
    provider: str
    api_base: str
    api_key: str = field(repr=False)
    model: str


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """One provider call of a (possibly split) batch: its request, and which of the caller's inputs it embeds."""

    request: UpstreamRequest
    start: int
    count: int


@dataclass(frozen=True, slots=True)
class EmbedPart:
    """One call's answer: its vectors in its inputs' order, the model it reported ("" if none), its input tokens
    (None when it reported none)."""

    vectors: list[array.array[float]]
    model: str
    input_tokens: int | None


def batch_limit(provider: str, family: str) -> int:
    """How many inputs one call to this provider may carry (see `BATCH_LIMITS`)."""
    return BATCH_LIMITS.get(provider) or BATCH_LIMITS.get(family, BATCH_LIMITS["openai"])


def _server(target: Target) -> str:
    """Whose API the request goes to: in the OpenAI family the chat adapter's dialect (a known host wins over the
    lease's provider name: an openai_compatible credential at api.mistral.ai is Mistral), else the provider."""
    return dialect(target.provider, target.api_base) if target.family == "openai" else target.provider


def split(total: int, limit: int) -> list[tuple[int, int]]:
    """(start, count) of each call for `total` inputs, at most `limit` each, in order."""
    return [(start, min(limit, total - start)) for start in range(0, total, limit)]


def build_calls(r: pb.EmbedRequest, target: Target) -> list[EmbedCall]:
    """The provider calls for the request, in input order; RequestMappingError for what the provider cannot take."""
    family = target.family
    if family not in _BUILDERS:
        if family not in FAMILIES:
            adapter_for(family)  # FAILED_PRECONDITION naming a family this proxy does not speak
        raise unsupported("model", target.provider, "embeddings")  # Anthropic has no embeddings API
    for i, item in enumerate(r.inputs):
        if item.WhichOneof("input") == "image":
            raise unsupported(f"inputs[{i}].image", target.provider, "embedding an image")
    _REFUSALS[family](r, target)
    texts = [item.text for item in r.inputs]
    build = _BUILDERS[family]
    return [EmbedCall(build(texts[start:start + n], r, target), start, n)
            for start, n in split(len(texts), batch_limit(_server(target), family))]


def parse_answer(family: str, body: bytes, call: EmbedCall) -> EmbedPart:
    """One call's answer body as its vectors; AdapterError when it does not fit the call (module docstring)."""
    obj = loads(body, f"{family} embeddings answer")
    if not isinstance(obj, dict):
        raise AdapterError(f"unexpected JSON in {family} embeddings answer from upstream")
    if "error" in obj:
        raise AdapterError(error_message(obj, family)[1])
    return _PARSERS[family](obj, call.count)


def join(r: pb.EmbedRequest, calls: Sequence[EmbedCall], parts: Sequence[EmbedPart], family: str
         ) -> pb.EmbedResponse:
    """The response from every call's answer, in input order: one vector per input, all of one length (the one
    asked for, when dimensions was set), the model the provider reported (else the one asked for), the input tokens
    summed over the calls that reported them (usage unset when none did)."""
    reply = pb.EmbedResponse(model=next((p.model for p in parts if p.model), r.model))
    length = r.dimensions if r.HasField("dimensions") else len(parts[0].vectors[0])
    tokens = [p.input_tokens for p in parts if p.input_tokens is not None]
    if tokens:
        reply.usage.input_tokens = sum(tokens)
    for call, part in zip(calls, parts, strict=True):
        for offset, vector in enumerate(part.vectors):
            if len(vector) != length:
                raise AdapterError(f"{family} embeddings answer has a vector of {len(vector)} dimensions where "
                                   f"{length} were expected")
            reply.embeddings.add(index=call.start + offset, values=vector)
    return reply


# -- the OpenAI-compatible family --------------------------------------------------------------------------------

def _openai_refusals(r: pb.EmbedRequest, target: Target) -> None:
    if r.task_type:
        raise unsupported("task_type", target.provider, "task_type")
    if not r.HasField("dimensions"):
        return
    server = _server(target)
    if server == "mistral" and target.model.startswith("mistral-embed"):
        raise unsupported("dimensions", target.provider, "dimensions for mistral-embed (codestral-embed has them)")
    if server == "openai" and target.model.startswith("text-embedding-ada"):
        raise unsupported("dimensions", target.provider,
                          "dimensions for text-embedding-ada-002 (text-embedding-3 and later models have them)")


def _openai_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    server = _server(target)
    body: dict[str, Any] = {"model": target.model, "input": texts,
                            "encoding_format": "base64" if server in _BASE64_PROVIDERS else "float"}
    if r.HasField("dimensions"):
        body["output_dimension" if server == "mistral" else "dimensions"] = r.dimensions
    headers = {**auth_headers("openai", target.api_key), "content-type": "application/json",
               "accept": "application/json"}
    return UpstreamRequest("POST", join_url(target.api_base, "/embeddings"), headers, dumps(body))


def _openai_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``data[]`` placed by ``index``: every index of the call exactly once, whatever order they came in."""
    data = obj.get("data")
    if not isinstance(data, list) or len(data) != expected:
        got = len(data) if isinstance(data, list) else "no"
        raise AdapterError(f"openai embeddings answer has {got} vectors for {expected} inputs")
    slots: list[array.array[float] | None] = [None] * expected
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < expected or slots[index] is not None:
            raise AdapterError("openai embeddings answer has a missing, repeated or out-of-range index")
        slots[index] = _vector(item.get("embedding"), "openai")
    usage = obj.get("usage")
    tokens = count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return EmbedPart([v for v in slots if v is not None], string(obj.get("model")), tokens)


# -- Gemini ------------------------------------------------------------------------------------------------------

def _gemini_refusals(r: pb.EmbedRequest, target: Target) -> None:
    if r.HasField("dimensions") and bare_model(target.model).startswith("embedding-001"):
        raise unsupported("dimensions", target.provider, "dimensions for embedding-001")


def _gemini_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    path = model_path(target.model)  # "/models/{quoted name}"
    one: dict[str, Any] = {"model": "models/" + bare_model(target.model)}
    if r.task_type:
        one["taskType"] = pb.EmbedTaskType.Name(r.task_type).removeprefix(_TASK_PREFIX)
    if r.HasField("dimensions"):
        one["outputDimensionality"] = r.dimensions
    body = {"requests": [{**one, "content": {"parts": [{"text": text}]}} for text in texts]}
    headers = {**auth_headers("gemini", target.api_key), "content-type": "application/json"}
    return UpstreamRequest("POST", join_url(target.api_base, path + ":batchEmbedContents"), headers, dumps(body))


def _gemini_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``embeddings[]`` in request order (as Gemini documents), exactly one per input."""
    items = obj.get("embeddings")
    if not isinstance(items, list) or len(items) != expected:
        got = len(items) if isinstance(items, list) else "no"
        raise AdapterError(f"gemini embeddings answer has {got} vectors for {expected} inputs")
    vectors = [_vector(item.get("values") if isinstance(item, dict) else None, "gemini") for item in items]
    meta = obj.get("usageMetadata")
    tokens = count(meta.get("promptTokenCount")) if isinstance(meta, dict) else None
    return EmbedPart(vectors, "", tokens)  # Gemini's answer names no model


# -- vectors -----------------------------------------------------------------------------------------------------

def _vector(value: Any, family: str) -> array.array[float]:
    """A vector as float32: a JSON list of numbers, or base64 of little-endian float32 bytes. Non-empty and finite
    (a sum of float32 values cannot overflow a double, so a non-finite sum means a NaN or an infinity in it)."""
    if isinstance(value, list):
        if not set(map(type, value)) <= {float, int}:  # bool is not a number here, nor is null
            raise AdapterError(f"{family} embeddings answer has a vector of non-numbers")
        vector = array.array("f", value)
    elif isinstance(value, str):
        vector = _decode_base64(value, family)
    else:
        raise AdapterError(f"{family} embeddings answer has an item without a vector")
    if not vector or not math.isfinite(sum(vector)):
        raise AdapterError(f"{family} embeddings answer has an empty or non-finite vector")
    return vector


def _decode_base64(value: str, family: str) -> array.array[float]:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AdapterError(f"{family} embeddings answer has a vector that is not base64") from None
    if len(raw) % 4:
        raise AdapterError(f"{family} embeddings answer has a base64 vector that is not float32 bytes")
    vector = array.array("f")
    vector.frombytes(raw)
    if sys.byteorder != "little":
        vector.byteswap()  # the wire is little-endian
    return vector


_BUILDERS = {"openai": _openai_request, "gemini": _gemini_request}
_REFUSALS = {"openai": _openai_refusals, "gemini": _gemini_refusals}
_PARSERS = {"openai": _openai_vectors, "gemini": _gemini_vectors}

__all__ = ["BATCH_LIMITS", "MAX_CONCURRENT_CALLS", "EmbedCall", "EmbedPart", "Target",
           "batch_limit", "build_calls", "join", "parse_answer", "split", "validate_embed_request"]
