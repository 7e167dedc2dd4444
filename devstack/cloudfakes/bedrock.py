"""A Bedrock runtime stand-in: Converse and ConverseStream, authenticated as AWS does, answered in Bedrock's shapes.

- ``POST /model/{modelId}/converse`` answers a ConverseResponse; ``/converse-stream`` an AWS event stream
  (`eventstream`: messageStart, contentBlockStart/Delta/Stop, messageStop, metadata), in pieces like any stream of
  the local upstream; ``/invoke`` (InvokeModel) the embeddings models' bodies (`bedrock_invoke`: Titan Text
  Embeddings, Cohere Embed v3), authenticated the same way. The model id is the path's one segment, percent-decoded
  (``…-v1%3A0`` is ``…-v1:0``).
- Auth: a SigV4 signature by temporary credentials the stand-in was told are valid (`BedrockConfig.sessions`,
  checked with botocore by `sigv4.verify`), or a Bedrock API key as a bearer (`BedrockConfig.api_keys`). Refusals
  are AWS's: 403 UnrecognizedClientException (unknown or wrong session token, unknown API key),
  ExpiredTokenException, InvalidSignatureException, MissingAuthenticationTokenException.
- The body is validated against botocore's own ConverseRequest shape (unknown fields, types, enums, required
  members, lengths): a refusal is 400 ValidationException with botocore's report as message. Reasoning handed back
  (``reasoningContent.reasoningText``) must carry the signature the stand-in gave that text.
- Errors: ``{"message": …}`` with the type in ``x-amzn-ErrorType`` (``Type:http://internal.amazon.com/coral/…``),
  as Bedrock sends them; 429 ThrottlingException with ``fault:429`` as the model id, an in-stream
  ``modelStreamErrorException`` after the first text with ``fault:stream-error``.
- The answer: the local upstream's words (``generated_text``), its ``frames`` of them (a ``?frames=N`` suffix on
  the model id, as there), cut at ``inferenceConfig.maxTokens`` (stopReason max_tokens); thinking (``reasoningContent``
  text deltas then a signature) when ``additionalModelRequestFields.thinking`` is enabled or adaptive; a call of the
  first tool (toolUse start and two input fragments, stopReason tool_use) when ``toolChoice`` is any or a named
  tool, or with ``?tool=1``; usage in ``metadata`` (cacheReadInputTokens with ``?cached=N``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import AsyncIterator, Container, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.model import ServiceModel
from botocore.session import get_session
from botocore.validate import ParamValidator

from byokcommon.wire import bearer
from devstack.cloudfakes import eventstream
from devstack.cloudfakes.bedrock_invoke import invoke
from devstack.cloudfakes.sigv4 import INVALID_TOKEN, Refusal, SessionCredentials, verify
from devstack.upstream import Response, generated_text, generated_thinking, signature
from devstack.upstream.answers import _Opts

STREAM_TYPE = "application/vnd.amazon.eventstream"
_CORAL = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_CORAL_SERVICE = "http://internal.amazon.com/coral/com.amazon.coral.service/"


@dataclass
class BedrockConfig:
    """What the stand-in accepts (mutable: tests may change it between requests)."""

    region: str = "us-east-1"
    # Access key id → valid session credentials (a dict, or a live view of what a local STS issued).
    sessions: Mapping[str, SessionCredentials] = field(default_factory=dict)
    api_keys: Container[str] = field(default_factory=set)  # Bedrock API keys accepted as bearer tokens


@lru_cache(maxsize=1)
def _service() -> ServiceModel:
    return get_session().get_service_model("bedrock-runtime")


def aws_error(status: int, error_type: str, message: str, namespace: str = _CORAL) -> Response:
    """An AWS JSON error: ``{"message"}``, its type in ``x-amzn-ErrorType``."""
    body = json.dumps({"message": message}).encode()
    return Response(status, [("content-type", "application/json"), ("content-length", str(len(body))),
                             ("x-amzn-errortype", f"{error_type}:{namespace}"),
                             ("x-amzn-requestid", str(uuid.uuid4()))], body)


def _refused(refusal: Refusal) -> Response:
    return aws_error(refusal.status, refusal.error_type, refusal.message, _CORAL_SERVICE)


def validation_report(operation: str, params: dict[str, Any]) -> str:
    """botocore's report of what in ``params`` its ``operation`` input shape does not allow ("" when valid)."""
    report = ParamValidator().validate(params, _service().operation_model(operation).input_shape)
    return str(report.generate_report()) if report.has_errors() else ""


