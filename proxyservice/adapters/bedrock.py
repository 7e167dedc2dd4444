"""Amazon Bedrock Converse wire family: one API for every Bedrock model (Claude, Llama, Nova, Mistral, …).

``POST {api_base}/model/{modelId}/converse`` answers one JSON ``ConverseResponse``; ``/converse-stream`` answers an
AWS event stream (``application/vnd.amazon.eventstream``): binary messages, each a prelude (lengths and CRC32),
headers (``:message-type`` event | exception | error, ``:event-type``, ``:exception-type``), a JSON payload and a
message CRC32. The framing is decoded by botocore's own ``EventStreamBuffer`` (CRCs checked), fed whatever bytes
arrive, so a message split anywhere decodes the same; each payload is then one event of ``ConverseStreamOutput``
(the shapes of botocore's bedrock-runtime service model):

- ``contentBlockStart`` with ``start.toolUse`` (toolUseId, name) opens a tool call; ``contentBlockDelta`` carries
  ``delta.text``, ``delta.toolUse.input`` (argument fragments, joined as sent), ``delta.reasoningContent`` (``text``,
  a ``signature``, or ``redactedContent``: base64, kept exactly as sent) or ``delta.citation`` (one citation as
  ``citations_json`` ``{"citation": …}``); a tool call's index is its order among the toolUse blocks;
- ``messageStop`` has the ``stopReason`` (the provider's own finish reason) and completes the answer;
  ``metadata`` has ``usage``: inputTokens, outputTokens, cacheReadInputTokens (cached input) and
  cacheWriteInputTokens (cache writes); Converse reports no reasoning count, so reasoning_tokens stays unset;
- an ``exception`` message (throttlingException, modelStreamErrorException, validationException, …) or an ``error``
  message is the provider's in-stream error. The stream names no model: the model is the request's.
The unary ``ConverseResponse`` (``output.message.content`` blocks, ``stopReason``, ``usage``) folds through the same
rules as the stream.

Requests (schema v2), as Converse documents them (botocore's ConverseRequest shape):
- ``system`` text blocks; ``messages`` alternating user/assistant (consecutive turns of one role merged; tool
  results are ``toolResult`` blocks of a user turn, their parts text, image and document blocks).
- Content parts: images ``{image: {format: png|jpeg|gif|webp, source: {bytes}}}``; documents ``{document: {format,
  name, source: {bytes}}}`` of the formats Converse lists (pdf, csv, doc, docx, xls, xlsx, html, txt, md). Converse
  takes media as bytes (or from S3), never by https URL, so a remote URL is refused; a data: URL goes as bytes. A
  document's name may hold only letters, digits, single spaces, hyphens, parentheses and square brackets: the
  caller's filename is used without its extension and with any other character made a hyphen ("document-N" when
  it gives none), and Converse wants a text block beside a document, so a message with a document and no text is
  refused. Reasoning handed back is ``{reasoningContent: {reasoningText: {text, signature}}}`` or
  ``{reasoningContent: {redactedContent}}``, as it came; history tool calls are ``toolUse`` blocks.
- ``inferenceConfig`` maxTokens, temperature, topP, stopSequences; ``toolConfig`` tools (``toolSpec`` name,
  description, ``inputSchema.json``) and ``toolChoice`` auto | any (required) | tool; Converse has no "none" choice,
  no parallel-calls switch, no seed and no penalties: those are refused. Without tools neither tool control is sent.
- ``outputConfig.textFormat`` json_schema for structured outputs (the schema as JSON text, with its name and
  description); ``strict`` has nothing to switch.
- Reasoning on Claude models is Anthropic's own thinking, with Anthropic's budgets and limits (the Messages API
  adapter's rules: a budget, or an effort level as adaptive thinking with ``outputConfig.effort`` on Claude 4.6 and
  later), put in ``additionalModelRequestFields.thinking``, Bedrock's place for a model's own fields. Other Bedrock
  models each have their own switch (or none), so reasoning controls are refused for them; provider options reach
  them.
- ``provider_options_json``: keys Converse itself has (guardrailConfig, performanceConfig, requestMetadata,
  serviceTier, promptVariables, additionalModelResponseFieldPaths, …) merge into the request; any other key is the
  model's own and merges into ``additionalModelRequestFields`` (e.g. ``{"top_k": 40}``). Never overriding.

The credential: a SigV4 lease's temporary AWS credentials sign the request as upstream sends it (``sigv4``); a
Bedrock API key is a bearer token (byokcommon/wire.py).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import to_chat_response
from proxyservice.adapters import options

# Claude on Bedrock takes the Messages API's thinking controls with the same budgets and limits: one rule for both.
from proxyservice.adapters.anthropic import claude_version
from proxyservice.adapters.anthropic import thinking_controls as anthropic_thinking
from proxyservice.adapters.base import (
    AdapterError,
    R,
    RequestMappingError,
    UpstreamRequest,
    UpstreamStreamError,
    add_turn,
    arguments_object,
    compact,
    dumps,
    join_url,
    json_object,
    normalise_finish,
    presentation,
    safe_text,
    schema,
    string,
    unsupported,
    usage,
)
from proxyservice.errors import FailedPrecondition

PROVIDER = "bedrock"
FAMILY = "bedrock"
STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

# ---- request: content parts ---------------------------------------------------------------------------------

_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf", "text/csv": "csv", "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html", "text/plain": "txt", "text/markdown": "md",
}
# The part kinds each role's content takes (Converse: images and documents only in user turns and tool results).
_KINDS = {"system": ("text",), "user": ("text", "image", "document"), "assistant": ("text", "reasoning"),
          "tool": ("text", "image", "document")}
_PLACES = {"system": "a system message", "user": "a user message", "assistant": "an assistant message",
           "tool": "a tool result"}
_NAME_MAX = 200  # DocumentBlock.name: 1..200 characters


def _bytes_source(source: pb.ImagePart | pb.DocumentPart, field: str, formats: dict[str, str], what: str
                  ) -> dict[str, Any]:
    """``{format, source: {bytes}}`` of media given inline (bytes, or a base64 data: URL), in a format Converse
    lists; a remote URL is refused (Converse reads media from the request or S3 only)."""
    if source.data:
        media_type, data = source.media_type, base64.b64encode(source.data).decode("ascii")
    elif source.url.startswith("data:"):
        header, _, data = source.url[5:].partition(",")
        media_type = source.media_type or header.split(";", 1)[0]
    else:
        raise unsupported(f"{field}.url", PROVIDER, f"{what} by URL (Converse takes media inline, as bytes)")
    fmt = formats.get(media_type)
    if fmt is None:
        where = f"{field}.media_type" if source.media_type else f"{field}.url"
        raise unsupported(where, PROVIDER, f"{what} of type {media_type!r} (it takes {', '.join(formats)})")
    return {"format": fmt, "source": {"bytes": data}}


def document_name(filename: str, number: int) -> str:
    """A name Converse accepts for a document (see the module docstring): the filename without its extension, each
    character it does not allow made a hyphen, runs of spaces made one; "document-<number>" for none."""
    stem = filename.rsplit(".", 1)[0] if "." in filename[1:] else filename
    kept = "".join(" " if c.isspace() else c if c.isascii() and (c.isalnum() or c in "-()[]") else "-" for c in stem)
    name = " ".join(kept.split())[:_NAME_MAX].strip()
    return name or f"document-{number}"


class _Documents:
    """Names the request's documents: each unique, as Converse wants them told apart."""

    def __init__(self) -> None:
        self._names: set[str] = set()

    def name(self, filename: str) -> str:
        base = document_name(filename, len(self._names) + 1)
        name, n = base, 1
        while name in self._names:
            n += 1
            name = f"{base[:_NAME_MAX - 8]} ({n})"
        self._names.add(name)
        return name


