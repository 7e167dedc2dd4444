"""Fold a stream of StreamChatResponses back into the whole answer (what a caller would rebuild).

``accumulate`` yields the v1 conformance corpus's ``expected.json`` shape, ``accumulate_v2`` the v2 corpus's
(reasoning, signatures, redacted reasoning, the five usage counts with "not reported" as None; and beyond the
corpus's required fields, each choice's citations and the stream's model fallbacks);
``to_chat_response`` yields the unary RPC's ``ChatResponse``. All apply the stream's rules: text, refusal,
reasoning and tool-call argument fragments are joined in order, signatures and redacted reasoning blocks are
whole values kept in order, a tool call's id, name and signature come from its first fragment that has them,
the last model and usage seen win.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from byok.proxy.v1 import chat_service_pb2 as pb

# The optional counts of Usage, by the name the v2 corpus gives them.
_OPTIONAL_COUNTS = (
    ("reasoning_tokens", "reasoning_tokens"),
    ("cached_input_tokens", "cached_input_tokens"),
    ("cache_creation_input_tokens", "cache_write_input_tokens"),
)


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    signature: str = ""
    args: list[str] = field(default_factory=list)


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    redacted: list[str] = field(default_factory=list)
    citations: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    provider_finish: str = ""
    finish: int = 0


@dataclass
class _State:
    model: str = ""
    usage: pb.Usage | None = None
    fallbacks: list[pb.ModelFallback] = field(default_factory=list)
    choices: dict[int, _Choice] = field(default_factory=dict)


def _fold_call(ch: _Choice, tc: pb.ToolCallDelta) -> None:
    call = ch.calls.get(tc.index)
    if call is None:
        call = ch.calls[tc.index] = _Call()
    if tc.id and not call.id:
        call.id = tc.id
    if tc.name and not call.name:
        call.name = tc.name
    if tc.signature and not call.signature:
        call.signature = tc.signature
    if tc.arguments:
        call.args.append(tc.arguments)


def _fold_delta(ch: _Choice, cd: pb.ChoiceDelta) -> None:
    if cd.text:
        ch.text.append(cd.text)
    if cd.refusal:
        ch.refusal.append(cd.refusal)
    if cd.reasoning:
        ch.reasoning.append(cd.reasoning)
    if cd.reasoning_signature:
        ch.signatures.append(cd.reasoning_signature)
    if cd.redacted_reasoning:
        ch.redacted.append(cd.redacted_reasoning)
    if cd.citations_json:
        ch.citations.append(cd.citations_json)
    for tc in cd.tool_calls:
        _fold_call(ch, tc)
    if cd.provider_finish_reason:
        ch.provider_finish = cd.provider_finish_reason
        ch.finish = cd.finish_reason


def _fold(responses: Iterable[pb.StreamChatResponse]) -> _State:
    st = _State()
    for r in responses:
        if r.model:
            st.model = r.model
        if r.HasField("usage"):
            st.usage = r.usage
        if r.HasField("fallback"):
            st.fallbacks.append(r.fallback)
        for cd in r.choices:
            ch = st.choices.get(cd.index)
            if ch is None:
                ch = st.choices[cd.index] = _Choice()
            _fold_delta(ch, cd)
    return st


def accumulate(responses: Iterable[pb.StreamChatResponse], provider: str) -> dict[str, Any]:
    """The conformance ``expected.json`` shape (without the Anthropic SDK's parsed ``input``)."""
    st = _fold(responses)
    return {
        "provider": provider,
        "model": st.model,
        "usage": None
        if st.usage is None
        else {"input_tokens": st.usage.input_tokens, "output_tokens": st.usage.output_tokens},
        "choices": [
            {
                "index": i,
                "text": "".join(ch.text),
                "refusal": "".join(ch.refusal),
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": "".join(c.args)}
                    for _, c in sorted(ch.calls.items())
                ],
                "finish_reason": ch.provider_finish,
            }
            for i, ch in sorted(st.choices.items())
        ],
    }


