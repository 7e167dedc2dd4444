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
- **Azure OpenAI** (``azure_openai``, the OpenAI family): the same body at the deployment's URL,
  ``{endpoint}/openai/deployments/{deployment}/embeddings?api-version=…``, or Azure's ``/openai/v1/embeddings`` with
  the deployment as the body's model (``azure_url``, as chat), the lease's ``api-key`` or Entra ID bearer token.
  Azure's reference takes ``encoding_format`` "float" or "base64" and ``dimensions`` ("only supported in
  text-embedding-3 and later models"; refused for an ada-002 model name), at most 2048 inputs a request.
- **Vertex AI** (``vertex_ai``, the Gemini family): ``POST {api_base}/projects/{p}/locations/{l}/publishers/google/
  models/{m}:predict`` with the lease's bearer token, ``{"instances": [{"content", "task_type"}], "parameters":
  {"outputDimensionality"}}`` (Vertex's task types are Gemini's names); the answer's ``predictions[]`` in instance
  order, each ``embeddings.values``, usage the sum of ``embeddings.statistics.token_count``. Vertex takes at most 250
  texts a request, and "gemini-embedding-001 supports one instance per request".
- **Bedrock** InvokeModel, ``POST {api_base}/model/{id, percent-encoded whole}/invoke``, presented as the lease says
  (SigV4-signed at send time with its session credentials, or a Bedrock API key as a bearer), its body the model's:
  *Titan Text Embeddings* (``amazon.titan-embed-text-*``) one ``{"inputText"}`` a call, V2 with ``"normalize": true``
  and ``dimensions`` 256, 512 or 1024 (others refused; G1 takes none), answer ``embedding`` and
  ``inputTextTokenCount``, no task type (refused); *Cohere Embed* (``cohere.embed-*``) ``{"texts", "input_type"}``,
  at most 96 texts a call, ``input_type`` required: RETRIEVAL_QUERY → search_query, RETRIEVAL_DOCUMENT →
  search_document, CLASSIFICATION → classification, CLUSTERING → clustering, any other (or none) refused, no
  ``dimensions`` (refused); answer ``embeddings`` (a list of vectors, or ``{"float": …}`` by type), no usage. Any
  other Bedrock model is refused (``model``): each model family has its own InvokeModel body.
- **Anthropic** has no embeddings API: refused (``model``).
- **Images** (``inputs[i].image``) are refused for every family: OpenAI's ``input`` is text or tokens, Gemini's
  embedContent counts "only the parts.text fields", Mistral's and the others' take text (Vertex's and Bedrock's image
  embeddings are other models with other bodies).

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
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import AZURE_OPENAI
from proxyservice.adapters import FAMILIES, adapter_for
from proxyservice.adapters.base import (
    AdapterError,
    RequestMappingError,
    SigV4Credentials,
    UpstreamRequest,
    count,
    dumps,
    error_message,
    join_url,
    loads,
    presentation,
    string,
    unsupported,
)
from proxyservice.adapters.gemini import VERTEX_AI, bare_model, model_path, vertex_model_url
from proxyservice.adapters.openai import azure_url, dialect
from proxyservice.errors import FailedPrecondition, InvalidArgument
from proxyservice.validation import validate_route

