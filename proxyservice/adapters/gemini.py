"""Google Gemini (Generative Language API) wire family.

Streaming is ``models/{model}:streamGenerateContent?alt=sse``: each event is a whole
GenerateContentResponse (``candidates[].content.parts[]`` with ``text`` or ``functionCall``,
``finishReason``, ``usageMetadata``, ``modelVersion``). The key goes only in ``x-goog-api-key``.
Vertex AI (provider ``vertex_ai``) serves the same API, bodies and streams under a Google Cloud project and location:
``{api_base}/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent?alt=sse``
(api_base ``https://{location}-aiplatform.googleapis.com/v1``, the global endpoint's for ``global``), with the
OAuth2 access token keyservice minted from the tenant's service account as a bearer (the lease's settings and
auth scheme: ``vertex_model_url``).

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
- a prompt blocked by ``promptFeedback.blockReason`` yields choice 0 finishing with that reason;
- a candidate's ``groundingMetadata`` and ``citationMetadata`` (search grounding, recitation sources) become that
  candidate's ``citations_json``: ``{"groundingMetadata": …, "citationMetadata": …}`` with the keys it sent, as sent;
- ``modelVersion`` is the model, sent when first seen and again whenever it changes.

Requests (schema v2), from the Gemini API reference and guides (ai.google.dev/gemini-api/docs):
- Content parts: text ``{text}``; an image or document as bytes, or as a data: URL, is ``{inlineData: {mimeType,
  data}}`` (base64); by https URL ``{fileData: {mimeType?, fileUri}}`` (FileData.mimeType is optional): a Files API
  URI, a YouTube URL, or (file input methods guide, "External URLs") any public or signed https URL, which the API
  fetches itself; models before 2.5 take only the first two, so other URLs are refused for them. A document's
  filename and an image's ``detail`` have no Gemini form and are not sent (per-part ``mediaResolution`` exists only
  in v1alpha; the request-wide ``generationConfig.mediaResolution`` can come through provider options).
  systemInstruction is text only, so media in a system message is refused.
- Reasoning handed back: a part with text is ``{text, thought: true, thoughtSignature?}``; a signature without text
  is an empty-text part carrying it, as Gemini sends them; redacted reasoning has no Gemini form and is refused. A
  history tool call's ``signature`` goes back as its functionCall part's ``thoughtSignature``: the thought
  signatures guide makes that mandatory for Gemini 3 function calling (a 4xx otherwise).
- Tool results: ``functionResponse.response`` from the text as before; images and documents (inline, or a data:
  URL) go in ``functionResponse.parts`` as ``inlineData`` (multimodal function responses, Gemini 3; the Gemini API
  takes no fileData there, so media by https URL is refused, as is media for an older model).
- Reasoning controls: ``generationConfig.thinkingConfig`` with ``includeThoughts: true`` whenever reasoning is set
  (callers want to see it). Gemini 3 takes ``thinkingLevel``; 2.5 takes ``thinkingBudget``; sending both is a 400
  (thinking guide), so effort with budget_tokens is refused. See ``_thinking_config`` for the levels and limits.
- ``response_format``: ``responseMimeType: "application/json"`` and ``responseJsonSchema``, which takes JSON Schema
  as callers write it, where ``responseSchema`` takes only an OpenAPI 3.0 subset (no ``additionalProperties``, no
  type arrays; "If response_schema doesn't process your schema correctly, try response_json_schema"). The two are
  mutually exclusive. The name has no Gemini form; the description becomes the schema's own when it has none.
  ``strict`` has no Gemini switch: a response schema always constrains decoding, so it is accepted and not sent.
- ``tool_choice``: ``toolConfig.functionCallingConfig`` mode AUTO, NONE, ANY (required), ANY with
  ``allowedFunctionNames: [name]`` (a named tool). ``parallel_tool_calls: false`` has no Gemini switch and is
  refused; true is Gemini's behaviour, so nothing is sent. Without tools neither can change the answer: both are
  left out then.
- ``top_p`` → ``topP``, ``seed``, ``presencePenalty``, ``frequencyPenalty`` in generationConfig; then the caller's
  ``provider_options_json`` merged in last (deeply, so its generationConfig keys join ours). A request without the
  v2 fields is the same body as before them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

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
from proxyservice.adapters.partial_args import OpenCall
from proxyservice.adapters.stream import SSEJsonDecoder
from proxyservice.errors import FailedPrecondition

FR = pb.FinishReason
RE = pb.ReasoningEffort
TC = pb.ToolChoiceMode
PROVIDER = "gemini"


def bare_model(model: str) -> str:
    """The model's name without the API's ``models/`` resource prefix (callers may write either)."""
    return model[7:] if model.startswith("models/") else model


def model_path(model: str) -> str:
    """The model's resource path under the API base, its name percent-encoded (it is one path segment)."""
    return "/models/" + quote(bare_model(model), safe="")


