"""OpenAI Chat Completions wire family (OpenAI, Mistral, Groq, Together, DeepSeek, Fireworks, OpenRouter, …).

Streaming: ``data: {chat.completion.chunk}`` events, ``delta.content`` / ``delta.refusal`` /
``delta.tool_calls[i]`` fragments (id and name on the first), ``finish_reason`` per choice, a final
usage chunk with empty ``choices`` (``stream_options.include_usage``), then ``data: [DONE]``.

Reasoning models of the family stream their thinking beside the answer, each provider its own way:
``delta.reasoning_content`` (DeepSeek, Qwen/Alibaba, xAI, Azure AI Foundry), ``delta.reasoning`` (Groq,
OpenRouter, recent vLLM; a server sending both carries the same text in each, so per delta the first non-empty
one is taken, never both), and Mistral's typed ``content`` arrays (``{type: text}`` and ``{type: thinking,
thinking: [{type: text}]}`` parts).
The family has no reasoning signatures in Chat Completions. Usage details: ``prompt_tokens_details.cached_tokens``
(else DeepSeek's ``prompt_cache_hit_tokens``, else a top-level ``cached_tokens``) and
``completion_tokens_details.reasoning_tokens`` (else a top-level ``reasoning_tokens``, as Azure's DeepSeek sends);
each is set only when the provider reported it.

``stream_options`` is not universal. Streams ask for usage with ``stream_options: {include_usage: true}``
except on providers that refuse the field:
- Mistral validates bodies strictly and answers 422 ``extra_forbidden`` ("Extra inputs are not permitted",
  loc ``body.stream_options``); its streams carry ``usage`` on the last chunk unasked, so nothing is lost.
- Groq refused it in 2024 ("property 'stream_options' is unsupported") but accepts it now, and also reports
  usage under ``x_groq.usage``; Together, DeepSeek and Fireworks accept it; OpenRouter accepts it as a no-op
  (usage is always included).
A provider is recognised by the lease's provider name, or by Mistral's host for a custom api_base.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import auth_headers
from proxyservice.adapters.base import (
    AdapterError,
    UpstreamRequest,
    UpstreamStreamError,
    count,
    dumps,
    error_message,
    join_url,
    loads,
    normalise_finish,
    schema,
    string,
    usage,
)
from proxyservice.adapters.stream import SSEJsonDecoder

R = pb.Role

# Providers whose APIs reject ``stream_options`` (see the module docstring), by provider name and by host.
_NO_STREAM_OPTIONS = frozenset({"mistral"})
_NO_STREAM_OPTIONS_HOSTS = ("api.mistral.ai", "codestral.mistral.ai")


def accepts_stream_options(provider: str, api_base: str) -> bool:
    """Whether a streamed request to this provider may carry ``stream_options``."""
    if provider in _NO_STREAM_OPTIONS:
        return False
    return (urlsplit(api_base).hostname or "") not in _NO_STREAM_OPTIONS_HOSTS


def _messages(params: pb.ChatParameters) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in params.messages:
        if m.role == R.ROLE_SYSTEM:
            out.append({"role": "system", "content": m.content})
        elif m.role == R.ROLE_USER:
            out.append({"role": "user", "content": m.content})
        elif m.role == R.ROLE_ASSISTANT:
            msg: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.tool_calls:
                msg["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            out.append(msg)
        elif m.role == R.ROLE_TOOL:
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content})
    return out


def _detail(u: dict[str, Any], details: str, name: str) -> Any:
    """``u[details][name]`` when the provider sent that breakdown (it may be null), else None."""
    d = u.get(details)
    return d.get(name) if isinstance(d, dict) else None


def _first(*values: Any) -> int | None:
    """The first reported count: where providers put the same count under different names."""
    return next((n for v in values if (n := count(v)) is not None), None)


def _usage(obj: dict[str, Any]) -> pb.Usage | None:
    u = obj.get("usage")
    if not isinstance(u, dict):
        # Groq reports streamed usage under x_groq.
        x = obj.get("x_groq")
        u = x.get("usage") if isinstance(x, dict) else None
        if not isinstance(u, dict):
            return None
    return usage(
        u.get("prompt_tokens"),
        u.get("completion_tokens"),
        reasoning=_first(_detail(u, "completion_tokens_details", "reasoning_tokens"), u.get("reasoning_tokens")),
        cached=_first(_detail(u, "prompt_tokens_details", "cached_tokens"), u.get("prompt_cache_hit_tokens"),
                      u.get("cached_tokens")),
    )


def _thinking_text(value: Any) -> str:
    """A Mistral thinking part's text: a list of typed chunks (their text ones joined) or a plain string."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(string(c.get("text")) for c in value if isinstance(c, dict) and c.get("type") == "text")
    return ""


def _content(value: Any) -> tuple[str, str]:
    """(text, reasoning) of a message's or delta's ``content``: a string is all text; Mistral's typed array
    gives its text parts as text and its thinking parts as reasoning (other part kinds are not text)."""
    if isinstance(value, str):
        return value, ""
    if not isinstance(value, list):
        return "", ""
    text: list[str] = []
    reasoning: list[str] = []
    for part in value:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            text.append(string(part.get("text")))
        elif part.get("type") == "thinking":
            reasoning.append(_thinking_text(part.get("thinking")))
    return "".join(text), "".join(reasoning)


def _reasoning(obj: dict[str, Any]) -> str:
    """The reasoning text of a delta or message: ``reasoning_content`` when a non-empty string, else
    ``reasoning`` (so a provider sending both is not doubled)."""
    for key in ("reasoning_content", "reasoning"):
        value = string(obj.get(key))
        if value:
            return value
    return ""