# Inputs per provider call, by the server (the provider, or a known host: see `_server`), else by wire family (one
# not named, openai_compatible or OpenRouter, keeps its family's contract). Where each number comes from:
BATCH_LIMITS: dict[str, int] = {
    "openai": 2048,  # API reference: "any array must be 2048 dimensions or less"
    "mistral": 512,  # past 512 Mistral answers 400 code 3210 "Too many inputs in request, split into more batches."
    "together": 512,  # Together documents no cap; LangChain's TogetherAIEmbeddings sends 512 a request
    "fireworks": 8,  # LangChain.js FireworksEmbeddings: "limited by the Fireworks AI API to a maximum of 8"
    "gemini": 100,  # Gemini: "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
    "azure_openai": 2048,  # Azure OpenAI's reference: "the maximum number of array inputs is 2048"
    "vertex": 250,  # Vertex AI text embeddings: "each request is limited to 250 input texts"
    "vertex_gemini": 1,  # Vertex AI: "gemini-embedding-001 supports one instance per request"
    "titan": 1,  # Titan Text Embeddings' InvokeModel body is one inputText
    "cohere": 96,  # Cohere Embed on Bedrock: texts per call, maximum 96
}
# Split calls of one request in flight at once: enough to overlap the provider's latency (a 8192-input OpenAI batch
# goes out whole), few enough that one caller's batch neither drains the tenant's rate limit in a burst nor
# takes more than a handful of the upstream pool's connections.
MAX_CONCURRENT_CALLS = 4
MAX_INPUTS = 16384
MAX_DIMENSIONS = 65536

# Whose API references document encoding_format "base64".
_BASE64_PROVIDERS = frozenset({"openai", "mistral", AZURE_OPENAI})
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
    """Where a request goes: the lease's provider, family and api_base, its key, and the model asked for; ``lease``
    for what those do not carry (how the key is presented, AWS session credentials, the cloud providers' routing
    settings). Without a lease the key goes in its family's header, as before leases said more."""

    family: str
    provider: str
    api_base: str
    api_key: str = field(repr=False)
    model: str
    lease: kpb.IssueKeyLeaseResponse | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class EmbedCall:
    """One provider call of a (possibly split) batch: its request, which of the caller's inputs it embeds, and the
    API whose answer it expects ("": the family's own)."""

    request: UpstreamRequest
    start: int
    count: int
    api: str = ""


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
    api = _api(target)
    for i, item in enumerate(r.inputs):
        if item.WhichOneof("input") == "image":
            raise unsupported(f"inputs[{i}].image", target.provider, "embedding an image")
    _REFUSALS[api](r, target)
    texts = [item.text for item in r.inputs]
    build = _BUILDERS[api]
    return [EmbedCall(build(texts[start:start + n], r, target), start, n, api)
            for start, n in split(len(texts), _limit(api, target))]


def _api(target: Target) -> str:
    """Which embeddings API the request speaks: its family's, except where a provider of the family has its own
    (Vertex AI's ``:predict``) and on Bedrock, where each model family has its own InvokeModel body (Titan, Cohere).
    A family without embeddings (Anthropic), or a Bedrock model of another kind, is refused naming the model."""
    family = target.family
    if family == "gemini" and target.provider == VERTEX_AI:
        return "vertex"
    if family == "bedrock":
        match = _BEDROCK_EMBEDDERS.search(target.model)
        if match is None:
            raise unsupported("model", target.provider, f"embeddings with {target.model[:100]!r} (Bedrock embeds "
                              "with amazon.titan-embed-text-* and cohere.embed-* models)")
        return "titan" if match.group(1).startswith("amazon") else "cohere"
    if family not in ("openai", "gemini"):
        if family not in FAMILIES:
            adapter_for(family)  # FAILED_PRECONDITION naming a family this proxy does not speak
        raise unsupported("model", target.provider, "embeddings")  # Anthropic has no embeddings API
    return family


def _limit(api: str, target: Target) -> int:
    """Inputs per call: the cloud APIs' own limits (Vertex's by model), else the family's by server."""
    if api == "vertex" and bare_model(target.model).startswith("gemini-embedding"):
        return BATCH_LIMITS["vertex_gemini"]
    if api in ("vertex", "titan", "cohere"):
        return BATCH_LIMITS[api]
    return batch_limit(_server(target), target.family)


