"""Anthropic Messages wire family.

Streaming events: ``message_start`` (model, usage; its message's ``content`` is normally empty, but a turn
resumed by programmatic tool calling arrives there whole, with its ``stop_reason``), ``content_block_start``
(``text``, ``tool_use`` with id and name, ``thinking``, ``redacted_thinking``, ``fallback``; server-side blocks
such as ``server_tool_use`` and their results are not caller tool calls and are skipped), ``content_block_delta``
(``text_delta``, ``input_json_delta``, ``thinking_delta``, ``signature_delta``, ``citations_delta``; others
ignored), ``message_delta`` (stop_reason, cumulative usage), ``message_stop``, ``ping``, and ``error``. There is
one choice (index 0); a tool call's index is its order among ``tool_use`` blocks.

Extended thinking: a ``thinking`` block's text is reasoning, its ``signature_delta`` one reasoning signature
(whole, as sent); a ``redacted_thinking`` block's ``data`` is one redacted reasoning block. Usage:
``input_tokens`` is Anthropic's own count (it excludes cache reads and writes, and is never derived here),
``cache_read_input_tokens`` the cached input, ``cache_creation_input_tokens`` the cache write; the API reports
no reasoning count of its own, so reasoning_tokens stays unset. ``message_delta`` usage overrides field by
field what ``message_start`` said, as the SDK's accumulator does.

Citations: a ``citations_delta`` carries one ``citation`` object (the SDK's ``CitationsDelta``); a whole text block
(a unary answer, message_start's content) carries them as its ``citations`` list. Each citation becomes one
``citations_json`` of ``{"citation": …}`` as sent, so a stream and the unary answer of the same turn fold alike.
Model fallbacks (the ``server-side-fallback`` beta): a ``fallback`` block ``{from: {model}, to: {model},
trigger}`` marks where one model's output gives way to the next (the SDK's ``BetaFallbackBlock``: one per hop,
streamed as a content_block_start with no deltas). It becomes a response of its own with ``fallback`` (trigger as
compact JSON) and ``model`` = the ``to`` model, so what came before it stays the earlier model's.

Requests (schema v2), as the Messages API documents them (the SDK's param types cited):
- Content parts: text blocks (empty ones left out, as empty content is); images ``{type: image, source: {type:
  base64, media_type, data} | {type: url, url}}`` (a data: URL goes inline as base64), media types
  image/jpeg, image/png, image/gif and image/webp only (``Base64ImageSourceParam``); documents ``{type: document,
  source, title?}`` with the filename as title, a PDF inline (``Base64PDFSourceParam``) or by URL
  (``URLPDFSourceParam``: PDFs only), or text/plain inline as a ``{type: text}`` source (``PlainTextSourceParam``);
  reasoning ``{type: thinking, thinking, signature}`` or ``{type: redacted_thinking, data}``, where the caller put
  it (Anthropic wants a thinking turn to start with its thinking, as the model sent it: the order is the
  caller's, not rearranged). A thinking block without its signature is refused: the API rejects one. Tool results
  with parts: ``tool_result.content`` as text, image and document blocks (``ToolResultBlockParam``). System
  messages take text parts (joined like system messages), assistant messages text and reasoning. An image's
  ``detail`` is OpenAI's resolution hint; Anthropic has no such control and sizes images itself, so it is not
  sent.
- Reasoning: a token budget is ``thinking: {type: enabled, budget_tokens}``, checked against Anthropic's limits
  (at least 1024 and less than max_tokens: ``ThinkingConfigEnabledParam``). An effort alone uses Anthropic's own
  ``output_config.effort`` with ``thinking: {type: adaptive}`` on the models that have them (Claude 4.6 and later:
  adaptive thinking arrived with 4.6, and Opus 4.7 and the Claude 5 family refuse the budget form), else the
  budget LiteLLM documents for the level (its DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET: low 1024, medium 2048,
  high 4096; minimal 1024, Anthropic's minimum) cut to fit below a max_tokens the caller set. NONE is ``thinking:
  {type: disabled}``. With thinking on and no max_tokens, max_tokens is the budget (the level's, on adaptive
  models too) plus DEFAULT_MAX_TOKENS for the answer. Thinking on refuses what the extended-thinking guide says it
  is not compatible with: temperature, top_k, top_p outside 0.95–1, and forced tool use (tool_choice any/tool),
  wherever in the body they came from.
- ``response_format``: structured outputs' ``output_config: {format: {type: json_schema, schema}}``
  (``JSONOutputFormatParam``; generally available, no beta header; it replaced the beta's ``output_format``). The
  API enforces the schema always, so ``strict`` has nothing to switch; it has no name or description for it.
- ``tool_choice`` ``{type: auto | none | any | tool, name}``; ``parallel_tool_calls: false`` is
  ``disable_parallel_tool_use: true`` on it (``ToolChoiceAutoParam``; type auto when no choice was given; the none
  choice has no such field, nor any need of it). Both only with tools, as in the OpenAI family.
- ``top_p``; seed and the presence and frequency penalties have no Messages field and are refused. Then the
  caller's ``provider_options_json`` merged in last. A request without the v2 fields is the same body as before.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import to_chat_response
from proxyservice.adapters import options
from proxyservice.adapters.base import (
    AdapterError,
    R,
    RequestMappingError,
    UpstreamRequest,
    UpstreamStreamError,
    arguments_object,
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

PROVIDER = "anthropic"
DEFAULT_MAX_TOKENS = 1024
MIN_THINKING_BUDGET = 1024  # ThinkingConfigEnabledParam: "Must be ≥1024 and less than max_tokens"

# ---- request: content parts ---------------------------------------------------------------------------------

_IMAGE_TYPES = ("image/gif", "image/jpeg", "image/png", "image/webp")
_DOCUMENT_TYPES = ("application/pdf", "text/plain")
# The part kinds each role's content takes, and how a refusal names the place.
_KINDS = {"system": ("text",), "user": ("text", "image", "document"), "assistant": ("text", "reasoning"),
          "tool": ("text", "image", "document")}
_PLACES = {"system": "a system message", "user": "a user message", "assistant": "an assistant message",
           "tool": "a tool result"}


def _inline(url: str, data: bytes, media_type: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a source given inline, as bytes or as a data: URL (validation has made it
    base64; its own media type counts where the part names none); None for a remote URL."""
    if data:
        return media_type, base64.b64encode(data).decode("ascii")
    if url.startswith("data:"):
        header, _, payload = url[5:].partition(",")
        return media_type or header.split(";", 1)[0], payload
    return None


