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
A provider is recognised by its host when the api_base is a known one (so an openai_compatible lease pointed at
api.mistral.ai is Mistral), else by the lease's provider name: its "dialect" below.
Azure OpenAI (provider ``azure_openai``) is the same API at a resource's endpoint: a deployment's own URL with
``api-version`` when the credential sets one, else Azure's ``/openai/v1`` API (the deployment name is then the
body's model); the credential's ``deployments`` setting maps model names to deployments (``azure_url``). Its key goes
in ``api-key``, an Entra ID token as a bearer (the lease's auth scheme).

Citations: OpenAI search models put ``annotations`` (``url_citation`` objects) on the message, and when streaming
on a delta of their own near the end; Perplexity-style servers (and xAI) send top-level ``citations`` and
``search_results`` arrays, repeated whole in every chunk. Each becomes ``citations_json``, a compact object of the
provider's own fields as sent (``{"annotations": […]}``, ``{"citations": […], "search_results": […]}``), the
top-level ones on choice 0. A field's value is sent when it differs from the last one sent for that choice: a
repeated array goes out once, a grown one again whole, so the newest (most complete) value is always the last.

Requests (schema v2). What the family's Chat Completions APIs document, and the refusals where one has no form:
- Content parts: text ``{type: text}``; images ``{type: image_url, image_url: {url, detail?}}`` (a data: URL for
  inline bytes; Mistral's ImageURLChunk takes the same object); inline documents OpenAI's PDF input ``{type: file,
  file: {filename, file_data: "data:<mt>;base64,…"}}`` (Chat Completions takes PDFs only, and wants a filename with
  file_data: "document.pdf" when the caller gave none). A document URL has no Chat Completions form and is
  refused, except on OpenRouter (its PDF guide: ``file_data`` may be a URL) and Mistral (its Document QnA guide:
  ``{type: document_url, document_url, document_name?}``; Mistral documents no inline form for chat, so inline
  documents are refused there). System and tool messages take text parts only; assistant messages text and
  reasoning.
- Reasoning parts go back where a provider documents it: DeepSeek's assistant ``reasoning_content`` (its thinking
  mode guide: required back on turns that called tools), OpenRouter's assistant ``reasoning`` (its AssistantMessage
  schema), Mistral's ``{type: thinking, thinking: [{type: text}]}`` content chunks (its ThinkChunk). Elsewhere there
  is no field, so they are refused; signatures and redacted reasoning have no Chat Completions form anywhere in the
  family (OpenRouter's ``reasoning_details`` carry ids and formats byok never receives), so they are refused too.
  A history tool call's ``signature`` (Gemini's) is not sent.
- ``reasoning_effort`` (OpenAI, Groq, Mistral, Fireworks, …); DeepSeek's thinking-mode guide maps the levels itself
  and turns thinking off with ``thinking: {type: disabled}`` (used for NONE); OpenRouter's ``reasoning: {effort}``
  or ``reasoning: {max_tokens}``, "one of, not both". A token budget has no Chat Completions field elsewhere.
- ``response_format: {type: json_schema, json_schema: {name, description?, schema, strict}}`` (Mistral documents the
  same); DeepSeek documents ``json_object`` only, so a schema is refused there.