# ---- Vertex AI: the same generateContent API under a Google Cloud project and location -------------------------

VERTEX_AI = "vertex_ai"


def vertex_api_base(location: str) -> str:
    """Vertex AI's API root for a location: regional hosts, and the global endpoint's own host for "global"."""
    if location == "global":
        return "https://aiplatform.googleapis.com/v1"
    return f"https://{location}-aiplatform.googleapis.com/v1"


def vertex_model_url(api_base: str, settings: Mapping[str, str], model: str) -> str:
    """``{api_base}/projects/{project}/locations/{location}/publishers/google/models/{model}`` of a Vertex AI
    credential (its ``project`` and ``location`` settings; the location's root when api_base is empty)."""
    project, location = settings.get("project", ""), settings.get("location", "")
    if not project or not location:
        raise FailedPrecondition("the vertex_ai credential's lease has no project and location settings")
    path = (f"/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}"
            f"/publishers/google/models/{quote(bare_model(model), safe='')}")
    return join_url(api_base or vertex_api_base(location), path)


# ---- request: the model's generation, which decides the controls it takes --------------------------------------

_MODEL_NAME = re.compile(r"gemini-(\d+)(?:\.(\d+))?(?:-(flash-lite|flash|pro))?")


@dataclass(frozen=True, slots=True)
class _Model:
    """What a model's name says about the controls it takes: its version (major, minor) and tier. A name that does
    not say (an alias such as gemini-flash-latest, a tuned model) has no version: then nothing model-specific is
    checked and the current API's controls are sent, for the provider to judge."""

    name: str
    version: tuple[int, int] | None = None
    tier: str = ""  # "pro", "flash", "flash-lite", or "" when the name has none

    @classmethod
    def of(cls, model: str) -> _Model:
        name = bare_model(model)
        m = _MODEL_NAME.match(name)
        if m is None:
            return cls(name)
        return cls(name, (int(m[1]), int(m[2] or 0)), m[3] or "")

    def before(self, version: tuple[int, int]) -> bool:
        """Whether the name says the model is older than ``version`` (False when the name does not say)."""
        return self.version is not None and self.version < version


# ---- request: content parts -------------------------------------------------------------------------------------

def _tool_result(content: str) -> dict[str, Any]:
    """functionResponse.response must be an object: a JSON object result as is, anything else wrapped."""
    try:
        value = json.loads(content)
    except ValueError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _inline_data_url(url: str, media_type: str, field: str) -> dict[str, Any]:
    """A data: URL's bytes as inlineData, still base64 as given (validation admits only base64 data: URLs); its own
    media type names them, else the part's."""
    head, _, data = url[5:].partition(",")
    mime = head.split(";", 1)[0] or media_type
    if not mime:
        raise RequestMappingError("a data: URL without a media type needs media_type (Gemini requires one)",
                                  field=f"{field}.url")
    return {"inlineData": {"mimeType": mime, "data": data}}


# Hosts whose URLs every Gemini model takes in fileData: the Files API's and YouTube's.
_GEMINI_FETCHED = ("generativelanguage.googleapis.com", "youtube.com", "www.youtube.com", "m.youtube.com",
                   "youtu.be")


def _file_data(url: str, media_type: str, field: str, model: _Model) -> dict[str, Any]:
    """An https URL as fileData. Gemini 2.5 and later fetch any public or signed https URL themselves; older
    models only Files API and YouTube URLs, so others are refused for them rather than failing upstream."""
    if model.before((2, 5)) and (urlsplit(url).hostname or "") not in _GEMINI_FETCHED:
        raise unsupported(f"{field}.url", PROVIDER,
                          f"a URL other than a Files API or YouTube one on {model.name} (external URLs need 2.5+)")
    ref = {"mimeType": media_type, "fileUri": url} if media_type else {"fileUri": url}
    return {"fileData": ref}