def _reasoning_block(r: pb.ReasoningPart) -> dict[str, Any]:
    """Reasoning handed back as it came: redacted content (base64, as sent), or the text with its signature."""
    if r.redacted:
        return {"reasoningContent": {"redactedContent": r.redacted}}
    text: dict[str, Any] = {"text": r.text}
    if r.signature:
        text["signature"] = r.signature
    return {"reasoningContent": {"reasoningText": text}}


class _Turns:
    """The request's system blocks and alternating messages, built part by part."""

    def __init__(self) -> None:
        self.system: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self._documents = _Documents()

    def _part(self, part: pb.ContentPart, field: str, role: str) -> dict[str, Any] | None:
        kind = part.WhichOneof("part") or ""
        where = f"{field}.{kind}" if kind else field
        if kind not in _KINDS[role]:
            raise unsupported(where, PROVIDER, f"a {kind or 'content'} part in {_PLACES[role]}")
        if kind == "text":
            return {"text": part.text} if part.text else None
        if kind == "image":
            return {"image": _bytes_source(part.image, where, _IMAGE_FORMATS, "an image")}
        if kind == "document":
            block = _bytes_source(part.document, where, _DOCUMENT_FORMATS, "a document")
            return {"document": {"format": block["format"], "name": self._documents.name(part.document.filename),
                                 "source": block["source"]}}
        return _reasoning_block(part.reasoning)

    def _content(self, m: pb.Message, where: str, role: str) -> list[dict[str, Any]]:
        """A message's content blocks: its parts when it has them (they replace content), else its text."""
        if not m.parts:
            return [{"text": m.content}] if m.content else []
        blocks = [b for j, p in enumerate(m.parts) if (b := self._part(p, f"{where}.parts[{j}]", role)) is not None]
        if role == "user" and any("document" in b for b in blocks) and not any("text" in b for b in blocks):
            raise RequestMappingError("need a text part beside a document: Converse requires one in the message",
                                      field=f"{where}.parts")
        return blocks

    def add(self, m: pb.Message, where: str) -> None:
        if m.role == R.ROLE_SYSTEM:
            self.system += self._content(m, where, "system")
            return
        if m.role == R.ROLE_USER:
            role, blocks = "user", self._content(m, where, "user")
        elif m.role == R.ROLE_ASSISTANT:
            role = "assistant"
            blocks = self._content(m, where, "assistant") + [
                {"toolUse": {"toolUseId": c.id, "name": c.name, "input": arguments_object(c.arguments)}}
                for c in m.tool_calls]
        elif m.role == R.ROLE_TOOL:
            content = self._content(m, where, "tool") if m.parts else [{"text": m.content}]
            role, blocks = "user", [{"toolResult": {"toolUseId": m.tool_call_id, "content": content}}]
        else:
            return
        add_turn(self.messages, role, "content", blocks)