- ``tool_choice`` "auto" | "none" | "required" (Mistral: "any", its own word) | ``{type: function, function:
  {name}}``; ``parallel_tool_calls``. OpenAI refuses both without tools ("only allowed when 'tools' are
  specified"); without tools neither can change the answer, so they are left out then.
- ``top_p``, ``seed`` (Mistral: ``random_seed``), ``presence_penalty``, ``frequency_penalty``; then the caller's
  ``provider_options_json`` merged in last. A request without the v2 fields is the same body as before them.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.wire import AZURE_OPENAI
from proxyservice.adapters import options
from proxyservice.adapters.base import (
    AdapterError,
    R,
    RequestMappingError,
    UpstreamRequest,
    UpstreamStreamError,
    compact,
    count,
    dumps,
    error_message,
    join_url,
    loads,
    normalise_finish,
    presentation,
    schema,
    string,
    unsupported,
    usage,
)
from proxyservice.adapters.stream import SSEJsonDecoder
from proxyservice.errors import FailedPrecondition

# Servers known by their host, whatever the lease calls them (an openai_compatible lease at api.mistral.ai is
# Mistral's API, with Mistral's rules).
_HOST_DIALECTS = {
    "api.openai.com": "openai",
    "api.mistral.ai": "mistral",
    "codestral.mistral.ai": "mistral",
    "api.deepseek.com": "deepseek",
    "openrouter.ai": "openrouter",
}
# Providers whose APIs reject ``stream_options`` (see the module docstring).
_NO_STREAM_OPTIONS = frozenset({"mistral"})


# ---- Azure OpenAI: the same API at a resource's endpoint, per deployment ------------------------------------

_AZURE_SUFFIXES = ("/openai/v1", "/openai")


def azure_endpoint(settings: Mapping[str, str], api_base: str) -> str:
    """The resource's endpoint (``https://<resource>.openai.azure.com``): the lease's api_base (keyservice's is the
    endpoint setting, unless the credential or ops override it) without an ``/openai/v1`` or ``/openai`` ending,
    else the ``endpoint`` setting."""
    endpoint = (api_base or settings.get("endpoint", "")).rstrip("/")
    for suffix in _AZURE_SUFFIXES:
        if endpoint.endswith(suffix):
            return endpoint[:-len(suffix)]
    return endpoint


@functools.lru_cache(maxsize=1024)
def _deployments(text: str) -> tuple[tuple[str, str], ...]:
    """The ``deployments`` setting (a JSON object model → deployment name), parsed once per distinct value."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise FailedPrecondition("the azure_openai credential's deployments setting is not a JSON object of names")
    return tuple(value.items())


def azure_url(settings: Mapping[str, str], api_base: str, model: str, path: str = "/chat/completions"
              ) -> tuple[str, str]:
    """(URL, the body's model) of an Azure OpenAI request for ``model``: the deployment it maps to in the
    ``deployments`` setting (else a deployment of that name). With an ``api_version`` setting, the deployment's own
    URL ``{endpoint}/openai/deployments/{deployment}{path}?api-version=…``; without, Azure's ``/openai/v1`` API,
    which takes the deployment name as the body's model."""
    endpoint = azure_endpoint(settings, api_base)
    deployment = dict(_deployments(settings.get("deployments", ""))).get(model, model)
    version = settings.get("api_version", "")
    if version:
        return (f"{endpoint}/openai/deployments/{quote(deployment, safe='')}{path}"
                f"?api-version={quote(version, safe='')}", model)
    return f"{endpoint}/openai/v1{path}", deployment


def dialect(provider: str, api_base: str) -> str:
    """Whose variant of Chat Completions a request speaks: the known server at the api_base's host, else the
    lease's provider name ("openai_compatible" when there is none)."""
    return _HOST_DIALECTS.get(urlsplit(api_base).hostname or "") or provider or "openai_compatible"


# ---- request: messages and content parts -------------------------------------------------------------------

# Where each provider documents an assistant's earlier reasoning text (Mistral's goes inline, as thinking chunks).
_REASONING_FIELD = {"deepseek": "reasoning_content", "openrouter": "reasoning"}
_KIND_NAME = {"text": "a text part", "image": "an image part", "document": "a document part",
              "reasoning": "a reasoning part"}


def _data_url(media_type: str, data: bytes) -> str:
    """Inline bytes as the data: URL the family takes for images and files."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _text_part(part: pb.ContentPart) -> dict[str, Any]:
    return {"type": "text", "text": part.text}


def _image_part(image: pb.ImagePart) -> dict[str, Any]:
    """OpenAI's image_url part; ``detail`` only when the caller chose one (else the provider's default)."""
    ref: dict[str, Any] = {"url": image.url or _data_url(image.media_type, image.data)}
    if image.detail:
        ref["detail"] = image.detail
    return {"type": "image_url", "image_url": ref}


def _inline_document(doc: pb.DocumentPart) -> tuple[str, str]:
    """(data: URL, media type) of a document given inline, as bytes or as a data: URL; ("", "") for a remote one."""
    if doc.data:
        return _data_url(doc.media_type, doc.data), doc.media_type
    if doc.url.startswith("data:"):
        return doc.url, doc.media_type or doc.url[5:].split(";", 1)[0]
    return "", doc.media_type


def _document_part(doc: pb.DocumentPart, field: str, d: str) -> dict[str, Any]:
    """A document as the provider documents one (see the module docstring): a ``file`` part, or Mistral's
    ``document_url``; refused where the provider has no form for it."""
    inline, media_type = _inline_document(doc)
    if d == "mistral":
        if inline:
            where = f"{field}.data" if doc.data else f"{field}.url"
            raise unsupported(where, d, "an inline document (Mistral's chat takes documents by URL)")
        chunk: dict[str, Any] = {"type": "document_url", "document_url": doc.url}
        if doc.filename:
            chunk["document_name"] = doc.filename
        return chunk
    if not inline and d != "openrouter":
        raise unsupported(f"{field}.url", d, "a document by URL (Chat Completions takes files inline only)")
    if d == "openai" and media_type and media_type != "application/pdf":
        raise unsupported(f"{field}.media_type", d, "a document other than a PDF (application/pdf)")
    default_name = "document.pdf" if media_type in ("", "application/pdf") else "document"
    return {"type": "file", "file": {"filename": doc.filename or default_name, "file_data": inline or doc.url}}


def _refuse_part(kind: str, field: str, d: str, what: str) -> RequestMappingError:
    return unsupported(field, d, f"{_KIND_NAME.get(kind, 'a part')} in {what}")


def _text_parts(m: pb.Message, where: str, d: str, what: str) -> str | list[dict[str, Any]]:
    """A system message's or tool result's content: its text, or its parts when it has them, which may only be
    text there (OpenAI's system and tool messages take text parts, nothing else)."""
    if not m.parts:
        return m.content
    out: list[dict[str, Any]] = []
    for j, part in enumerate(m.parts):
        kind = part.WhichOneof("part") or ""
        if kind != "text":
            raise _refuse_part(kind, f"{where}.parts[{j}].{kind}", d, what)
        out.append(_text_part(part))
    return out


def _user_content(m: pb.Message, where: str, d: str) -> str | list[dict[str, Any]]:
    """A user message's content: its text, or its parts as text, image_url and file (or document_url) parts."""
    if not m.parts:
        return m.content
    out: list[dict[str, Any]] = []
    for j, part in enumerate(m.parts):
        kind = part.WhichOneof("part") or ""
        field = f"{where}.parts[{j}].{kind}"
        if kind == "text":
            out.append(_text_part(part))
        elif kind == "image":
            out.append(_image_part(part.image))
        elif kind == "document":
            out.append(_document_part(part.document, field, d))
        else:  # validation keeps reasoning to assistant messages; refused here all the same
            raise _refuse_part(kind, field, d, "a user message")
    return out


def _reasoning_text(r: pb.ReasoningPart, field: str, d: str) -> str:
    """A reasoning part's text, once it is known to be expressible: no signature and no redacted block (the
    family has no form for either), and a provider that takes reasoning back at all."""
    if r.redacted:
        raise unsupported(f"{field}.redacted", d, "redacted reasoning")
    if r.signature:
        raise unsupported(f"{field}.signature", d, "a reasoning signature")
    if d != "mistral" and d not in _REASONING_FIELD:
        raise unsupported(field, d, "reasoning handed back (there is no field for it)")
    return r.text


def _assistant_parts(m: pb.Message, where: str, d: str) -> tuple[list[dict[str, Any]], str]:
    """(content parts, reasoning text for the provider's own field) of an assistant message's parts."""
    content: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for j, part in enumerate(m.parts):
        kind = part.WhichOneof("part") or ""
        field = f"{where}.parts[{j}].{kind}"
        if kind == "text":
            content.append(_text_part(part))
        elif kind == "reasoning":
            text = _reasoning_text(part.reasoning, field, d)
            if d == "mistral":  # in order among the text, as Mistral itself returns it
                content.append({"type": "thinking", "thinking": [{"type": "text", "text": text}]})
            else:
                reasoning.append(text)
        else:
            raise _refuse_part(kind, field, d, "an assistant message")
    return content, "".join(reasoning)


def _assistant(m: pb.Message, where: str, d: str) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": m.content or None}
    if m.parts:
        content, reasoning = _assistant_parts(m, where, d)
        msg["content"] = content or None
        if reasoning:
            msg[_REASONING_FIELD[d]] = reasoning
    if m.tool_calls:  # a call's signature (Gemini's) has no place here and is not sent
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    return msg


def _message(m: pb.Message, where: str, d: str) -> dict[str, Any] | None:
    if m.role == R.ROLE_SYSTEM:
        return {"role": "system", "content": _text_parts(m, where, d, "a system message")}
    if m.role == R.ROLE_USER:
        return {"role": "user", "content": _user_content(m, where, d)}
    if m.role == R.ROLE_ASSISTANT:
        return _assistant(m, where, d)
    if m.role == R.ROLE_TOOL:
        return {"role": "tool", "tool_call_id": m.tool_call_id,
                "content": _text_parts(m, where, d, "a tool result")}
    return None


def _messages(params: pb.ChatParameters, d: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, m in enumerate(params.messages):
        msg = _message(m, f"parameters.messages[{i}]", d)
        if msg is not None:
            out.append(msg)
    return out


# ---- request: the v2 controls ------------------------------------------------------------------------------

_EFFORTS = {pb.REASONING_EFFORT_NONE: "none", pb.REASONING_EFFORT_MINIMAL: "minimal", pb.REASONING_EFFORT_LOW: "low",
            pb.REASONING_EFFORT_MEDIUM: "medium", pb.REASONING_EFFORT_HIGH: "high"}
_TOOL_CHOICES = {pb.TOOL_CHOICE_MODE_AUTO: "auto", pb.TOOL_CHOICE_MODE_NONE: "none",
                 pb.TOOL_CHOICE_MODE_REQUIRED: "required"}
# The sampling controls: (ChatParameters field, body key); Mistral names the seed random_seed.
_SAMPLING = (("top_p", "top_p"), ("seed", "seed"), ("presence_penalty", "presence_penalty"),
             ("frequency_penalty", "frequency_penalty"))
_RENAMED = {("mistral", "seed"): "random_seed"}


def _tool_choice(c: pb.ToolChoice, d: str) -> Any:
    if c.mode == pb.TOOL_CHOICE_MODE_TOOL:
        return {"type": "function", "function": {"name": c.name}}
    if c.mode == pb.TOOL_CHOICE_MODE_REQUIRED and d == "mistral":
        return "any"
    return _TOOL_CHOICES[c.mode]


def _tool_controls(body: dict[str, Any], params: pb.ChatParameters, d: str) -> None:
    """tool_choice and parallel_tool_calls, only with tools (see the module docstring)."""
    if not params.tools:
        return
    if params.HasField("tool_choice") and params.tool_choice.mode in (*_TOOL_CHOICES, pb.TOOL_CHOICE_MODE_TOOL):
        body["tool_choice"] = _tool_choice(params.tool_choice, d)
    if params.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = params.parallel_tool_calls


def _sampling(body: dict[str, Any], params: pb.ChatParameters, d: str) -> None:
    for field, key in _SAMPLING:
        if params.HasField(field):
            body[_RENAMED.get((d, key), key)] = getattr(params, field)


def _openrouter_reasoning(effort: str, budget: int | None) -> dict[str, Any] | None:
    """OpenRouter's ``reasoning`` object: an effort or a token budget ("one of the following, not both")."""
    if effort and budget is not None:
        raise RequestMappingError("OpenRouter takes a reasoning effort or a token budget, not both",
                                  field="parameters.reasoning.budget_tokens")
    if effort:
        return {"effort": effort}
    return None if budget is None else {"max_tokens": budget}


def _reasoning_controls(body: dict[str, Any], params: pb.ChatParameters, d: str) -> None:
    """The effort level (and OpenRouter's budget) as each provider documents it; see the module docstring."""
    if not params.HasField("reasoning"):
        return
    r = params.reasoning
    effort = _EFFORTS.get(r.effort, "")
    budget = r.budget_tokens if r.HasField("budget_tokens") else None
    if d == "openrouter":
        config = _openrouter_reasoning(effort, budget)
        if config is not None:
            body["reasoning"] = config
        return
    if budget is not None:
        raise unsupported("parameters.reasoning.budget_tokens", d,
                          "a reasoning token budget (Chat Completions has reasoning_effort only)")
    if d == "deepseek" and r.effort == pb.REASONING_EFFORT_NONE:
        body["thinking"] = {"type": "disabled"}
    elif effort:
        body["reasoning_effort"] = effort


def _response_format(body: dict[str, Any], params: pb.ChatParameters, d: str) -> None:
    if not params.HasField("response_format"):
        return
    if d == "deepseek":
        raise unsupported("parameters.response_format", d,
                          "a JSON-schema response format (it documents json_object only)")
    f = params.response_format
    spec: dict[str, Any] = {"name": f.name}
    if f.description:
        spec["description"] = f.description
    try:
        spec["schema"] = json.loads(f.schema_json)
    except ValueError:  # validation has checked it; kept so a direct caller gets the field too
        raise RequestMappingError("is not valid JSON", field="parameters.response_format.schema_json") from None
    spec["strict"] = f.strict
    body["response_format"] = {"type": "json_schema", "json_schema": spec}


# ---- response: citations -----------------------------------------------------------------------------------

# Top-level citation fields some servers send beside the choices (Perplexity, xAI); they belong to choice 0.
_TOP_CITATIONS = ("citations", "search_results")


def _top_citations(obj: dict[str, Any]) -> dict[str, Any]:
    if "citations" not in obj and "search_results" not in obj:  # the common chunk: no comprehension run
        return {}
    return {k: obj[k] for k in _TOP_CITATIONS if obj.get(k)}


def _choice_citations(message: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """A message's or delta's own ``annotations`` with the top-level fields meant for its choice."""
    found = {"annotations": message["annotations"]} if message.get("annotations") else {}
    return {**found, **top}


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

    __slots__ = ("_cited", "_model", "_seen_ids")
    source = "openai stream"

    def __init__(self) -> None:
        super().__init__()  # complete: [DONE] or a finish_reason seen
        self._model = ""
        # (choice, tool index) pairs whose id/name were already sent: some compatible servers repeat them.
        self._seen_ids: set[tuple[int, int]] = set()
        # (choice, citation field) -> the compact value last sent: a repeated array is not sent again.
        self._cited: dict[tuple[int, str], str] = {}

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
        top = _top_citations(obj)
        for c in obj.get("choices") or ():
            first = (c.get("index") or 0) == 0
            cd = self._choice(c, top if first else {})
            if first:
                top = {}
            if cd is not None:
                resp.choices.append(cd)
                any_ = True
        if top:  # top-level citations in a chunk without choice 0
            cited = self._citations(0, top)
            if cited:
                resp.choices.append(pb.ChoiceDelta(index=0, citations_json=cited))
                any_ = True
        u = _usage(obj)
        if u is not None:
            resp.usage.CopyFrom(u)
            any_ = True
        return resp if any_ else None

    def _citations(self, idx: int, fields: dict[str, Any]) -> str:
        """The citation fields of a choice that differ from the last value sent for them, as compact JSON."""
        fresh: dict[str, Any] = {}
        for key, value in fields.items():
            text = compact(value)
            if self._cited.get((idx, key)) != text:
                self._cited[(idx, key)] = text
                fresh[key] = value
        return compact(fresh) if fresh else ""

    def _choice(self, c: dict[str, Any], top: dict[str, Any]) -> pb.ChoiceDelta | None:
        idx = c.get("index") or 0
        delta = c.get("delta") or {}
        cd = pb.ChoiceDelta(index=idx)
        any_ = False
        if top or "annotations" in delta:  # most chunks carry none: no dicts built for them
            cited = self._citations(idx, _choice_citations(delta, top))
            if cited:
                cd.citations_json = cited
                any_ = True
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
        provider: str = "", lease: kpb.IssueKeyLeaseResponse | None = None,
    ) -> UpstreamRequest:
        """The chat completions request; an Azure OpenAI lease's goes to its deployment (``azure_url``) with its
        key in ``api-key`` or its Entra ID token as a bearer, as the lease says."""
        d = dialect(provider, api_base)
        url = join_url(api_base, "/chat/completions")
        if provider == AZURE_OPENAI:
            url, model = azure_url(lease.settings if lease is not None else {}, api_base, model)
        body: dict[str, Any] = {"model": model, "messages": _messages(params, d), "stream": stream}
        if stream and d not in _NO_STREAM_OPTIONS:
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
        _tool_controls(body, params, d)
        _sampling(body, params, d)
        _reasoning_controls(body, params, d)
        _response_format(body, params, d)
        options.merge(body, params.provider_options_json)  # last: it must see every key the schema set
        auth, _ = presentation(lease, family="openai", api_key=api_key, provider=provider)
        headers = {
            **auth,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        return UpstreamRequest("POST", url, headers, dumps(body))

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
        top = _top_citations(obj)
        for c in obj.get("choices") or ():
            msg_ = c.get("message") or {}
            text, reasoning = _text_and_reasoning(msg_)
            ch = resp.choices.add(
                index=c.get("index") or 0,
                text=text,
                refusal=msg_.get("refusal") or "",
                reasoning=reasoning,
            )
            cited = _choice_citations(msg_, top if ch.index == 0 else {})
            if cited:
                ch.citations_json.append(compact(cited))
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