def _presented(target: Target, family: str) -> tuple[dict[str, str], SigV4Credentials | None]:
    """How a call presents the credential: as the lease says (a header, or SigV4 credentials upstream signs with
    when it sends), else the key in the family's header. No lease and no key is a servicer that did not pass the
    lease of a SigV4 credential: failed, never sent unsigned."""
    if target.lease is None and not target.api_key:
        raise FailedPrecondition(f"the {target.provider[:32]} embeddings request needs its lease, which this "
                                 "proxy's servicer did not pass")
    return presentation(target.lease, family=family, api_key=target.api_key, provider=target.provider)


def parse_answer(family: str, body: bytes, call: EmbedCall) -> EmbedPart:
    """One call's answer body as its vectors, read as the call's API answers (else its family's); AdapterError when
    it does not fit the call (module docstring)."""
    obj = loads(body, f"{family} embeddings answer")
    if not isinstance(obj, dict):
        raise AdapterError(f"unexpected JSON in {family} embeddings answer from upstream")
    if "error" in obj:
        raise AdapterError(error_message(obj, family)[1])
    return _PARSERS[call.api or family](obj, call.count)


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


# -- the OpenAI-compatible family (Azure OpenAI included) -------------------------------------------------------

def _openai_refusals(r: pb.EmbedRequest, target: Target) -> None:
    if r.task_type:
        raise unsupported("task_type", target.provider, "task_type")
    if not r.HasField("dimensions"):
        return
    server = _server(target)
    if server == "mistral" and target.model.startswith("mistral-embed"):
        raise unsupported("dimensions", target.provider, "dimensions for mistral-embed (codestral-embed has them)")
    if server in ("openai", AZURE_OPENAI) and target.model.startswith("text-embedding-ada"):
        raise unsupported("dimensions", target.provider,
                          "dimensions for text-embedding-ada-002 (text-embedding-3 and later models have them)")


def _openai_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    server, model = _server(target), target.model
    url = join_url(target.api_base, "/embeddings")
    if target.provider == AZURE_OPENAI:  # the deployment's URL, or /openai/v1 with the deployment as the model
        url, model = azure_url(target.lease.settings if target.lease is not None else {}, target.api_base, model,
                               "/embeddings")
    body: dict[str, Any] = {"model": model, "input": texts,
                            "encoding_format": "base64" if server in _BASE64_PROVIDERS else "float"}
    if r.HasField("dimensions"):
        body["output_dimension" if server == "mistral" else "dimensions"] = r.dimensions
    headers, _ = _presented(target, "openai")
    return UpstreamRequest("POST", url, {**headers, "content-type": "application/json",
                                         "accept": "application/json"}, dumps(body))


def _openai_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``data[]`` placed by ``index``: every index of the call exactly once, whatever order they came in."""
    data = _items(obj.get("data"), expected, "openai")
    slots: list[array.array[float] | None] = [None] * expected
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < expected or slots[index] is not None:
            raise AdapterError("openai embeddings answer has a missing, repeated or out-of-range index")
        slots[index] = _vector(item.get("embedding"), "openai")
    usage = obj.get("usage")
    tokens = count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return EmbedPart([v for v in slots if v is not None], string(obj.get("model")), tokens)


# -- Gemini, and Vertex AI's :predict ----------------------------------------------------------------------------

def _gemini_refusals(r: pb.EmbedRequest, target: Target) -> None:
    if r.HasField("dimensions") and bare_model(target.model).startswith("embedding-001"):
        raise unsupported("dimensions", target.provider, "dimensions for embedding-001")


def _task_name(r: pb.EmbedRequest) -> str:
    """The request's task type by Google's TaskType name (the Gemini API's and Vertex AI's alike)."""
    return pb.EmbedTaskType.Name(r.task_type).removeprefix(_TASK_PREFIX)


def _gemini_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    path = model_path(target.model)  # "/models/{quoted name}"
    one: dict[str, Any] = {"model": "models/" + bare_model(target.model)}
    if r.task_type:
        one["taskType"] = _task_name(r)
    if r.HasField("dimensions"):
        one["outputDimensionality"] = r.dimensions
    body = {"requests": [{**one, "content": {"parts": [{"text": text}]}} for text in texts]}
    headers, _ = _presented(target, "gemini")
    return UpstreamRequest("POST", join_url(target.api_base, path + ":batchEmbedContents"),
                           {**headers, "content-type": "application/json"}, dumps(body))


def _gemini_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``embeddings[]`` in request order (as Gemini documents), exactly one per input."""
    items = _items(obj.get("embeddings"), expected, "gemini")
    vectors = [_vector(item.get("values") if isinstance(item, dict) else None, "gemini") for item in items]
    meta = obj.get("usageMetadata")
    tokens = count(meta.get("promptTokenCount")) if isinstance(meta, dict) else None
    return EmbedPart(vectors, "", tokens)  # Gemini's answer names no model