# ---- request: the controls ----------------------------------------------------------------------------------

_TOOL_CHOICES = {pb.TOOL_CHOICE_MODE_AUTO: "auto", pb.TOOL_CHOICE_MODE_REQUIRED: "any",
                 pb.TOOL_CHOICE_MODE_TOOL: "tool"}
_NO_FIELD = (("seed", "a sampling seed"), ("presence_penalty", "a presence penalty"),
             ("frequency_penalty", "a frequency penalty"))
# ConverseRequest's own members (botocore's bedrock-runtime model); provider options with another name are the
# model's own fields.
CONVERSE_FIELDS = frozenset({"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                             "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
                             "requestMetadata", "performanceConfig", "serviceTier", "outputConfig"})


def _tool_config(params: pb.ChatParameters) -> dict[str, Any] | None:
    """toolConfig: the tools and the choice among them; None without tools (then no tool control can matter)."""
    if not params.tools:
        return None
    tools = []
    for t in params.tools:
        spec: dict[str, Any] = {"name": t.name, "inputSchema": {"json": schema(t.parameters_json)}}
        if t.description:  # a NonEmptyString where given
            spec["description"] = t.description
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    mode = params.tool_choice.mode
    if mode == pb.TOOL_CHOICE_MODE_NONE:
        raise unsupported("parameters.tool_choice", PROVIDER,
                          "tool choice none (Converse has auto, any and a named tool; send no tools instead)")
    if mode in _TOOL_CHOICES:
        kind = _TOOL_CHOICES[mode]
        config["toolChoice"] = {kind: {"name": params.tool_choice.name} if kind == "tool" else {}}
    if params.HasField("parallel_tool_calls") and not params.parallel_tool_calls:
        raise unsupported("parameters.parallel_tool_calls", PROVIDER,
                          "turning parallel tool calls off (Converse has no switch for it)")
    return config


_INFERENCE_FIELDS = (("max_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"))


