"""Google Gemini (Generative Language API) wire family.

Streaming is ``models/{model}:streamGenerateContent?alt=sse``: each event is a whole
GenerateContentResponse (``candidates[].content.parts[]`` with ``text`` or ``functionCall``,
``finishReason``, ``usageMetadata``, ``modelVersion``). The key goes only in ``x-goog-api-key``.

Mapping choices worth knowing:
- a ``functionCall`` part is a whole call: it becomes one tool-call fragment whose arguments are the
  compact JSON of ``args``; its id is the part's ``id`` when given, else ``call_<n>``. Vertex AI's streamed
  arguments (``willContinue`` + ``partialArgs``) are assembled (``partial_args``) and sent when the call closes;
- ``thought`` parts (thinking summaries) are reasoning, not text;
- a part's ``thoughtSignature`` (on thought, text, empty-text and functionCall parts alike) is one reasoning
  signature, in a ChoiceDelta of its own with that part's content so it stays beside what it signs; on a
  functionCall part it is also the call's signature, where Gemini wants it back on the next turn;
- output tokens = ``candidatesTokenCount``, Gemini's own number, never derived: unlike OpenAI's completion_tokens
  it excludes the thinking, which is ``thoughtsTokenCount`` = reasoning tokens (both are billed as output); cached input
  = ``cachedContentTokenCount``; a usageMetadata with no token count at all (Vertex's running
  ``{"trafficType": …}``) is no usage;
- a candidate that called tools and finished with ``STOP`` is normalised to TOOL_CALLS (the provider
  value stays ``STOP``), as Gemini has no finish reason of its own for it;
- a prompt blocked by ``promptFeedback.blockReason`` yields choice 0 finishing with that reason.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import auth_headers
from proxyservice.accumulate import to_chat_response
from proxyservice.adapters.base import (
    AdapterError,
    UpstreamRequest,
    UpstreamStreamError,
    arguments_object,
    compact,
    dumps,
    error_message,
    join_url,
    loads,
    normalise_finish,
    schema,
    string,
    usage,
)
from proxyservice.adapters.partial_args import OpenCall
from proxyservice.adapters.stream import SSEJsonDecoder

R = pb.Role
FR = pb.FinishReason


def _model_path(model: str) -> str:
    name = model[7:] if model.startswith("models/") else model
    return "/models/" + quote(name, safe="")


def _tool_result(content: str) -> dict[str, Any]:
    """functionResponse.response must be an object: a JSON object result as is, anything else wrapped."""
    try:
        value = json.loads(content)
    except ValueError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _convert(params: pb.ChatParameters) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id → function name, for results that don't repeat it
    for m in params.messages:
        parts: list[dict[str, Any]] = []
        if m.role == R.ROLE_SYSTEM:
            system.append(m.content)
            continue
        if m.role == R.ROLE_USER:
            role = "user"
            parts.append({"text": m.content})
        elif m.role == R.ROLE_ASSISTANT:
            role = "model"
            if m.content:
                parts.append({"text": m.content})
            for c in m.tool_calls:
                names[c.id] = c.name
                parts.append({"functionCall": {"name": c.name, "args": arguments_object(c.arguments)}})
        elif m.role == R.ROLE_TOOL:
            role = "user"
            name = m.name or names.get(m.tool_call_id, "")
            parts.append({"functionResponse": {"name": name, "response": _tool_result(m.content)}})
        else:
            continue
        if not parts:
            continue
        # Parallel calls' results must share one turn, so consecutive same-role turns are merged.
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return "\n\n".join(system), contents


def _usage(obj: dict[str, Any]) -> pb.Usage | None:
    u = obj.get("usageMetadata")
    if not isinstance(u, dict) or not any(k.endswith("TokenCount") for k in u):
        return None
    return usage(u.get("promptTokenCount"), u.get("candidatesTokenCount"), reasoning=u.get("thoughtsTokenCount"),
                 cached=u.get("cachedContentTokenCount"))


class _Deltas:
    """The ChoiceDeltas of one candidate in one event, in part order. Unsigned parts share a delta; a part with a
    thoughtSignature gets one of its own (its content and the signature together), so a caller can tell which
    part a signature belongs to, as Gemini wants it back on that part."""

    __slots__ = ("index", "deltas", "_shared")

    def __init__(self, index: int) -> None:
        self.index = index
        self.deltas: list[pb.ChoiceDelta] = []
        self._shared = False  # whether the last delta takes more unsigned parts

    def delta(self, signature: str = "") -> pb.ChoiceDelta:
        if self._shared and not signature:
            return self.deltas[-1]
        cd = pb.ChoiceDelta(index=self.index, reasoning_signature=signature)
        self.deltas.append(cd)
        self._shared = not signature
        return cd


class GeminiStreamDecoder(SSEJsonDecoder):
    """Turns streamGenerateContent SSE events into StreamChatResponses."""

    __slots__ = ("_model", "_calls", "_open")
    source = "gemini stream"

    def __init__(self) -> None:
        super().__init__()  # complete: a candidate's finishReason (or a blocked prompt) seen
        self._model = ""
        self._calls: dict[int, int] = {}  # candidate index → tool calls emitted so far
        self._open: dict[int, OpenCall] = {}  # candidate index → the call whose arguments are still streaming

    def _event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | None:
        if "error" in obj and "candidates" not in obj:
            etype, msg = error_message(obj, "gemini")
            raise UpstreamStreamError(msg, error_type=etype)
        return self._response(obj)

    def close(self) -> list[pb.StreamChatResponse]:
        """The last events, then any call the stream left open (its arguments as far as they came)."""
        out = super().close()
        tail: list[pb.ChoiceDelta] = []
        for idx in sorted(self._open):
            deltas = _Deltas(idx)
            self._close_call(deltas)
            tail += deltas.deltas
        if tail:
            out.append(pb.StreamChatResponse(choices=tail))
        return out

    def whole(self, obj: dict[str, Any]) -> pb.ChatResponse:
        """A unary generateContent answer, mapped as the stream maps its events (one choice per candidate)."""
        responses = [pb.StreamChatResponse(choices=[
            pb.ChoiceDelta(index=c.get("index") or 0) for c in obj.get("candidates") or () if isinstance(c, dict)
        ])]
        responses.append(self._response(obj) or pb.StreamChatResponse())
        return to_chat_response([*responses, *self.close()])

    def _response(self, obj: dict[str, Any]) -> pb.StreamChatResponse | None:
        resp = pb.StreamChatResponse()
        any_ = False
        model = obj.get("modelVersion")
        if model and model != self._model:
            self._model = resp.model = model
            any_ = True
        for cand in obj.get("candidates") or ():
            for cd in self._candidate(cand if isinstance(cand, dict) else {}):
                resp.choices.append(cd)
                any_ = True
                if cd.provider_finish_reason:
                    self.complete = True
        block = (obj.get("promptFeedback") or {}).get("blockReason")
        if block and not obj.get("candidates"):
            self.complete = True
            resp.choices.append(pb.ChoiceDelta(index=0, provider_finish_reason=block,
                                               finish_reason=FR.FINISH_REASON_CONTENT_FILTER))
            any_ = True
        u = _usage(obj)
        if u is not None:
            resp.usage.CopyFrom(u)
            any_ = True
        return resp if any_ else None

    def _candidate(self, cand: dict[str, Any]) -> list[pb.ChoiceDelta]:
        deltas = _Deltas(cand.get("index") or 0)
        for part in (cand.get("content") or {}).get("parts") or ():
            if isinstance(part, dict):
                self._part(part, deltas)
        finish = cand.get("finishReason")
        if finish and finish != "FINISH_REASON_UNSPECIFIED":
            self._close_call(deltas)
            norm = normalise_finish(finish)
            if norm == FR.FINISH_REASON_STOP and self._calls.get(deltas.index):
                norm = FR.FINISH_REASON_TOOL_CALLS
            cd = deltas.delta()
            cd.provider_finish_reason = finish
            cd.finish_reason = norm
        return deltas.deltas

    def _part(self, part: dict[str, Any], deltas: _Deltas) -> None:
        signature = string(part.get("thoughtSignature"))
        if "functionCall" in part:
            self._function_call(part["functionCall"] if isinstance(part["functionCall"], dict) else {},
                                signature, deltas)
            return
        text = string(part.get("text"))
        if not (text or signature):
            return  # an empty text part, or a part kind this schema does not carry
        cd = deltas.delta(signature)
        if part.get("thought"):
            cd.reasoning += text
        else:
            cd.text += text

    def _function_call(self, fc: dict[str, Any], signature: str, deltas: _Deltas) -> None:
        """A whole call, or a step of one whose arguments Vertex AI streams: a named part opens a call, a part
        without ``willContinue`` closes the open one."""
        idx = deltas.index
        open_call = self._open.get(idx)
        if open_call is not None and not fc.get("name"):
            open_call.apply(fc)
            if signature:
                deltas.delta(signature).tool_calls.append(pb.ToolCallDelta(index=open_call.index, signature=signature))
            if not fc.get("willContinue"):
                self._close_call(deltas)
            return
        self._close_call(deltas)
        n = self._calls.get(idx, 0)
        self._calls[idx] = n + 1
        tc = pb.ToolCallDelta(index=n, id=string(fc.get("id")) or f"call_{n}", name=string(fc.get("name")),
                              signature=signature)
        call = OpenCall(n)
        call.apply(fc)
        if fc.get("willContinue"):
            self._open[idx] = call
        else:
            tc.arguments = compact(call.args)
        deltas.delta(signature).tool_calls.append(tc)

    def _close_call(self, deltas: _Deltas) -> None:
        """Send the arguments of the candidate's open call, if any, now that they are whole."""
        call = self._open.pop(deltas.index, None)
        if call is not None:
            deltas.delta().tool_calls.append(pb.ToolCallDelta(index=call.index, arguments=compact(call.args)))


