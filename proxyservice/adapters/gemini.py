"""Google Gemini (Generative Language API) wire family.

Streaming is ``models/{model}:streamGenerateContent?alt=sse``: each event is a whole
GenerateContentResponse (``candidates[].content.parts[]`` with ``text`` or ``functionCall``,
``finishReason``, ``usageMetadata``, ``modelVersion``). The key goes only in ``x-goog-api-key``.

Mapping choices worth knowing:
- a ``functionCall`` part is a whole call: it becomes one tool-call fragment whose arguments are the
  compact JSON of ``args``; its id is the part's ``id`` when given, else ``call_<n>``;
- ``thought`` parts (thinking summaries) are not text and are skipped;
- output tokens = ``candidatesTokenCount`` + ``thoughtsTokenCount`` (both are billed as output);
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
from proxyservice.adapters.base import (
    AdapterError,
    UpstreamRequest,
    UpstreamStreamError,
    arguments_object,
    dumps,
    error_message,
    join_url,
    loads,
    normalise_finish,
    schema,
    usage,
)
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
    if not isinstance(u, dict):
        return None
    out = (u.get("candidatesTokenCount") or 0) + (u.get("thoughtsTokenCount") or 0)
    return usage(u.get("promptTokenCount"), out)


class GeminiStreamDecoder(SSEJsonDecoder):
    """Turns streamGenerateContent SSE events into StreamChatResponses."""

    __slots__ = ("_model", "_calls")
    source = "gemini stream"

    def __init__(self) -> None:
        super().__init__()  # complete: a candidate's finishReason (or a blocked prompt) seen
        self._model = ""
        self._calls: dict[int, int] = {}  # candidate index → tool calls emitted so far

    def _event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | None:
        if "error" in obj and "candidates" not in obj:
            etype, msg = error_message(obj, "gemini")
            raise UpstreamStreamError(msg, error_type=etype)
        resp = pb.StreamChatResponse()
        any_ = False
        model = obj.get("modelVersion")
        if model and model != self._model:
            self._model = resp.model = model
            any_ = True
        for cand in obj.get("candidates") or ():
            cd = _candidate(cand, self._calls)
            if cd is not None:
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


def _candidate(cand: dict[str, Any], calls: dict[int, int]) -> pb.ChoiceDelta | None:
    idx = cand.get("index") or 0
    cd = pb.ChoiceDelta(index=idx)
    any_ = False
    texts: list[str] = []
    for part in (cand.get("content") or {}).get("parts") or ():
        if "text" in part:
            if not part.get("thought"):
                texts.append(part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"] or {}
            n = calls.get(idx, 0)
            calls[idx] = n + 1
            args = json.dumps(fc.get("args") or {}, ensure_ascii=False, separators=(",", ":"))
            cd.tool_calls.append(
                pb.ToolCallDelta(index=n, id=fc.get("id") or f"call_{n}", name=fc.get("name") or "",
                                 arguments=args)
            )
            any_ = True
    if texts:
        text = "".join(texts)
        if text:
            cd.text = text
            any_ = True
    finish = cand.get("finishReason")
    if finish and finish != "FINISH_REASON_UNSPECIFIED":
        cd.provider_finish_reason = finish
        norm = normalise_finish(finish)
        if norm == FR.FINISH_REASON_STOP and calls.get(idx):
            norm = FR.FINISH_REASON_TOOL_CALLS
        cd.finish_reason = norm
        any_ = True
    return cd if any_ else None


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
        resp = pb.ChatResponse(model=obj.get("modelVersion") or "")
        calls: dict[int, int] = {}
        for cand in obj.get("candidates") or ():
            cd = _candidate(cand, calls) or pb.ChoiceDelta(index=cand.get("index") or 0)
            ch = resp.choices.add(index=cd.index, text=cd.text, provider_finish_reason=cd.provider_finish_reason,
                                  finish_reason=cd.finish_reason)
            for tc in cd.tool_calls:
                ch.tool_calls.add(id=tc.id, name=tc.name, arguments=tc.arguments)
        block = (obj.get("promptFeedback") or {}).get("blockReason")
        if block and not obj.get("candidates"):
            resp.choices.add(index=0, provider_finish_reason=block,
                             finish_reason=FR.FINISH_REASON_CONTENT_FILTER)
        u = _usage(obj)
        if u is not None:
            resp.usage.CopyFrom(u)
        return resp