def _inference_config(params: pb.ChatParameters) -> dict[str, Any]:
    """inferenceConfig: each sampling field only when the caller set it."""
    config: dict[str, Any] = {key: getattr(params, name) for name, key in _INFERENCE_FIELDS if params.HasField(name)}
    if params.stop:
        config["stopSequences"] = list(params.stop)
    return config


def _reasoning(params: pb.ChatParameters, model: str, inference: dict[str, Any], extra: dict[str, Any],
               output: dict[str, Any]) -> None:
    """Claude's thinking (see the module docstring) into its Converse places; refused for other models."""
    if claude_version(model) is None:
        raise unsupported("parameters.reasoning", PROVIDER,
                          f"reasoning controls for {model[:80]!r} (Converse takes them for Claude models; other "
                          "models' own switches go in provider_options_json)")
    messages_body: dict[str, Any] = {}
    anthropic_thinking(messages_body, params, model)
    if "thinking" in messages_body:
        extra["thinking"] = messages_body["thinking"]
    effort = messages_body.get("output_config", {}).get("effort")
    if effort:
        output["effort"] = effort
    if "max_tokens" in messages_body:
        inference["maxTokens"] = messages_body["max_tokens"]


def _text_format(f: pb.ResponseFormat) -> dict[str, Any]:
    """outputConfig.textFormat: Converse takes the JSON schema as text, with its name and description."""
    try:
        value = json.loads(f.schema_json)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise RequestMappingError("must be a JSON object", field="parameters.response_format.schema_json")
    definition: dict[str, Any] = {"schema": f.schema_json}
    if f.name:
        definition["name"] = f.name
    if f.description:
        definition["description"] = f.description
    return {"type": "json_schema", "structure": {"jsonSchema": definition}}


def _merge_options(body: dict[str, Any], options_json: str) -> None:
    """The caller's options: Converse's own fields into the request, the model's fields into
    additionalModelRequestFields (never overriding what the request's own fields set)."""
    given = options.parse(options_json)
    if not given:
        return
    ours = {k: v for k, v in given.items() if k in CONVERSE_FIELDS}
    models = {k: v for k, v in given.items() if k not in CONVERSE_FIELDS}
    if ours:
        options.merge(body, json.dumps(ours))
    if models:
        options.merge(body.setdefault("additionalModelRequestFields", {}), json.dumps(models))


def converse_body(params: pb.ChatParameters, model: str) -> dict[str, Any]:
    """The ConverseRequest body for ``model`` (the model id itself goes in the URL)."""
    turns = _Turns()
    for i, m in enumerate(params.messages):
        turns.add(m, f"parameters.messages[{i}]")
    for name, what in _NO_FIELD:
        if params.HasField(name):
            raise unsupported(f"parameters.{name}", PROVIDER, what)
    body: dict[str, Any] = {"messages": turns.messages}
    if turns.system:
        body["system"] = turns.system
    inference = _inference_config(params)
    extra: dict[str, Any] = {}
    output: dict[str, Any] = {}
    if params.HasField("reasoning"):
        _reasoning(params, model, inference, extra, output)
    if params.HasField("response_format"):
        output["textFormat"] = _text_format(params.response_format)
    if inference:
        body["inferenceConfig"] = inference
    tools = _tool_config(params)
    if tools is not None:
        body["toolConfig"] = tools
    if extra:
        body["additionalModelRequestFields"] = extra
    if output:
        body["outputConfig"] = output
    _merge_options(body, params.provider_options_json)
    return body


def model_path(model: str, stream: bool) -> str:
    """``/model/{modelId}/converse[-stream]``, the id percent-encoded whole (a ``:`` or an ARN's ``/`` included), as
    botocore encodes a URI label."""
    return f"/model/{quote(model, safe='')}/{'converse-stream' if stream else 'converse'}"


# ---- response -----------------------------------------------------------------------------------------------

def _usage(u: Any) -> pb.Usage | None:
    if not isinstance(u, dict):
        return None
    return usage(u.get("inputTokens"), u.get("outputTokens"), cached=u.get("cacheReadInputTokens"),
                 cache_creation=u.get("cacheWriteInputTokens"))


def _finish(stop: str) -> pb.ChoiceDelta:
    return pb.ChoiceDelta(index=0, provider_finish_reason=stop, finish_reason=normalise_finish(stop))