def _media(source: pb.ImagePart | pb.DocumentPart, field: str, model: _Model) -> dict[str, Any]:
    """An image or document part: inlineData for bytes (base64) or a data: URL, fileData for an https URL."""
    if source.data:
        return {"inlineData": {"mimeType": source.media_type, "data": base64.b64encode(source.data).decode("ascii")}}
    if source.url.startswith("data:"):
        return _inline_data_url(source.url, source.media_type, field)
    return _file_data(source.url, source.media_type, field, model)


def _reasoning(r: pb.ReasoningPart, field: str) -> dict[str, Any] | None:
    """Reasoning handed back as Gemini sent it: a thought part with its signature, or (no text) the signature on an
    empty-text part of its own, the way Gemini returns signatures after its thoughts."""
    if r.redacted:
        raise unsupported(f"{field}.redacted", PROVIDER, "redacted reasoning (Gemini has none)")
    if not r.text:
        return {"text": "", "thoughtSignature": r.signature} if r.signature else None
    part: dict[str, Any] = {"text": r.text, "thought": True}
    if r.signature:
        part["thoughtSignature"] = r.signature
    return part


def _function_call(c: pb.ToolCall) -> dict[str, Any]:
    """A history tool call; its signature back on the part, where Gemini 3 requires it."""
    part: dict[str, Any] = {"functionCall": {"name": c.name, "args": arguments_object(c.arguments)}}
    if c.signature:
        part["thoughtSignature"] = c.signature
    return part


class _Contents:
    """The conversation as Gemini wants it: system text apart (systemInstruction), the turns as ``contents``."""

    __slots__ = ("model", "system", "contents", "_names")

    def __init__(self, model: _Model) -> None:
        self.model = model
        self.system: list[str] = []
        self.contents: list[dict[str, Any]] = []
        self._names: dict[str, str] = {}  # tool_call_id → function name, for results that don't repeat it

    def add(self, m: pb.Message, where: str) -> None:
        if m.role == R.ROLE_SYSTEM:
            self.system.append(self._system_text(m, where))
            return
        if m.role == R.ROLE_USER:
            role, parts = "user", (self._parts(m, where) if m.parts else [{"text": m.content}])
        elif m.role == R.ROLE_ASSISTANT:
            role, parts = "model", self._model_turn(m, where)
        elif m.role == R.ROLE_TOOL:
            role, parts = "user", [self._function_response(m, where)]
        else:
            return
        if not parts:
            return
        # Parallel calls' results must share one turn, so consecutive same-role turns are merged.
        if self.contents and self.contents[-1]["role"] == role:
            self.contents[-1]["parts"].extend(parts)
        else:
            self.contents.append({"role": role, "parts": parts})

    def _system_text(self, m: pb.Message, where: str) -> str:
        """A system message's text; its parts may only be text (Gemini's systemInstruction is text only)."""
        if not m.parts:
            return m.content
        texts = []
        for j, part in enumerate(m.parts):
            kind = part.WhichOneof("part") or ""
            if kind != "text":
                raise unsupported(f"{where}.parts[{j}].{kind}", PROVIDER,
                                  f"a {kind} part in a system message (systemInstruction takes text only)")
            texts.append(part.text)
        return "".join(texts)

    def _parts(self, m: pb.Message, where: str) -> list[dict[str, Any]]:
        """A user or assistant message's parts in order; empty text parts carry nothing and are left out."""
        out = []
        for j, part in enumerate(m.parts):
            kind = part.WhichOneof("part") or ""
            field = f"{where}.parts[{j}].{kind}"
            mapped: dict[str, Any] | None
            if kind == "text":
                mapped = {"text": part.text} if part.text else None
            elif kind in ("image", "document"):
                mapped = _media(getattr(part, kind), field, self.model)
            elif kind == "reasoning" and m.role == R.ROLE_ASSISTANT:
                mapped = _reasoning(part.reasoning, field)
            else:  # validation keeps reasoning to assistant messages; refused here all the same
                raise unsupported(field, PROVIDER, f"a {kind or 'empty'} part in this message")
            if mapped is not None:
                out.append(mapped)
        return out

    def _model_turn(self, m: pb.Message, where: str) -> list[dict[str, Any]]:
        """An assistant message: its content (or parts), then its tool calls."""
        if m.parts:
            parts = self._parts(m, where)
        else:
            parts = [{"text": m.content}] if m.content else []
        for c in m.tool_calls:
            self._names[c.id] = c.name
            parts.append(_function_call(c))
        return parts

    def _function_response(self, m: pb.Message, where: str) -> dict[str, Any]:
        """A tool result: the text as ``response``, any media in ``parts`` (multimodal function responses)."""
        name = m.name or self._names.get(m.tool_call_id, "")
        text, media = self._result_parts(m, where) if m.parts else (m.content, [])
        response: dict[str, Any] = {"name": name, "response": _tool_result(text)}
        if media:
            response["parts"] = media
        return {"functionResponse": response}

    def _result_parts(self, m: pb.Message, where: str) -> tuple[str, list[dict[str, Any]]]:
        texts: list[str] = []
        media: list[dict[str, Any]] = []
        for j, part in enumerate(m.parts):
            kind = part.WhichOneof("part") or ""
            field = f"{where}.parts[{j}].{kind}"
            if kind == "text":
                texts.append(part.text)
            elif kind in ("image", "document"):
                media.append(self._result_media(getattr(part, kind), field))
            else:
                raise unsupported(field, PROVIDER, f"a {kind or 'empty'} part in a tool result")
        return "".join(texts), media

    def _result_media(self, source: pb.ImagePart | pb.DocumentPart, field: str) -> dict[str, Any]:
        """Media in a tool result: inline only (the Gemini API has no fileData in function responses), and only
        for Gemini 3 models, the ones its function-calling guide gives multimodal function responses."""
        if self.model.before((3, 0)):
            raise unsupported(field, PROVIDER, f"media in a tool result on {self.model.name} (Gemini 3 takes it)")
        if source.url and not source.url.startswith("data:"):
            raise unsupported(f"{field}.url", PROVIDER, "media by URL in a tool result (function responses take "
                                                        "inline data only)")
        return _media(source, field, self.model)