class GeminiAdapter:
    """The Gemini generateContent API (v1beta)."""

    family = "gemini"

    def build_request(
        self, params: pb.ChatParameters, *, api_base: str, api_key: str, model: str, stream: bool,
        provider: str = "",
    ) -> UpstreamRequest:
        system, contents = _convert(params)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if params.tools:
            body["tools"] = [{"functionDeclarations": [
                {"name": t.name, "description": t.description, "parameters": schema(t.parameters_json)}
                for t in params.tools
            ]}]
        config: dict[str, Any] = {}
        if params.HasField("temperature"):
            config["temperature"] = params.temperature
        if params.HasField("max_tokens"):
            config["maxOutputTokens"] = params.max_tokens
        if params.stop:
            config["stopSequences"] = list(params.stop)
        if config:
            body["generationConfig"] = config
        suffix = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        url = join_url(api_base, _model_path(model) + suffix)
        return UpstreamRequest("POST", url, self._headers(api_key), dumps(body))

    @staticmethod
    def _headers(api_key: str) -> dict[str, str]:
        return {**auth_headers("gemini", api_key), "content-type": "application/json"}

    def stream_decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder()

    def parse_response(self, body: bytes) -> pb.ChatResponse:
        obj = loads(body, "gemini response")
        if not isinstance(obj, dict):
            raise AdapterError("unexpected JSON in gemini response from upstream")
        if "error" in obj and "candidates" not in obj:
            etype, msg = error_message(obj, "gemini")
            raise UpstreamStreamError(msg, error_type=etype)
        return GeminiStreamDecoder().whole(obj)