def _reasoning_delta(r: Any) -> pb.ChoiceDelta | None:
    """A reasoningContent delta (``text``, ``signature`` or ``redactedContent``) or whole block (``reasoningText``
    {text, signature}, ``redactedContent``)."""
    if not isinstance(r, dict):
        return None
    whole = r.get("reasoningText")
    source = whole if isinstance(whole, dict) else r
    cd = pb.ChoiceDelta(index=0, reasoning=string(source.get("text")),
                        reasoning_signature=string(source.get("signature")),
                        redacted_reasoning=string(r.get("redactedContent")))
    return cd if (cd.reasoning or cd.reasoning_signature or cd.redacted_reasoning) else None


def _citation(citation: Any) -> pb.ChoiceDelta:
    return pb.ChoiceDelta(index=0, citations_json=compact({"citation": citation}))


class ConverseStreamDecoder:
    """One ConverseStream body: AWS event-stream messages (botocore's EventStreamBuffer) to StreamChatResponses."""

    __slots__ = ("_buffer", "_tools", "_next_tool", "complete")
    source = "bedrock stream"

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._tools: dict[int, int] = {}  # content block index → tool-call index, for toolUse blocks only
        self._next_tool = 0
        self.complete = False  # messageStop seen

    def feed(self, chunk: bytes) -> list[pb.StreamChatResponse]:
        self._buffer.add_data(chunk)
        out: list[pb.StreamChatResponse] = []
        try:
            for message in self._buffer:
                resp = self._message(message)
                if resp is not None:
                    out.append(resp)
        except ParserError:
            raise AdapterError("malformed event stream from bedrock upstream", partial=out) from None
        except AdapterError as e:
            e.partial = out
            raise
        return out

    def close(self) -> list[pb.StreamChatResponse]:
        # A message cut short stays in the buffer and completes nothing: the answer is then not complete.
        return []

    def _message(self, message: EventStreamMessage) -> pb.StreamChatResponse | None:
        headers = message.headers
        kind = headers.get(":message-type")
        if kind == "exception":
            etype = str(headers.get(":exception-type", "exception"))
            obj = _payload(message, self.source)
            raise UpstreamStreamError(f"bedrock upstream error {safe_text(etype, 60)}: "
                                      f"{safe_text(obj.get('message') or obj.get('Message') or '')}",
                                      error_type=etype)
        if kind == "error":
            code = str(headers.get(":error-code", "error"))
            raise UpstreamStreamError(f"bedrock upstream error {safe_text(code, 60)}: "
                                      f"{safe_text(headers.get(':error-message', ''))}", error_type=code)
        if kind != "event":
            return None
        return self.event(str(headers.get(":event-type", "")), _payload(message, self.source))

    def event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | None:
        """One ConverseStreamOutput event's payload as a response (None for those that carry nothing here)."""
        if name == "contentBlockDelta":
            cd = self._delta(obj.get("contentBlockIndex", -1), obj.get("delta"))
            return None if cd is None else pb.StreamChatResponse(choices=[cd])
        if name == "contentBlockStart":
            start = obj.get("start")
            tool = start.get("toolUse") if isinstance(start, dict) else None
            if not isinstance(tool, dict):
                return None
            tc = self._open_tool(obj.get("contentBlockIndex", -1), tool)
            return pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, tool_calls=[tc])])
        if name == "messageStop":
            self.complete = True
            stop = string(obj.get("stopReason"))
            return pb.StreamChatResponse(choices=[_finish(stop)]) if stop else None
        if name == "metadata":
            u = _usage(obj.get("usage"))
            return None if u is None else pb.StreamChatResponse(usage=u)
        return None  # messageStart, contentBlockStop, events this schema does not carry

    def _open_tool(self, index: Any, tool: dict[str, Any], arguments: str = "") -> pb.ToolCallDelta:
        ti = self._next_tool
        self._next_tool += 1
        self._tools[index] = ti
        return pb.ToolCallDelta(index=ti, id=string(tool.get("toolUseId")), name=string(tool.get("name")),
                                arguments=arguments)

    def _delta(self, index: Any, delta: Any) -> pb.ChoiceDelta | None:
        if not isinstance(delta, dict):
            return None
        if "text" in delta:
            text = string(delta.get("text"))
            return pb.ChoiceDelta(index=0, text=text) if text else None
        if "toolUse" in delta:
            ti = self._tools.get(index)
            tool = delta.get("toolUse")
            part = string(tool.get("input")) if isinstance(tool, dict) else ""
            if ti is None or not part:
                return None
            return pb.ChoiceDelta(index=0, tool_calls=[pb.ToolCallDelta(index=ti, arguments=part)])
        if "reasoningContent" in delta:
            return _reasoning_delta(delta.get("reasoningContent"))
        if "citation" in delta:
            return _citation(delta.get("citation"))
        return None

    def whole(self, obj: dict[str, Any]) -> pb.ChatResponse:
        """A ConverseResponse folded by the same rules as the stream (choice 0 exists even when empty)."""
        responses = [pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0)])]
        output = obj.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        for i, block in enumerate(content if isinstance(content, list) else ()):
            if isinstance(block, dict):
                responses += [pb.StreamChatResponse(choices=[cd]) for cd in self._block(i, block)]
        stop = string(obj.get("stopReason"))
        if stop:
            responses.append(pb.StreamChatResponse(choices=[_finish(stop)]))
        u = _usage(obj.get("usage"))
        if u is not None:
            responses.append(pb.StreamChatResponse(usage=u))
        return to_chat_response(responses)

    def _block(self, index: int, block: dict[str, Any]) -> list[pb.ChoiceDelta]:
        """A whole content block of a unary answer."""
        if "text" in block:
            text = string(block.get("text"))
            return [pb.ChoiceDelta(index=0, text=text)] if text else []
        if "toolUse" in block:
            tool = block["toolUse"] if isinstance(block["toolUse"], dict) else {}
            args = tool.get("input")
            tc = self._open_tool(index, tool, compact(args if args is not None else {}))
            return [pb.ChoiceDelta(index=0, tool_calls=[tc])]
        if "reasoningContent" in block:
            cd = _reasoning_delta(block.get("reasoningContent"))
            return [] if cd is None else [cd]
        if "citationsContent" in block:
            return _citations_content(block.get("citationsContent"))
        return []