def _accept(media_type: str, accepted: tuple[str, ...], field: str, what: str) -> None:
    """Refuse, before any call, a media type the API's source types do not list (it would answer 400)."""
    if media_type not in accepted:
        raise unsupported(field, PROVIDER, f"{what} of type {media_type!r} (it takes {', '.join(accepted)})")


def _media_field(field: str, source: pb.ImagePart | pb.DocumentPart) -> str:
    """Where an inline source's media type came from: the part's own field, else its data: URL."""
    return f"{field}.media_type" if source.media_type else f"{field}.url"


def _image_block(image: pb.ImagePart, field: str) -> dict[str, Any]:
    """An image by URL (Anthropic fetches it) or inline as base64 of a media type it takes."""
    inline = _inline(image.url, image.data, image.media_type)
    if inline is None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    media_type, data = inline
    _accept(media_type, _IMAGE_TYPES, _media_field(field, image), "an image")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _plain_text(doc: pb.DocumentPart, data: str, field: str) -> str:
    """A text/plain document's text: Anthropic's text source takes it as a string, not base64."""
    try:
        return (doc.data or base64.b64decode(data, validate=True)).decode("utf-8")
    except ValueError:  # bad base64 and bad UTF-8 alike
        raise RequestMappingError("must be UTF-8 text: anthropic takes a text/plain document as text",
                                  field=f"{field}.data" if doc.data else f"{field}.url") from None


def _document_source(doc: pb.DocumentPart, field: str) -> dict[str, Any]:
    """A PDF by URL or inline (base64), or plain text inline as a text source."""
    inline = _inline(doc.url, doc.data, doc.media_type)
    if inline is None:
        if doc.media_type:
            _accept(doc.media_type, ("application/pdf",), f"{field}.media_type", "a document by URL")
        return {"type": "url", "url": doc.url}
    media_type, data = inline
    _accept(media_type, _DOCUMENT_TYPES, _media_field(field, doc), "a document")
    if media_type == "text/plain":
        return {"type": "text", "media_type": media_type, "data": _plain_text(doc, data, field)}
    return {"type": "base64", "media_type": media_type, "data": data}