def _convert(params: pb.ChatParameters, model: _Model) -> tuple[str, list[dict[str, Any]]]:
    """(systemInstruction text, contents) of the conversation."""
    conv = _Contents(model)
    for i, m in enumerate(params.messages):
        conv.add(m, f"parameters.messages[{i}]")
    return "\n\n".join(conv.system), conv.contents


# ---- request: reasoning, structured output, tool choice -----------------------------------------------------------

# Gemini's OpenAI-compatibility guide (ai.google.dev/gemini-api/docs/openai) maps reasoning_effort onto 2.5 thinking
# budgets: low 1,024, medium 8,192, high 24,576 tokens, none 0 (thinking off). It documents none for "minimal".
_EFFORT_BUDGETS: dict[int, int] = {RE.REASONING_EFFORT_NONE: 0, RE.REASONING_EFFORT_LOW: 1024,
                                    RE.REASONING_EFFORT_MEDIUM: 8192, RE.REASONING_EFFORT_HIGH: 24576}
_LEVELS: dict[int, str] = {RE.REASONING_EFFORT_MINIMAL: "minimal", RE.REASONING_EFFORT_LOW: "low",
                           RE.REASONING_EFFORT_MEDIUM: "medium", RE.REASONING_EFFORT_HIGH: "high"}
# The thinking levels of the Gemini 3 models that do not take all four (ai.google.dev/gemini-api/docs/thinking:
# 3 Pro low and high, 3.1 Pro no minimal); the Flash and Flash-Lite models take minimal, low, medium and high.
_LEVELS_OF = {((3, 0), "pro"): ("low", "high"), ((3, 1), "pro"): ("low", "medium", "high")}


@dataclass(frozen=True, slots=True)
class _Budgets:
    """A 2.5 tier's thinkingBudget limits (thinking guide): ``low``–``high``, and 0 (thinking off) where allowed."""

    low: int
    high: int
    off: bool

    def allows(self, n: int) -> bool:
        return self.low <= n <= self.high or (n == 0 and self.off)

    def __str__(self) -> str:
        if not self.off:
            return f"{self.low} to {self.high} (thinking cannot be turned off)"
        return f"0 to {self.high}" if self.low <= 1 else f"0 (off), or {self.low} to {self.high}"