def _text_and_reasoning(obj: dict[str, Any]) -> tuple[str, str]:
    """(text, reasoning) of a delta or a whole message, from every place the family puts them."""
    text, reasoning = _content(obj.get("content"))
    return text, _reasoning(obj) + reasoning


class OpenAIStreamDecoder(SSEJsonDecoder):
    """Turns chat.completion.chunk events into StreamChatResponses."""

    __slots__ = ("_model", "_seen_ids")
    source = "openai stream"

    def __init__(self) -> None:
        super().__init__()  # complete: [DONE] or a finish_reason seen
        self._model = ""
        # (choice, tool index) pairs whose id/name were already sent: some compatible servers repeat them.
        self._seen_ids: set[tuple[int, int]] = set()

    def _skip(self, event: Any) -> bool:
        if event.data[:6] == "[DONE]":
            self.complete = True
            return True
        return False

    def _event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | None:
        if "error" in obj and not obj.get("choices"):
            etype, msg = error_message(obj, "openai")
            raise UpstreamStreamError(msg, error_type=etype)
        resp = pb.StreamChatResponse()
        any_ = False
        model = obj.get("model")
        if model and model != self._model:
            self._model = resp.model = model
            any_ = True
        for c in obj.get("choices") or ():
            cd = self._choice(c)
            if cd is not None:
                resp.choices.append(cd)
                any_ = True
        u = _usage(obj)
        if u is not None:
            resp.usage.CopyFrom(u)
            any_ = True
        return resp if any_ else None

    def _choice(self, c: dict[str, Any]) -> pb.ChoiceDelta | None:
        idx = c.get("index") or 0
        delta = c.get("delta") or {}
        cd = pb.ChoiceDelta(index=idx)
        any_ = False
        text, reasoning = _text_and_reasoning(delta)
        if reasoning:
            cd.reasoning = reasoning
            any_ = True
        if text:
            cd.text = text
            any_ = True
        refusal = delta.get("refusal")
        if refusal:
            cd.refusal = refusal
            any_ = True
        tcs = delta.get("tool_calls")
        if tcs:
            for pos, tc in enumerate(tcs):
                ti = tc.get("index")
                if ti is None:
                    ti = pos
                fn = tc.get("function") or {}
                d = pb.ToolCallDelta(index=ti, arguments=fn.get("arguments") or "")
                key = (idx, ti)
                if key not in self._seen_ids:
                    tid, name = tc.get("id"), fn.get("name")
                    if tid or name:
                        d.id = tid or ""
                        d.name = name or ""
                        self._seen_ids.add(key)
                cd.tool_calls.append(d)
            any_ = True
        fc = delta.get("function_call")  # legacy functions API: one call, index 0
        if fc:
            d = pb.ToolCallDelta(index=0, arguments=fc.get("arguments") or "")
            if (idx, 0) not in self._seen_ids and fc.get("name"):
                d.name = fc["name"]
                self._seen_ids.add((idx, 0))
            cd.tool_calls.append(d)
            any_ = True
        finish = c.get("finish_reason")
        if finish:
            self.complete = True
            cd.provider_finish_reason = finish
            cd.finish_reason = normalise_finish(finish)
            any_ = True
        return cd if any_ else None


class OpenAIAdapter:
    """The OpenAI-compatible Chat Completions API."""

    family = "openai"

    def build_request(
        self, params: pb.ChatParameters, *, api_base: str, api_key: str, model: str, stream: bool,
        provider: str = "",
    ) -> UpstreamRequest:
        body: dict[str, Any] = {"model": model, "messages": _messages(params), "stream": stream}
        if stream and accepts_stream_options(provider, api_base):
            body["stream_options"] = {"include_usage": True}
        if params.HasField("temperature"):
            body["temperature"] = params.temperature
        if params.HasField("max_tokens"):
            # api.openai.com's reasoning models reject max_tokens; compatible servers often only know it.
            host = urlsplit(api_base).hostname or ""
            key = "max_completion_tokens" if host == "api.openai.com" else "max_tokens"
            body[key] = params.max_tokens
        if params.stop:
            body["stop"] = list(params.stop)
        if params.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": schema(t.parameters_json),
                    },
                }
                for t in params.tools
            ]
        headers = {
            **auth_headers("openai", api_key),
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        return UpstreamRequest("POST", join_url(api_base, "/chat/completions"), headers, dumps(body))

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    def parse_response(self, body: bytes) -> pb.ChatResponse:
        obj = loads(body, "openai response")
        if not isinstance(obj, dict):
            raise AdapterError("unexpected JSON in openai response from upstream")
        if "error" in obj and "choices" not in obj:
            etype, msg = error_message(obj, "openai")
            raise UpstreamStreamError(msg, error_type=etype)
        resp = pb.ChatResponse(model=obj.get("model") or "")
        for c in obj.get("choices") or ():
            msg_ = c.get("message") or {}
            text, reasoning = _text_and_reasoning(msg_)
            ch = resp.choices.add(
                index=c.get("index") or 0,
                text=text,
                refusal=msg_.get("refusal") or "",
                reasoning=reasoning,
            )
            for tc in msg_.get("tool_calls") or ():
                fn = tc.get("function") or {}
                ch.tool_calls.add(id=tc.get("id") or "", name=fn.get("name") or "",
                                  arguments=fn.get("arguments") or "")
            finish = c.get("finish_reason") or ""
            ch.provider_finish_reason = finish
            ch.finish_reason = normalise_finish(finish)
        u = _usage(obj)
        if u is not None:
            resp.usage.CopyFrom(u)
        return resp
