"""Fold a stream of StreamChatResponses back into the whole answer (what a caller would rebuild).

``accumulate`` yields the conformance corpus's ``expected.json`` shape; ``to_chat_response`` yields the
unary RPC's ``ChatResponse``. Both apply the stream's rules: text, refusal and tool-call argument
fragments are joined in order, a tool call's id and name come from its first fragment that has them,
the last model and usage seen win.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from byok.proxy.v1 import chat_service_pb2 as pb


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    args: list[str] = field(default_factory=list)


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    provider_finish: str = ""
    finish: int = 0


@dataclass
class _State:
    model: str = ""
    usage: pb.Usage | None = None
    choices: dict[int, _Choice] = field(default_factory=dict)


def _fold(responses: Iterable[pb.StreamChatResponse]) -> _State:
    st = _State()
    for r in responses:
        if r.model:
            st.model = r.model
        if r.HasField("usage"):
            st.usage = r.usage
        for cd in r.choices:
            ch = st.choices.get(cd.index)
            if ch is None:
                ch = st.choices[cd.index] = _Choice()
            if cd.text:
                ch.text.append(cd.text)
            if cd.refusal:
                ch.refusal.append(cd.refusal)
            for tc in cd.tool_calls:
                call = ch.calls.get(tc.index)
                if call is None:
                    call = ch.calls[tc.index] = _Call()
                if tc.id and not call.id:
                    call.id = tc.id
                if tc.name and not call.name:
                    call.name = tc.name
                if tc.arguments:
                    call.args.append(tc.arguments)
            if cd.provider_finish_reason:
                ch.provider_finish = cd.provider_finish_reason
                ch.finish = cd.finish_reason
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


def to_chat_response(responses: Iterable[pb.StreamChatResponse], provider: str = "") -> pb.ChatResponse:
    """The unary ``ChatResponse`` a stream adds up to (request id, key source, credential left unset)."""
    st = _fold(responses)
    out = pb.ChatResponse(provider=provider, model=st.model)
    if st.usage is not None:
        out.usage.CopyFrom(st.usage)
    for i, ch in sorted(st.choices.items()):
        c = out.choices.add(
            index=i,
            text="".join(ch.text),
            refusal="".join(ch.refusal),
            provider_finish_reason=ch.provider_finish,
            finish_reason=ch.finish,
        )
        for _, call in sorted(ch.calls.items()):
            c.tool_calls.add(id=call.id, name=call.name, arguments="".join(call.args))
    return out


def coalesce(responses: list[pb.StreamChatResponse]) -> pb.StreamChatResponse:
    """Merge responses decoded from one upstream read into one message, losing nothing a caller folds.

    Choice deltas keep their order (the fold joins fragments in order); the last model and usage win, as in
    the fold. One gRPC message instead of several is what makes a burst of small provider frames cheap.
    """
    merged = pb.StreamChatResponse()
    for r in responses:
        merged.choices.extend(r.choices)
        if r.model:
            merged.model = r.model
        if r.HasField("usage"):
            merged.usage.CopyFrom(r.usage)
    return merged
