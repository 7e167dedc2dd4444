"""Bedrock's InvokeModel for the embeddings models, as their model-parameter pages document the bodies: the answers
`bedrock.BedrockRuntime` gives ``POST /model/{modelId}/invoke`` once the request is authenticated.

- **Titan Text Embeddings** (``amazon.titan-embed-text-v2:0``, G1 ``amazon.titan-embed-text-v1``): ``{"inputText"}``
  (required, one text), V2 also ``dimensions`` (1024 default, 512, 256), ``normalize`` (boolean) and
  ``embeddingTypes`` (["float", "binary"]); the answer ``{"embedding", "inputTextTokenCount", "embeddingsByType"}``.
- **Cohere Embed v3** (``cohere.embed-english-v3``, ``cohere.embed-multilingual-v3``): ``{"texts", "input_type"}``
  (both required; at most 96 texts of at most 2048 characters; input_type search_document, search_query,
  classification, clustering), ``truncate`` NONE | START | END, ``embedding_types``; the answer ``{"embeddings":
  [[…]], "id", "response_type": "embeddings_floats", "texts"}`` (``{"float": …}`` by type with embedding_types).
- A body the model does not take is 400 ValidationException "Malformed input request: …" naming the key, as
  Bedrock words it; a model id that is none of these is "The provided model identifier is invalid."

Vectors are the local upstream's (`embedding`: deterministic unit vectors), of the model's length (Cohere v3: 1024;
Titan: its dimensions). Token counts are the stand-in's own (a quarter of the characters, plus one), also in
Bedrock's ``x-amzn-bedrock-input-token-count`` header.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from devstack.upstream import Response, embedding

TITAN_DIMENSIONS = (1024, 512, 256)  # the first is the default
COHERE_DIMENSIONS = 1024
COHERE_MAX_TEXTS = 96
COHERE_MAX_CHARS = 2048
COHERE_INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
_TITAN_V2_KEYS = frozenset({"inputText", "dimensions", "normalize", "embeddingTypes"})
_COHERE_KEYS = frozenset({"texts", "images", "input_type", "truncate", "embedding_types"})

# (status, error type, message) → Bedrock's error response (bedrock.aws_error, bound by the caller).
Refuse = Callable[[int, str, str], Response]


def _malformed(refuse: Refuse, where: str, what: str) -> Response:
    return refuse(400, "ValidationException", f"Malformed input request: {where}: {what}, please reformat your "
                                              "input and try again.")


def _tokens(text: str) -> int:
    return len(text) // 4 + 1


def _answer(obj: dict[str, Any], tokens: int) -> Response:
    body = json.dumps(obj).encode()
    return Response(200, [("content-type", "application/json"), ("content-length", str(len(body))),
                          ("x-amzn-requestid", str(uuid.uuid4())),
                          ("x-amzn-bedrock-input-token-count", str(tokens))], body)


def _extraneous(payload: dict[str, Any], allowed: frozenset[str], refuse: Refuse) -> Response | None:
    extra = sorted(set(payload) - allowed)
    return _malformed(refuse, "#", f"extraneous key [{extra[0]}] is not permitted") if extra else None


def titan(model: str, payload: dict[str, Any], refuse: Refuse) -> Response:
    """Titan Text Embeddings' answer (V2, or G1 which takes only inputText)."""
    v2 = "titan-embed-text-v2" in model
    bad = _extraneous(payload, _TITAN_V2_KEYS if v2 else frozenset({"inputText"}), refuse)
    if bad is not None:
        return bad
    text = payload.get("inputText")
    if not isinstance(text, str):
        return _malformed(refuse, "#", "required key [inputText] not found")
    if not text:
        return _malformed(refuse, "#/inputText", "expected minLength: 1, actual: 0")
    dims = payload.get("dimensions", TITAN_DIMENSIONS[0])
    if dims not in TITAN_DIMENSIONS or isinstance(dims, bool):
        return _malformed(refuse, "#/dimensions", f"{json.dumps(dims)} is not a valid enum value")
    if not isinstance(payload.get("normalize", True), bool):
        return _malformed(refuse, "#/normalize", "expected type: Boolean")
    vector = embedding(text, dims)
    out: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": _tokens(text)}
    if v2:
        out["embeddingsByType"] = {"float": vector}
    return _answer(out, _tokens(text))


def cohere(payload: dict[str, Any], refuse: Refuse) -> Response:
    """Cohere Embed v3's answer to a batch of texts."""
    bad = _extraneous(payload, _COHERE_KEYS, refuse)
    if bad is not None:
        return bad
    texts, input_type = payload.get("texts"), payload.get("input_type")
    if input_type is None:
        return _malformed(refuse, "#", "required key [input_type] not found")
    if input_type not in COHERE_INPUT_TYPES:
        return _malformed(refuse, "#/input_type", f"{json.dumps(input_type)} is not a valid enum value")
    if texts is None:
        return _malformed(refuse, "#", "required key [texts] not found")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return _malformed(refuse, "#/texts", "expected type: JSONArray of strings")
    if len(texts) > COHERE_MAX_TEXTS:
        return _malformed(refuse, "#/texts", f"expected maximum item count: {COHERE_MAX_TEXTS}, found: {len(texts)}")
    long = next((i for i, t in enumerate(texts) if len(t) > COHERE_MAX_CHARS), None)
    if long is not None:
        return _malformed(refuse, f"#/texts/{long}", f"expected maxLength: {COHERE_MAX_CHARS}, actual: "
                          f"{len(texts[long])}")
    vectors = [embedding(t, COHERE_DIMENSIONS) for t in texts]
    by_type = bool(payload.get("embedding_types"))
    out = {"id": str(uuid.uuid4()), "texts": texts,
           "embeddings": {"float": vectors} if by_type else vectors,
           "response_type": "embeddings_by_type" if by_type else "embeddings_floats"}
    return _answer(out, sum(_tokens(t) for t in texts))


def invoke(model: str, payload: dict[str, Any], refuse: Refuse) -> Response:
    """The answer of the embeddings model a model id names; any other id is Bedrock's invalid identifier."""
    if model.startswith("amazon.titan-embed-text-"):
        return titan(model, payload, refuse)
    if model.startswith(("cohere.embed-english-v3", "cohere.embed-multilingual-v3")):
        return cohere(payload, refuse)
    return refuse(400, "ValidationException", "The provided model identifier is invalid.")