_BUDGETS_2_5 = {"pro": _Budgets(128, 32768, off=False), "flash": _Budgets(1, 24576, off=True),
                "flash-lite": _Budgets(512, 24576, off=True)}


def _thinking_config(r: pb.ReasoningConfig, model: _Model) -> dict[str, Any]:
    """generationConfig.thinkingConfig: includeThoughts always (a caller setting reasoning wants to see it), then
    one control: budget_tokens as thinkingBudget, or the effort as Gemini 3's thinkingLevel / a 2.5 budget. Gemini's
    dynamic budget (-1) is what an unset budget already gets: the model's default."""
    if model.before((2, 5)):
        raise unsupported("parameters.reasoning", PROVIDER, f"thinking on {model.name} (Gemini thinks from 2.5 on)")
    if r.effort and r.HasField("budget_tokens"):
        raise RequestMappingError("set effort or budget_tokens, not both: Gemini takes a thinkingLevel or a "
                                  "thinkingBudget, and both together are refused", field="parameters.reasoning")
    config: dict[str, Any] = {"includeThoughts": True}
    if r.HasField("budget_tokens"):
        config["thinkingBudget"] = _budget(r.budget_tokens, model, "parameters.reasoning.budget_tokens")
    elif r.effort:
        config.update(_effort(r.effort, model))
    return config


def _effort(effort: int, model: _Model) -> dict[str, Any]:
    """An effort level as the model's own control: a 2.5 budget, else a thinkingLevel the model has (NONE, which no
    level expresses, as budget 0 for a model whose name does not say, for the provider to judge)."""
    field = "parameters.reasoning.effort"
    if model.before((3, 0)):
        if effort not in _EFFORT_BUDGETS:
            raise unsupported(field, PROVIDER, f"a minimal effort on {model.name} (Gemini documents 2.5 budgets for "
                                               "none, low, medium and high; set budget_tokens)")
        return {"thinkingBudget": _budget(_EFFORT_BUDGETS[effort], model, field)}
    if effort not in _LEVELS:
        if model.version is None:
            return {"thinkingBudget": 0}
        raise unsupported(field, PROVIDER, f"turning thinking off on {model.name} (Gemini 3 models always think; "
                                           "MINIMAL is the least, where the model has it)")
    level = _LEVELS[effort]
    allowed = _LEVELS_OF.get((model.version or (0, 0), model.tier))
    if allowed is not None and level not in allowed:
        raise unsupported(field, PROVIDER, f"thinking level {level!r} on {model.name} (it takes {', '.join(allowed)})")
    return {"thinkingLevel": level}


def _budget(n: int, model: _Model, field: str) -> int:
    """A thinkingBudget within the model's limits: 2.5's per tier; Gemini 3 still takes a budget (the thinking
    guide: accepted for backwards compatibility) but its Pro models cannot turn thinking off."""
    if model.before((3, 0)):
        limits = _BUDGETS_2_5.get(model.tier)
        if limits is not None and not limits.allows(n):
            raise RequestMappingError(f"must be {limits} for {model.name}", field=field)
    elif n == 0 and model.tier == "pro":
        raise unsupported(field, PROVIDER, f"turning thinking off on {model.name} (Gemini 3 Pro always thinks)")
    return n


def _response_format(f: pb.ResponseFormat) -> dict[str, Any]:
    """JSON output constrained by the caller's JSON Schema (responseJsonSchema: see the module docstring)."""
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    if f.schema_json:
        try:
            schema_obj = json.loads(f.schema_json)
        except ValueError:
            raise RequestMappingError("is not valid JSON", field="parameters.response_format.schema_json") from None
        if not isinstance(schema_obj, dict):
            raise RequestMappingError("must be a JSON object", field="parameters.response_format.schema_json")
        if f.description and "description" not in schema_obj:
            schema_obj = {**schema_obj, "description": f.description}
        config["responseJsonSchema"] = schema_obj
    return config