def _signature_errors(payload: dict[str, Any]) -> str:
    """The first reasoning block handed back whose signature is not the one the stand-in gave its text."""
    for message in payload.get("messages") or ():
        for block in message.get("content") or () if isinstance(message, dict) else ():
            text = (block.get("reasoningContent") or {}).get("reasoningText") if isinstance(block, dict) else None
            if isinstance(text, dict) and text.get("signature") != signature(str(text.get("text", ""))):
                return "The reasoning block's signature does not match its text (thinking must come back as sent)."
    return ""


@dataclass
class _Answer:
    """One generated answer's plan, from the request and the model id's ``?k=v`` steering."""

    frames: int
    thoughts: int
    tool: str
    cached: int
    input_tokens: int

    @property
    def output_tokens(self) -> int:
        return self.frames + self.thoughts + (2 if self.tool else 0)

    @property
    def stop(self) -> str:
        return "tool_use" if self.tool else "end_turn"


def _plan(payload: dict[str, Any], steering: dict[str, str], default_frames: int) -> tuple[_Answer, str]:
    frames = int(steering.get("frames", default_frames))
    stop = ""
    limit = (payload.get("inferenceConfig") or {}).get("maxTokens")
    if isinstance(limit, int) and limit < frames:
        frames, stop = limit, "max_tokens"
    thinking = (payload.get("additionalModelRequestFields") or {}).get("thinking") or {}
    thoughts = int(steering.get("thoughts", 3)) if thinking.get("type") in ("enabled", "adaptive") else 0
    tools = (payload.get("toolConfig") or {}).get("tools") or []
    choice = (payload.get("toolConfig") or {}).get("toolChoice") or {}
    tool = ""
    if tools and ("any" in choice or "tool" in choice or steering.get("tool") == "1"):
        tool = (choice.get("tool") or {}).get("name") or tools[0].get("toolSpec", {}).get("name", "")
    chars = len(json.dumps(payload.get("messages") or []))
    answer = _Answer(frames, thoughts, tool, int(steering.get("cached", 0)), chars // 4 + 1)
    return answer, stop or answer.stop


def _usage(a: _Answer) -> dict[str, Any]:
    u: dict[str, Any] = {"inputTokens": a.input_tokens, "outputTokens": a.output_tokens,
                         "totalTokens": a.input_tokens + a.output_tokens}
    if a.cached:
        u["cacheReadInputTokens"] = a.cached
    return u


def _pieces(text: str) -> list[str]:
    """The text as stream deltas, a word each (spaces before all but the first)."""
    words = text.split(" ")
    return [("" if i == 0 else " ") + word for i, word in enumerate(words)]


def _events(a: _Answer, stop: str, fault: str) -> Iterator[bytes]:
    """The ConverseStream messages of an answer."""
    yield eventstream.event("messageStart", {"role": "assistant"})
    block = 0
    if a.thoughts:
        thinking = generated_thinking(a.thoughts)
        for piece in _pieces(thinking):
            yield eventstream.event("contentBlockDelta", {"contentBlockIndex": block,
                                                         "delta": {"reasoningContent": {"text": piece}}})
        yield eventstream.event("contentBlockDelta", {"contentBlockIndex": block, "delta": {
            "reasoningContent": {"signature": signature(thinking)}}})
        yield eventstream.event("contentBlockStop", {"contentBlockIndex": block})
        block += 1
    for piece in _pieces(generated_text(a.frames)) if a.frames else ():
        yield eventstream.event("contentBlockDelta", {"contentBlockIndex": block, "delta": {"text": piece}})
        if fault == "stream-error":
            yield eventstream.exception("modelStreamErrorException", "The model stopped the stream: try again.")
            return
    yield eventstream.event("contentBlockStop", {"contentBlockIndex": block})
    if a.tool:
        block += 1
        yield eventstream.event("contentBlockStart", {"contentBlockIndex": block, "start": {
            "toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": a.tool}}})
        for piece in ('{"n":', "1}"):
            yield eventstream.event("contentBlockDelta", {"contentBlockIndex": block,
                                                         "delta": {"toolUse": {"input": piece}}})
        yield eventstream.event("contentBlockStop", {"contentBlockIndex": block})
    yield eventstream.event("messageStop", {"stopReason": stop})
    yield eventstream.event("metadata", {"usage": _usage(a), "metrics": {"latencyMs": 12}})