def _no_refusals(r: pb.EmbedRequest, target: Target) -> None:
    """Vertex AI takes every task type (Google's names) and outputDimensionality for its embedding models."""


def _vertex_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    """``:predict`` under the lease's project and location (``vertex_model_url``), with its token."""
    one = {"task_type": _task_name(r)} if r.task_type else {}
    body: dict[str, Any] = {"instances": [{"content": text, **one} for text in texts]}
    if r.HasField("dimensions"):
        body["parameters"] = {"outputDimensionality": r.dimensions}
    settings = target.lease.settings if target.lease is not None else {}
    url = vertex_model_url(target.api_base, settings, target.model) + ":predict"
    headers, _ = _presented(target, "gemini")
    return UpstreamRequest("POST", url, {**headers, "content-type": "application/json"}, dumps(body))


def _vertex_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``predictions[]`` in instance order, each ``embeddings.values``; usage the sum of the token counts reported
    in ``embeddings.statistics`` (unset when none is)."""
    vectors, tokens = [], []
    for item in _items(obj.get("predictions"), expected, "vertex_ai"):
        found = item.get("embeddings") if isinstance(item, dict) else None
        found = found if isinstance(found, dict) else {}
        vectors.append(_vector(found.get("values"), "vertex_ai"))
        stats = found.get("statistics")
        tokens.append(count(stats.get("token_count")) if isinstance(stats, dict) else None)
    known = [n for n in tokens if n is not None]
    return EmbedPart(vectors, "", sum(known) if known else None)  # Vertex's answer names no model


# -- Bedrock InvokeModel: Titan Text Embeddings, Cohere Embed ------------------------------------------------------

# A Bedrock embeddings model, by its id, an inference profile's ("us.cohere.embed-v4:0") or an ARN's last part.
_BEDROCK_EMBEDDERS = re.compile(r"(?:^|[/.])(amazon\.titan-embed-text|cohere\.embed)-")
_TITAN_DIMENSIONS = (256, 512, 1024)  # Titan Text Embeddings V2's accepted values
# Cohere's input_type (required) for each task type it has one for.
_COHERE_INPUT_TYPES = {pb.EMBED_TASK_TYPE_RETRIEVAL_QUERY: "search_query",
                       pb.EMBED_TASK_TYPE_RETRIEVAL_DOCUMENT: "search_document",
                       pb.EMBED_TASK_TYPE_CLASSIFICATION: "classification", pb.EMBED_TASK_TYPE_CLUSTERING: "clustering"}


def _titan_v2(model: str) -> bool:
    """Titan Text Embeddings V2 (normalize, dimensions); G1 (``-v1``) takes only the text."""
    return "titan-embed-text-v2" in model


def _invoke(body: dict[str, Any], target: Target) -> UpstreamRequest:
    """``POST {api_base}/model/{id}/invoke``, the id percent-encoded whole (as botocore encodes a URI label, and as
    the Converse requests are), presented as the lease says (signed at send time, or a bearer)."""
    headers, sigv4 = _presented(target, "bedrock")
    url = join_url(target.api_base, f"/model/{quote(target.model, safe='')}/invoke")
    return UpstreamRequest("POST", url, {**headers, "content-type": "application/json",
                                         "accept": "application/json"}, dumps(body), sigv4)


def _titan_refusals(r: pb.EmbedRequest, target: Target) -> None:
    if r.task_type:
        raise unsupported("task_type", target.provider, "task_type for Titan Text Embeddings")
    if not r.HasField("dimensions"):
        return
    if not _titan_v2(target.model):
        raise unsupported("dimensions", target.provider, "dimensions for Titan Text Embeddings G1 (V2 has them)")
    if r.dimensions not in _TITAN_DIMENSIONS:
        raise unsupported("dimensions", target.provider, f"dimensions={r.dimensions} for Titan Text Embeddings V2 "
                          f"(it takes {', '.join(map(str, _TITAN_DIMENSIONS))})")


def _titan_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    """One inputText a call; V2 asks for normalized vectors (its default, said so a default change cannot bite)."""
    (text,) = texts
    body: dict[str, Any] = {"inputText": text}
    if _titan_v2(target.model):
        body["normalize"] = True
        if r.HasField("dimensions"):
            body["dimensions"] = r.dimensions
    return _invoke(body, target)


def _titan_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``embedding`` (one vector, the one input) and ``inputTextTokenCount``."""
    if expected != 1:
        raise AdapterError(f"bedrock embeddings answer has 1 vector for {expected} inputs")
    return EmbedPart([_vector(obj.get("embedding"), "bedrock")], "", count(obj.get("inputTextTokenCount")))