def _document_block(doc: pb.DocumentPart, field: str) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "document", "source": _document_source(doc, field)}
    if doc.filename:
        block["title"] = doc.filename
    return block


def _reasoning_block(r: pb.ReasoningPart, field: str) -> dict[str, Any]:
    """Thinking handed back as it came: redacted data whole, or text with the signature the API checks it by."""
    if r.redacted:
        return {"type": "redacted_thinking", "data": r.redacted}
    if not r.signature:
        raise RequestMappingError("is required: Anthropic takes thinking back only with the signature it came with",
                                  field=f"{field}.signature")
    return {"type": "thinking", "thinking": r.text, "signature": r.signature}


def _part_block(part: pb.ContentPart, field: str, role: str) -> dict[str, Any] | None:
    """One part as a content block (None for empty text), or the refusal of a kind this role cannot take."""
    kind = part.WhichOneof("part") or ""
    where = f"{field}.{kind}" if kind else field
    if kind not in _KINDS[role]:
        raise unsupported(where, PROVIDER, f"a {kind or 'content'} part in {_PLACES[role]}")
    if kind == "text":
        return {"type": "text", "text": part.text} if part.text else None
    if kind == "image":
        return _image_block(part.image, where)
    if kind == "document":
        return _document_block(part.document, where)
    return _reasoning_block(part.reasoning, where)


def _content(m: pb.Message, where: str, role: str) -> list[dict[str, Any]]:
    """A message's content blocks: its parts when it has them (they replace content), else its text."""
    if not m.parts:
        return [{"type": "text", "text": m.content}] if m.content else []
    blocks = []
    for j, part in enumerate(m.parts):
        block = _part_block(part, f"{where}.parts[{j}]", role)
        if block is not None:
            blocks.append(block)
    return blocks