async def _stream(frames: Iterator[bytes]) -> AsyncIterator[bytes]:
    for frame in frames:
        yield frame


def _whole(a: _Answer, stop: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if a.thoughts:
        thinking = generated_thinking(a.thoughts)
        content.append({"reasoningContent": {"reasoningText": {"text": thinking, "signature": signature(thinking)}}})
    content.append({"text": generated_text(a.frames)})
    if a.tool:
        content.append({"toolUse": {"toolUseId": f"tooluse_{uuid.uuid4().hex[:22]}", "name": a.tool,
                                    "input": {"n": 1}}})
    return {"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop,
            "usage": _usage(a), "metrics": {"latencyMs": 12}}


class BedrockRuntime:
    """Answers the Bedrock runtime's routes (see the module docstring)."""

    def __init__(self, config: BedrockConfig | None = None) -> None:
        self.config = config or BedrockConfig()

    def authenticate(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response | None:
        """None when the request's credentials are good; else AWS's refusal."""
        token = bearer(headers)
        if token:
            return None if token in self.config.api_keys else _refused(INVALID_TOKEN)
        refusal = verify(method, target, headers, body, known=self.config.sessions, region=self.config.region,
                         now=datetime.datetime.now(datetime.UTC))
        return None if refusal is None else _refused(refusal)

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes, opts: _Opts) -> Response:
        """The answer to one request; a stream is written in pieces as ``opts.chunk`` says."""
        parts = urlsplit(target)
        segments = parts.path.split("/")
        if method != "POST" or len(segments) != 4 or segments[1] != "model" or \
                segments[3] not in ("converse", "converse-stream", "invoke"):
            return aws_error(404, "UnknownOperationException", f"no operation {method} {parts.path[:100]}")
        refused = self.authenticate(method, target, headers, body)
        if refused is not None:
            return refused
        model_id, stream = unquote(segments[2]), segments[3] == "converse-stream"
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return aws_error(400, "ValidationException", "Malformed input request, please reformat your input and "
                                                         "try again.")
        if not isinstance(payload, dict):
            return aws_error(400, "ValidationException", "Malformed input request: the body is not an object.")
        if segments[3] == "invoke":
            return invoke(model_id, payload, aws_error)
        report = validation_report("ConverseStream" if stream else "Converse", {**payload, "modelId": model_id})
        if report:
            return aws_error(400, "ValidationException", report)
        bad_signature = _signature_errors(payload)
        if bad_signature:
            return aws_error(400, "ValidationException", bad_signature)
        base, _, query = model_id.partition("?")
        if base == "fault:429":
            return aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        plan, stop = _plan(payload, dict(parse_qsl(query)), opts.frames)
        request_id = [("x-amzn-requestid", str(uuid.uuid4()))]
        if not stream:
            out = json.dumps(_whole(plan, stop)).encode()
            return Response(200, [("content-type", "application/json"), ("content-length", str(len(out)))]
                            + request_id, out)
        fault = base[6:] if base.startswith("fault:") else ""
        return Response(200, [("content-type", STREAM_TYPE)] + request_id, frames=_stream(_events(plan, stop, fault)),
                        opts=opts)