def usage_v2(usage: pb.Usage | None) -> dict[str, int | None] | None:
    """The v2 corpus's usage: the five counts, an unreported optional one as None (None: no usage at all)."""
    if usage is None:
        return None
    out: dict[str, int | None] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
    for field_name, key in _OPTIONAL_COUNTS:
        out[key] = getattr(usage, field_name) if usage.HasField(field_name) else None
    return out


def accumulate_v2(responses: Iterable[pb.StreamChatResponse], provider: str) -> dict[str, Any]:
    """The required fields of the v2 conformance ``expected.json`` that the unified schema carries, by the
    corpus's names (a tool call's ``signature`` is the corpus's Gemini ``thought_signature``, None when empty)."""
    st = _fold(responses)
    return {
        "provider": provider,
        "model": st.model,
        "usage": usage_v2(st.usage),
        "choices": [
            {
                "index": i,
                "text": "".join(ch.text),
                "refusal": "".join(ch.refusal),
                "reasoning": "".join(ch.reasoning),
                "reasoning_signatures": list(ch.signatures),
                "redacted_reasoning": list(ch.redacted),
                "tool_calls": [
                    {"id": c.id, "name": c.name, "arguments": "".join(c.args), "signature": c.signature or None}
                    for _, c in sorted(ch.calls.items())
                ],
                "finish_reason": ch.provider_finish,
                "citations": [json.loads(c) for c in ch.citations],
            }
            for i, ch in sorted(st.choices.items())
        ],
        "fallbacks": [(f.from_model, f.to_model) for f in st.fallbacks],
    }


def to_chat_response(responses: Iterable[pb.StreamChatResponse], provider: str = "") -> pb.ChatResponse:
    """The unary ``ChatResponse`` a stream adds up to (request id, key source, credential left unset).

    Adapters whose unary answer is the same shape as a stream event (Anthropic's message, Gemini's
    GenerateContentResponse) build their ``ChatResponse`` through this too, so both RPCs map alike."""
    st = _fold(responses)
    out = pb.ChatResponse(provider=provider, model=st.model, fallbacks=st.fallbacks)
    if st.usage is not None:
        out.usage.CopyFrom(st.usage)
    for i, ch in sorted(st.choices.items()):
        c = out.choices.add(
            index=i,
            text="".join(ch.text),
            refusal="".join(ch.refusal),
            provider_finish_reason=ch.provider_finish,
            finish_reason=ch.finish,
            reasoning="".join(ch.reasoning),
            reasoning_signatures=ch.signatures,
            redacted_reasoning=ch.redacted,
            citations_json=ch.citations,
        )
        for _, call in sorted(ch.calls.items()):
            c.tool_calls.add(id=call.id, name=call.name, arguments="".join(call.args), signature=call.signature)
    return out


def coalesce(responses: list[pb.StreamChatResponse]) -> list[pb.StreamChatResponse]:
    """Merge responses decoded from one upstream read into as few messages as lose nothing a caller folds: one,
    unless a model fallback is among them.

    Choice deltas keep their order (the fold joins fragments in order, and a signature keeps its place among
    them); the last model and usage win, as in the fold. A response carrying a fallback starts a new message, so
    what the earlier model said stays before it. One gRPC message instead of several is what makes a burst of
    small provider frames cheap.
    """
    out: list[pb.StreamChatResponse] = []
    merged: pb.StreamChatResponse | None = None
    for r in responses:
        if merged is None or r.HasField("fallback"):
            merged = pb.StreamChatResponse()
            out.append(merged)
            if r.HasField("fallback"):
                merged.fallback.CopyFrom(r.fallback)
        merged.choices.extend(r.choices)
        if r.model:
            merged.model = r.model
        if r.HasField("usage"):
            merged.usage.CopyFrom(r.usage)
    return out