def _turn(m: pb.Message, where: str) -> tuple[str, list[dict[str, Any]]] | None:
    """(Anthropic role, content blocks) of a non-system message; None for a role the API has no place for."""
    if m.role == R.ROLE_USER:
        return "user", _content(m, where, "user")
    if m.role == R.ROLE_ASSISTANT:
        calls = [{"type": "tool_use", "id": c.id, "name": c.name, "input": arguments_object(c.arguments)}
                 for c in m.tool_calls]
        return "assistant", _content(m, where, "assistant") + calls
    if m.role == R.ROLE_TOOL:
        result = _content(m, where, "tool") if m.parts else m.content
        return "user", [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": result}]
    return None


def _convert(params: pb.ChatParameters) -> tuple[str, list[dict[str, Any]]]:
    """(system text, messages) with consecutive same-role turns merged, as the API wants for tool results."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, m in enumerate(params.messages):
        where = f"parameters.messages[{i}]"
        if m.role == R.ROLE_SYSTEM:
            if m.parts:
                system.extend(block["text"] for block in _content(m, where, "system"))
            else:
                system.append(m.content)
            continue
        turn = _turn(m, where)
        if turn is None or not turn[1]:
            continue
        role, blocks = turn
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


# ---- request: the v2 controls -------------------------------------------------------------------------------

E = pb.ReasoningEffort
# LiteLLM's documented budgets per level (minimal raised to Anthropic's minimum), for the budget form.
_EFFORT_BUDGETS = {E.REASONING_EFFORT_MINIMAL: 1024, E.REASONING_EFFORT_LOW: 1024, E.REASONING_EFFORT_MEDIUM: 2048,
                   E.REASONING_EFFORT_HIGH: 4096}
# Anthropic's own effort levels (OutputConfigParam: low, medium, high, xhigh, max); it has no minimal.
_EFFORT_LEVELS = {E.REASONING_EFFORT_MINIMAL: "low", E.REASONING_EFFORT_LOW: "low",
                  E.REASONING_EFFORT_MEDIUM: "medium", E.REASONING_EFFORT_HIGH: "high"}
_ADAPTIVE_SINCE = (4, 6)
_TOOL_CHOICES = {pb.TOOL_CHOICE_MODE_AUTO: "auto", pb.TOOL_CHOICE_MODE_NONE: "none",
                 pb.TOOL_CHOICE_MODE_REQUIRED: "any", pb.TOOL_CHOICE_MODE_TOOL: "tool"}
_NO_FIELD = (("seed", "a sampling seed"), ("presence_penalty", "a presence penalty"),
             ("frequency_penalty", "a frequency penalty"))
# Where a body key the thinking checks refuse came from, when the schema set it.
_SCHEMA_FIELDS = {"temperature": "parameters.temperature", "top_p": "parameters.top_p",
                  "tool_choice": "parameters.tool_choice"}


def claude_version(model: str) -> tuple[int, int] | None:
    """(major, minor) of a Claude model id, wherever the numbers stand: after the family (claude-sonnet-4-6,
    claude-opus-5, Vertex's claude-opus-4-6@date) or before it (claude-3-7-sonnet-20250219), behind a Bedrock
    prefix (anthropic.claude-opus-4-6-v1); a date is not a minor version. None for a name that is not Claude's
    (the family's other servers, whose models know the budget form only)."""
    tokens = model.lower().replace("@", "-").replace(".", "-").replace(":", "-").replace("/", "-").split("-")
    if "claude" not in tokens:
        return None
    rest = tokens[tokens.index("claude") + 1:]
    for k, token in enumerate(rest):
        if token.isdigit() and len(token) <= 2:
            minor = rest[k + 1] if k + 1 < len(rest) else ""
            return int(token), int(minor) if minor.isdigit() and len(minor) <= 2 else 0
    return None


def _adaptive(model: str) -> bool:
    """Whether the model has adaptive thinking and output_config.effort (Claude 4.6 and later)."""
    version = claude_version(model)
    return version is not None and version >= _ADAPTIVE_SINCE


def _checked_budget(budget: int, params: pb.ChatParameters) -> int:
    """A caller's budget within Anthropic's limits, or the refusal naming them."""
    field = "parameters.reasoning.budget_tokens"
    if budget < MIN_THINKING_BUDGET:
        raise RequestMappingError(f"must be at least {MIN_THINKING_BUDGET} on anthropic (use reasoning.effort "
                                  "NONE for no thinking)", field=field)
    if params.HasField("max_tokens") and budget >= params.max_tokens:
        raise RequestMappingError(f"must be less than max_tokens ({params.max_tokens}): Anthropic counts the "
                                  "thinking in max_tokens", field=field)
    return budget


def _level_budget(effort: pb.ReasoningEffort, params: pb.ChatParameters) -> int:
    """The budget an effort level maps to, cut to fit below a max_tokens the caller set."""
    budget = _EFFORT_BUDGETS[effort]
    if params.HasField("max_tokens"):
        budget = min(budget, params.max_tokens - 1)
        if budget < MIN_THINKING_BUDGET:
            raise RequestMappingError(f"must be more than {MIN_THINKING_BUDGET} for thinking on anthropic "
                                      "(reasoning.effort asks for it)", field="parameters.max_tokens")
    return budget


def thinking_controls(body: dict[str, Any], params: pb.ChatParameters, model: str) -> None:
    """thinking (and output_config.effort) from the reasoning controls, with Anthropic's limits checked; see the
    module docstring. Claude on Bedrock takes the same (bedrock.py), so the rules live here once."""
    r = params.reasoning
    has_budget = r.HasField("budget_tokens")
    if r.effort == E.REASONING_EFFORT_NONE:
        if has_budget:
            raise RequestMappingError("cannot go with reasoning.effort NONE (no thinking)",
                                      field="parameters.reasoning.budget_tokens")
        body["thinking"] = {"type": "disabled"}
        return
    if r.effort not in _EFFORT_LEVELS and not has_budget:
        return
    adaptive = _adaptive(model)
    if adaptive and r.effort in _EFFORT_LEVELS:
        body.setdefault("output_config", {})["effort"] = _EFFORT_LEVELS[r.effort]
    if has_budget:
        budget = _checked_budget(r.budget_tokens, params)
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    elif adaptive:
        budget = _EFFORT_BUDGETS[r.effort]
        body["thinking"] = {"type": "adaptive"}
    else:
        budget = _level_budget(r.effort, params)
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if not params.HasField("max_tokens"):
        body["max_tokens"] = budget + DEFAULT_MAX_TOKENS


def _tool_choice(params: pb.ChatParameters) -> dict[str, Any] | None:
    """The tool_choice object, with parallel use turned off on it when asked; None without tools."""
    if not params.tools:
        return None
    choice: dict[str, Any] | None = None
    mode = params.tool_choice.mode
    if mode in _TOOL_CHOICES:
        choice = {"type": _TOOL_CHOICES[mode]}
        if mode == pb.TOOL_CHOICE_MODE_TOOL:
            choice["name"] = params.tool_choice.name
    if params.HasField("parallel_tool_calls") and not params.parallel_tool_calls:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    return choice


def _response_format(body: dict[str, Any], f: pb.ResponseFormat) -> None:
    """Structured outputs' output_config.format: the schema alone (the API has no name, description or strict)."""
    try:
        value = json.loads(f.schema_json)
    except ValueError:  # validation has checked it; kept so a direct caller gets the field too
        value = None
    if not isinstance(value, dict):
        raise RequestMappingError("must be a JSON object", field="parameters.response_format.schema_json")
    body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": value}


def _controls(body: dict[str, Any], params: pb.ChatParameters, model: str) -> None:
    """The v2 controls, each only when the caller set it (else the body is what it was before them)."""
    for name, what in _NO_FIELD:
        if params.HasField(name):
            raise unsupported(f"parameters.{name}", PROVIDER, what)
    if params.HasField("top_p"):
        body["top_p"] = params.top_p
    choice = _tool_choice(params)
    if choice is not None:
        body["tool_choice"] = choice
    if params.HasField("reasoning"):
        thinking_controls(body, params, model)
    if params.HasField("response_format"):
        _response_format(body, params.response_format)


def _check_thinking(body: dict[str, Any], schema_keys: frozenset[str]) -> None:
    """With thinking on, refuse what the extended-thinking guide says it is not compatible with (temperature,
    top_k, top_p below 0.95, forced tool use), naming the schema's field or the provider options it came from."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return

    def refuse(key: str, message: str) -> RequestMappingError:
        field = _SCHEMA_FIELDS[key] if key in schema_keys else options.FIELD
        return RequestMappingError(f"{message} with thinking on (Anthropic's extended thinking)", field=field)

    if "temperature" in body:
        raise refuse("temperature", "cannot be set")
    if "top_k" in body:
        raise refuse("top_k", "top_k cannot be set")
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and not 0.95 <= top_p <= 1:
        raise refuse("top_p", "must be between 0.95 and 1")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        raise refuse("tool_choice", "cannot force tool use (required or a named tool; auto and none can be)")


# Anthropic's usage fields → the names ``usage()`` takes.
_USAGE_FIELDS = (
    ("input_tokens", "input_tokens"),
    ("output_tokens", "output_tokens"),
    ("cache_read_input_tokens", "cached"),
    ("cache_creation_input_tokens", "cache_creation"),
)


def _known(prev: pb.Usage | None) -> dict[str, int]:
    """What an earlier usage already said, by ``usage()``'s names (optional counts only when reported)."""
    if prev is None:
        return {}
    known = {"input_tokens": prev.input_tokens, "output_tokens": prev.output_tokens}
    if prev.HasField("cached_input_tokens"):
        known["cached"] = prev.cached_input_tokens
    if prev.HasField("cache_creation_input_tokens"):
        known["cache_creation"] = prev.cache_creation_input_tokens
    return known


def _usage(u: Any, prev: pb.Usage | None) -> pb.Usage | None:
    """``u`` over ``prev``: message_delta usage is cumulative and may omit fields, which keep their earlier value."""
    if not isinstance(u, dict):
        return None
    known: dict[str, Any] = _known(prev)
    for wire, name in _USAGE_FIELDS:
        if count(u.get(wire)) is not None:
            known[name] = u[wire]
    return usage(known.get("input_tokens"), known.get("output_tokens"), cached=known.get("cached"),
                 cache_creation=known.get("cache_creation"))


def _finish(stop: str) -> pb.ChoiceDelta:
    return pb.ChoiceDelta(index=0, provider_finish_reason=stop, finish_reason=normalise_finish(stop))


def _tool_arguments(block: dict[str, Any], whole: bool) -> str:
    """A tool_use block's arguments text. A whole block (a unary answer, message_start's content) has its
    input as an object: compact JSON of it. A streamed one normally starts with input {} and sends the
    arguments as input_json_delta fragments; a non-empty input there is the whole call."""
    inp = block.get("input")
    if whole:
        return compact(inp if isinstance(inp, dict) else {})
    return json.dumps(inp, ensure_ascii=False) if inp else ""


def _reasoning_delta(block: dict[str, Any]) -> pb.ChoiceDelta | None:
    """A thinking block's text and signature (a streamed block starts with both empty), or a redacted_thinking
    block's data, which has no text and goes back to the provider as it came."""
    cd = pb.ChoiceDelta(index=0)
    if block.get("type") == "redacted_thinking":
        cd.redacted_reasoning = string(block.get("data"))
    else:
        cd.reasoning = string(block.get("thinking"))
        cd.reasoning_signature = string(block.get("signature"))
    return cd if (cd.reasoning or cd.reasoning_signature or cd.redacted_reasoning) else None


def _citation(citation: Any) -> pb.ChoiceDelta:
    """One citation, as sent, in the shape of the citations_delta that carries it: {"citation": …}."""
    return pb.ChoiceDelta(index=0, citations_json=compact({"citation": citation}))


def _text_deltas(block: dict[str, Any]) -> list[pb.ChoiceDelta]:
    """A text block's text, then each citation in its ``citations`` list (empty when a stream starts the block;
    whole in a unary answer)."""
    out = []
    text = string(block.get("text"))
    if text:
        out.append(pb.ChoiceDelta(index=0, text=text))
    citations = block.get("citations")
    if isinstance(citations, list):
        out.extend(_citation(c) for c in citations if c is not None)
    return out


def _model_of(info: Any) -> str:
    """The model of a fallback block's ``from`` or ``to`` (BetaFallbackInfo)."""
    return string(info.get("model")) if isinstance(info, dict) else ""


class AnthropicStreamDecoder(SSEJsonDecoder):
    """Turns Messages stream events into StreamChatResponses."""

    __slots__ = ("_model", "_usage", "_tools", "_next_tool")
    source = "anthropic stream"

    def __init__(self) -> None:
        super().__init__()  # complete: message_stop seen
        self._model = ""
        self._usage: pb.Usage | None = None
        self._tools: dict[int, int] = {}  # content block index → tool-call index, for tool_use blocks only
        self._next_tool = 0

    def _skip(self, event: Any) -> bool:
        return bool(event.event == "ping")

    def _event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | list[pb.StreamChatResponse] | None:
        etype = obj.get("type") or name
        if etype == "content_block_delta":
            cd = self._delta(obj.get("index", -1), obj.get("delta") or {})
            return None if cd is None else pb.StreamChatResponse(choices=[cd])
        if etype == "content_block_start":
            block = obj.get("content_block") or {}
            if isinstance(block, dict) and block.get("type") == "fallback":
                return self._fallback(block)
            cds = self._block(obj.get("index", -1), block, whole=False) if isinstance(block, dict) else []
            return pb.StreamChatResponse(choices=cds) if cds else None
        if etype == "message_start":
            first, *more = self._message_start(obj.get("message") or {})  # more: one per fallback hop in it
            if first.model or first.choices or first.HasField("usage"):
                return [first, *more] if more else first
            return more or None
        if etype == "message_delta":
            resp = pb.StreamChatResponse()
            stop = (obj.get("delta") or {}).get("stop_reason")
            if stop:
                resp.choices.append(_finish(stop))
            u = _usage(obj.get("usage"), self._usage)
            if u is not None:
                self._usage = u
                resp.usage.CopyFrom(u)
            return resp if (stop or u is not None) else None
        if etype == "error":
            etype_, msg = error_message(obj, "anthropic")
            raise UpstreamStreamError(msg, error_type=etype_)
        if etype == "message_stop":
            self.complete = True
        return None  # content_block_stop, message_stop, unknown events

    def _delta(self, index: int, delta: dict[str, Any]) -> pb.ChoiceDelta | None:
        """One content_block_delta; kinds this schema does not carry yield nothing."""
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = string(delta.get("text"))
            return pb.ChoiceDelta(index=0, text=text) if text else None
        if dtype == "input_json_delta":
            ti = self._tools.get(index)
            part = string(delta.get("partial_json"))
            if ti is not None and part:
                return pb.ChoiceDelta(index=0, tool_calls=[pb.ToolCallDelta(index=ti, arguments=part)])
            return None
        if dtype == "thinking_delta":
            thinking = string(delta.get("thinking"))
            return pb.ChoiceDelta(index=0, reasoning=thinking) if thinking else None
        if dtype == "signature_delta":
            signature = string(delta.get("signature"))
            return pb.ChoiceDelta(index=0, reasoning_signature=signature) if signature else None
        if dtype == "citations_delta":
            citation = delta.get("citation")
            return None if citation is None else _citation(citation)
        return None

    def _block(self, index: int, block: dict[str, Any], *, whole: bool) -> list[pb.ChoiceDelta]:
        """A content block's start (``whole``: the block complete, as in a unary answer); fallback blocks are
        ``_fallback``'s."""
        btype = block.get("type")
        if btype == "text":
            return _text_deltas(block)
        if btype == "tool_use":
            ti = self._next_tool
            self._next_tool += 1
            self._tools[index] = ti
            tc = pb.ToolCallDelta(index=ti, id=string(block.get("id")), name=string(block.get("name")),
                                  arguments=_tool_arguments(block, whole))
            return [pb.ChoiceDelta(index=0, tool_calls=[tc])]
        if btype in ("thinking", "redacted_thinking"):
            cd = _reasoning_delta(block)
            return [] if cd is None else [cd]
        return []  # server tools and their results, and block kinds this schema does not carry

    def _fallback(self, block: dict[str, Any]) -> pb.StreamChatResponse:
        """A fallback hop: who handed over to whom and why (its trigger, compact JSON), and the model from here."""
        trigger = block.get("trigger")
        resp = pb.StreamChatResponse(fallback=pb.ModelFallback(
            from_model=_model_of(block.get("from")), to_model=_model_of(block.get("to")),
            reason_json="" if trigger is None else compact(trigger)))
        if resp.fallback.to_model:
            self._model = resp.model = resp.fallback.to_model
        return resp

    def _message_start(self, msg: dict[str, Any]) -> list[pb.StreamChatResponse]:
        """The model, the usage so far, and whatever content and stop reason the message already has: one
        response, and one more per fallback hop in the content (the blocks after a hop are the new model's)."""
        out = [pb.StreamChatResponse()]
        model = msg.get("model")
        if model and model != self._model:
            self._model = out[0].model = model
        for i, block in enumerate(msg.get("content") or ()):
            if not isinstance(block, dict):
                continue
            if block.get("type") == "fallback":
                out.append(self._fallback(block))
            else:
                out[-1].choices.extend(self._block(i, block, whole=True))
        stop = msg.get("stop_reason")
        if stop:
            out[-1].choices.append(_finish(stop))
        u = _usage(msg.get("usage"), None)
        if u is not None:
            self._usage = u
            out[-1].usage.CopyFrom(u)
        return out

    def message(self, msg: dict[str, Any]) -> pb.ChatResponse:
        """A whole (unary) message as the stream would have folded: the same block rules for both RPCs."""
        # Choice 0 exists even when the message has no content the schema carries.
        responses = [pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0)])]
        responses += self._message_start(msg)
        return to_chat_response(responses)