def _cohere_refusals(r: pb.EmbedRequest, target: Target) -> None:
    if r.HasField("dimensions"):
        raise unsupported("dimensions", target.provider, "dimensions for Cohere Embed")
    if r.task_type not in _COHERE_INPUT_TYPES:
        names = ", ".join(pb.EmbedTaskType.Name(t) for t in _COHERE_INPUT_TYPES)
        raise RequestMappingError(f"Cohere Embed on {target.provider} needs one of {names} (its input_type is "
                                  "required)", field="task_type")


def _cohere_request(texts: list[str], r: pb.EmbedRequest, target: Target) -> UpstreamRequest:
    return _invoke({"texts": texts, "input_type": _COHERE_INPUT_TYPES[r.task_type]}, target)


def _cohere_vectors(obj: dict[str, Any], expected: int) -> EmbedPart:
    """``embeddings``: a list of vectors in text order, or by type (``{"float": [...]}``); Cohere reports no
    token count in the body."""
    found = obj.get("embeddings")
    if isinstance(found, dict):
        found = found.get("float")
    return EmbedPart([_vector(v, "bedrock") for v in _items(found, expected, "bedrock")], "", None)


# -- answers -----------------------------------------------------------------------------------------------------

def _items(value: Any, expected: int, who: str) -> list[Any]:
    """An answer's list of per-input items, exactly one per input of the call."""
    if not isinstance(value, list) or len(value) != expected:
        got = len(value) if isinstance(value, list) else "no"
        raise AdapterError(f"{who} embeddings answer has {got} vectors for {expected} inputs")
    return value


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


# By API (`_api`): the wire families' own, then the cloud providers' (`EmbedCall.api`).
_BUILDERS = {"openai": _openai_request, "gemini": _gemini_request, "vertex": _vertex_request,
             "titan": _titan_request, "cohere": _cohere_request}
_REFUSALS = {"openai": _openai_refusals, "gemini": _gemini_refusals, "vertex": _no_refusals,
             "titan": _titan_refusals, "cohere": _cohere_refusals}
_PARSERS = {"openai": _openai_vectors, "gemini": _gemini_vectors, "vertex": _vertex_vectors,
            "titan": _titan_vectors, "cohere": _cohere_vectors}

__all__ = ["BATCH_LIMITS", "MAX_CONCURRENT_CALLS", "EmbedCall", "EmbedPart", "Target",
           "batch_limit", "build_calls", "join", "parse_answer", "split", "validate_embed_request"]