_MODES: dict[int, str] = {TC.TOOL_CHOICE_MODE_AUTO: "AUTO", TC.TOOL_CHOICE_MODE_NONE: "NONE",
                          TC.TOOL_CHOICE_MODE_REQUIRED: "ANY", TC.TOOL_CHOICE_MODE_TOOL: "ANY"}


def _tool_config(c: pb.ToolChoice) -> dict[str, Any] | None:
    """toolConfig.functionCallingConfig; a named tool is ANY limited to it (allowedFunctionNames)."""
    mode = _MODES.get(c.mode)
    if mode is None:
        return None
    calling: dict[str, Any] = {"mode": mode}
    if c.mode == TC.TOOL_CHOICE_MODE_TOOL:
        calling["allowedFunctionNames"] = [c.name]
    return {"functionCallingConfig": calling}


def _generation_config(params: pb.ChatParameters, model: _Model) -> dict[str, Any]:
    """generationConfig: v1's sampling fields, then v2's, each only when the caller set it."""
    config: dict[str, Any] = {}
    if params.HasField("temperature"):
        config["temperature"] = params.temperature
    if params.HasField("max_tokens"):
        config["maxOutputTokens"] = params.max_tokens
    if params.stop:
        config["stopSequences"] = list(params.stop)
    for name, key in (("top_p", "topP"), ("seed", "seed"), ("presence_penalty", "presencePenalty"),
                      ("frequency_penalty", "frequencyPenalty")):
        if params.HasField(name):
            config[key] = getattr(params, name)
    if params.HasField("response_format"):
        config.update(_response_format(params.response_format))
    if params.HasField("reasoning"):
        config["thinkingConfig"] = _thinking_config(params.reasoning, model)
    return config


def _usage(obj: dict[str, Any]) -> pb.Usage | None:
    u = obj.get("usageMetadata")
    if not isinstance(u, dict) or not any(k.endswith("TokenCount") for k in u):
        return None
    return usage(u.get("promptTokenCount"), u.get("candidatesTokenCount"), reasoning=u.get("thoughtsTokenCount"),
                 cached=u.get("cachedContentTokenCount"))


# A candidate's own fields that cite or ground its answer, passed on as sent (in this order).
_CITATION_KEYS = ("groundingMetadata", "citationMetadata")


def _citations(cand: dict[str, Any]) -> str:
    """The candidate's grounding and citation metadata as compact JSON of the keys it sent ("" when none)."""
    cited = {key: cand[key] for key in _CITATION_KEYS if cand.get(key) is not None}
    return compact(cited) if cited else ""


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
        if cited := _citations(cand):
            deltas.delta().citations_json = cited
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
        provider: str = "", lease: kpb.IssueKeyLeaseResponse | None = None,
    ) -> UpstreamRequest:
        """The generateContent request; every v2 field is sent only when set, provider options merged last. A Vertex
        AI lease's request goes under its project and location, with its token (``lease``: module docstring)."""
        target = _Model.of(model)
        system, contents = _convert(params, target)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if params.tools:
            body["tools"] = [{"functionDeclarations": [
                {"name": t.name, "description": t.description, "parameters": schema(t.parameters_json)}
                for t in params.tools
            ]}]
        if params.tools:  # without tools neither control can change the answer: left out then, not refused
            if params.HasField("tool_choice") and (choice := _tool_config(params.tool_choice)):
                body["toolConfig"] = choice
            if params.HasField("parallel_tool_calls") and not params.parallel_tool_calls:
                raise unsupported("parameters.parallel_tool_calls", PROVIDER,
                                  "turning parallel tool calls off (Gemini has no switch for it)")
        config = _generation_config(params, target)
        if config:
            body["generationConfig"] = config
        options.merge(body, params.provider_options_json)
        suffix = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
        if (lease.provider if lease is not None else provider) == VERTEX_AI:
            if lease is None:
                raise FailedPrecondition("a vertex_ai request needs its lease's project and location settings")
            url = vertex_model_url(api_base, lease.settings, model) + suffix
        else:
            url = join_url(api_base, model_path(model) + suffix)
        headers, _ = presentation(lease, family="gemini", api_key=api_key, provider=provider)
        return UpstreamRequest("POST", url, {**headers, "content-type": "application/json"}, dumps(body))

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