def _citations_content(cited: Any) -> list[pb.ChoiceDelta]:
    """A citationsContent block: its generated text, then each of its citations."""
    if not isinstance(cited, dict):
        return []
    out = [pb.ChoiceDelta(index=0, text=text) for part in cited.get("content") or ()
           if isinstance(part, dict) and (text := string(part.get("text")))]
    out += [_citation(c) for c in cited.get("citations") or () if c is not None]
    return out


def _payload(message: EventStreamMessage, source: str) -> dict[str, Any]:
    return json_object(message.payload, source) if message.payload else {}


class BedrockAdapter:
    """The Bedrock Converse API."""

    family = FAMILY

    def build_request(
        self, params: pb.ChatParameters, *, api_base: str, api_key: str, model: str, stream: bool,
        provider: str = "", lease: kpb.IssueKeyLeaseResponse | None = None,
    ) -> UpstreamRequest:
        """The Converse request, presented as the lease says: signed with its session credentials (SigV4) or with
        a Bedrock API key as a bearer token (without a lease: ``api_key``, a bearer)."""
        body = converse_body(params, model)
        if lease is None and not api_key:  # a SigV4 lease whose session credentials were not handed over
            raise FailedPrecondition("the bedrock request needs its lease's session credentials (aws_sigv4), which "
                                     "this proxy's servicer did not pass to the adapter")
        headers, sigv4 = presentation(lease, family=FAMILY, api_key=api_key, provider=provider)
        headers = {**headers, "content-type": "application/json",
                   "accept": STREAM_CONTENT_TYPE if stream else "application/json"}
        return UpstreamRequest("POST", join_url(api_base, model_path(model, stream)), headers, dumps(body), sigv4)

    def stream_decoder(self) -> ConverseStreamDecoder:
        return ConverseStreamDecoder()

    def parse_response(self, body: bytes) -> pb.ChatResponse:
        obj = json_object(body, "bedrock response")
        if "output" not in obj and ("message" in obj or "Message" in obj):
            raise UpstreamStreamError(f"bedrock upstream error: {safe_text(obj.get('message') or obj['Message'])}")
        return ConverseStreamDecoder().whole(obj)