class AnthropicAdapter:
    """The Anthropic Messages API."""

    family = "anthropic"

    def build_request(
        self, params: pb.ChatParameters, *, api_base: str, api_key: str, model: str, stream: bool,
        provider: str = "", lease: kpb.IssueKeyLeaseResponse | None = None,
    ) -> UpstreamRequest:
        """The Messages request; the key goes as the lease's auth scheme says (Anthropic's x-api-key by default,
        a bearer token where the lease says so)."""
        system, messages = _convert(params)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": params.max_tokens if params.HasField("max_tokens") else DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            body["system"] = system
        if stream:
            body["stream"] = True
        if params.HasField("temperature"):
            body["temperature"] = params.temperature
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        if params.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": schema(t.parameters_json)}
                for t in params.tools
            ]
        _controls(body, params, model)
        schema_keys = frozenset(body)
        options.merge(body, params.provider_options_json)
        _check_thinking(body, schema_keys)
        return UpstreamRequest("POST", join_url(api_base, "/messages"), self._headers(api_key, stream, lease),
                               dumps(body))

    @staticmethod
    def _headers(api_key: str, stream: bool, lease: kpb.IssueKeyLeaseResponse | None) -> dict[str, str]:
        key_headers, _ = presentation(lease, family=PROVIDER, api_key=api_key)
        return {
            **key_headers,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def parse_response(self, body: bytes) -> pb.ChatResponse:
        obj = loads(body, "anthropic response")
        if not isinstance(obj, dict):
            raise AdapterError("unexpected JSON in anthropic response from upstream")
        if obj.get("type") == "error" or ("error" in obj and "content" not in obj):
            etype, msg = error_message(obj, PROVIDER)
            raise UpstreamStreamError(msg, error_type=etype)
        return AnthropicStreamDecoder().message(obj)
