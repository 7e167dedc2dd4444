"""Request checks the providers make before answering, each returning the provider's own error (or None).

`refusal` runs the ones for a request's family and kind, then the content-part checks of `media`. What each
provider is documented (or observed) to refuse:
- Anthropic validates its body strictly: a top-level field the Messages API does not define gets 400
  invalid_request_error "<field>: Extra inputs are not permitted" (the fields are those of the API reference's
  ``MessageCreateParams``, GA and beta, plus the sampling fields older models take); ``output_format`` (the
  structured-outputs beta) only with ``anthropic-beta: structured-outputs-2025-11-13``. Extended thinking
  (https://docs.claude.com/en/docs/build-with-claude/extended-thinking): ``thinking.type`` one of enabled, disabled,
  adaptive, between_tools; with enabled, 1024 <= budget_tokens < max_tokens and no forced tool use; with thinking
  on, ``temperature`` only 1, ``top_p`` only in [0.95, 1], no ``top_k``.
- OpenAI (https://platform.openai.com/docs/api-reference/chat/create): ``tool_choice`` and ``parallel_tool_calls``
  only with ``tools``; ``response_format`` of type text, json_object (the messages must say "json") or json_schema
  (a name; under ``strict`` the schema rules of `structured.openai_strict_problem`, as for strict function tools).
  Mistral's route skips these (its own 422 for unknown fields runs first, in the server).
- Gemini (https://ai.google.dev/api/generate-content#generationconfig): Google's JSON parser refuses a field
  ``generationConfig`` or ``thinkingConfig`` does not define ("Invalid JSON payload received. Unknown name …");
  ``thinkingLevel`` only on Gemini 3 models and never together with ``thinkingBudget``
  (https://ai.google.dev/gemini-api/docs/thinking), and one of MINIMAL, LOW, MEDIUM, HIGH, XHIGH.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devstack.upstream import media
from devstack.upstream.answers import Response, _bad_request, _gemini_invalid, _openai_invalid
from devstack.upstream.structured import openai_strict_problem
from devstack.upstream.wire import proto_field, snake

_THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
ANTHROPIC_FIELDS = frozenset({
    "model", "messages", "max_tokens", "stream", "system", "metadata", "stop_sequences", "temperature", "top_k",
    "top_p", "tools", "tool_choice", "thinking", "output_config", "service_tier", "container", "cache_control",
    "inference_geo", "diagnostics", "speed", "user_profile_id", "workspace_id",
    # beta fields (sent with their anthropic-beta headers)
    "mcp_servers", "context_management", "fallbacks", "fallback_credit_token", "compaction", "billing_policy",
    "thread",
})
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
ANTHROPIC_THINKING_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
GEMINI_GENERATION_FIELDS = frozenset({
    "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "responseModalities",
    "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
    "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers", "speechConfig",
    "thinkingConfig", "imageConfig", "mediaResolution", "audioTimestamp", "enableAffectiveDialog",
    "modelSelectionConfig", "routingConfig", "responseFormat", "audioTranscriptionConfig", "translationConfig",
})
GEMINI_THINKING_FIELDS = frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"})
GEMINI_THINKING_LEVELS = ("MINIMAL", "LOW", "MEDIUM", "HIGH", "XHIGH")


# ---- Anthropic ------------------------------------------------------------------------------------

def anthropic_fields(payload: dict[str, Any], headers: dict[str, str]) -> Response | None:
    """Anthropic's strict body: an unknown top-level field (or the beta ``output_format`` without its beta) is a 400."""
    betas = headers.get("anthropic-beta", "")
    for name in payload:
        if name not in ANTHROPIC_FIELDS and not (name == "output_format" and STRUCTURED_OUTPUTS_BETA in betas):
            return _bad_request("anthropic", f"{name}: Extra inputs are not permitted")
    return None


def _thinking_sampling(payload: dict[str, Any]) -> Response | None:
    """With thinking on, Anthropic takes no temperature but 1, no top_p below 0.95 and no top_k."""
    docs = f"Please consult our documentation at {_THINKING_DOCS}#feature-compatibility"
    temperature, top_p = payload.get("temperature"), payload.get("top_p")
    if temperature is not None and temperature != 1:
        return _bad_request("anthropic", f"`temperature` may only be set to 1 when thinking is enabled. {docs}")
    if top_p is not None and not 0.95 <= top_p <= 1:
        return _bad_request("anthropic", f"`top_p` must be greater than or equal to 0.95 or unset when thinking is "
                            f"enabled. {docs}")
    if payload.get("top_k") is not None:
        return _bad_request("anthropic", f"`top_k` must be unset when thinking is enabled. {docs}")
    return None


def anthropic_thinking(payload: dict[str, Any]) -> Response | None:
    """Anthropic's extended thinking rules (see the module docstring)."""
    thinking = payload.get("thinking")
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ANTHROPIC_THINKING_TYPES:
        tags = ", ".join(f"'{t}'" for t in ANTHROPIC_THINKING_TYPES)
        return _bad_request("anthropic", f"thinking: Input tag '{kind}' found using 'type' does not match any of the "
                            f"expected tags: {tags}")
    if kind in ("disabled", "between_tools"):
        return None
    assert isinstance(thinking, dict)
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int):
            return _bad_request("anthropic", "thinking.enabled.budget_tokens: Field required")
        if budget < 1024:
            return _bad_request("anthropic",
                                "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        max_tokens = payload.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens <= budget:
            return _bad_request("anthropic", "`max_tokens` must be greater than `thinking.budget_tokens`. "
                                f"Please consult our documentation at {_THINKING_DOCS}"
                                "#max-tokens-and-context-window-size")
    choice = payload.get("tool_choice") or {}
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return _bad_request("anthropic", "Thinking may not be enabled when tool_choice forces tool use.")
    return _thinking_sampling(payload)


def anthropic_output(payload: dict[str, Any]) -> Response | None:
    """``output_config.format`` (or the beta ``output_format``) must be a json_schema format with a schema."""
    for name, fmt in (("output_config.format", (payload.get("output_config") or {}).get("format")),
                      ("output_format", payload.get("output_format"))):
        if fmt is None:
            continue
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            kind = fmt.get("type") if isinstance(fmt, dict) else None
            return _bad_request("anthropic", f"{name}: Input tag '{kind}' found using 'type' does not match any of "
                                "the expected tags: 'json_schema'")
        if not isinstance(fmt.get("schema"), dict):
            return _bad_request("anthropic", f"{name}.json_schema.schema: Field required")
    return None


# ---- OpenAI ---------------------------------------------------------------------------------------

def _needs_tools(payload: dict[str, Any]) -> Response | None:
    if payload.get("tools"):
        return None
    for name in ("tool_choice", "parallel_tool_calls"):
        if payload.get(name) is not None:
            return _openai_invalid(f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are "
                                   "specified.", name, None)
    return None


def _mentions_json(payload: dict[str, Any]) -> bool:
    return any("json" in str(m.get("content")).lower() for m in payload.get("messages") or () if isinstance(m, dict))


def openai_response_format(payload: dict[str, Any]) -> Response | None:
    """Chat Completions' ``response_format`` rules (see the module docstring)."""
    fmt = payload.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return _openai_invalid(f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and "
                               "'json_schema'.", "response_format.type")
    if kind == "json_object" and not _mentions_json(payload):
        return _openai_invalid("'messages' must contain the word 'json' in some form, to use 'response_format' of "
                               "type 'json_object'.", "messages", None)
    if kind != "json_schema":
        return None
    spec = fmt.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return _openai_invalid("Missing required parameter: 'response_format.json_schema.name'.",
                               "response_format.json_schema.name", "missing_required_parameter")
    problem = openai_strict_problem(spec.get("schema")) if spec.get("strict") else ""
    if problem:
        return _openai_invalid(f"Invalid schema for response_format '{spec['name']}': {problem}", "response_format",
                               None)
    return None


def openai_strict_tools(payload: dict[str, Any]) -> Response | None:
    """A strict function tool's parameters follow the same strict-mode schema rules."""
    for i, tool in enumerate(payload.get("tools") or ()):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(fn, dict) and fn.get("strict"):
            problem = openai_strict_problem(fn.get("parameters"))
            if problem:
                return _openai_invalid(f"Invalid schema for function '{fn.get('name')}': {problem}",
                                       f"tools[{i}].function.parameters", "invalid_function_parameters")
    return None


def responses_input(payload: dict[str, Any]) -> Response | None:
    """The Responses API wants an ``input`` (a string or a list of items) unless it continues a stored response."""
    value = payload.get("input")
    if isinstance(value, str | list) or payload.get("previous_response_id"):
        return None
    return _bad_request("openai", "Missing required parameter: 'input'.")


def responses_format(payload: dict[str, Any]) -> Response | None:
    """The Responses API's ``text.format``: under ``strict`` its schema follows the strict-mode rules."""
    fmt = (payload.get("text") or {}).get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not fmt.get("strict", True):
        return None
    problem = openai_strict_problem(fmt.get("schema"))
    if problem:
        return _openai_invalid(f"Invalid schema for response_format '{fmt.get('name')}': {problem}",
                               "text.format.schema", "invalid_json_schema")
    return None


# ---- Gemini ---------------------------------------------------------------------------------------

def _unknown_field(obj: Any, known: frozenset[str], where: str) -> Response | None:
    if not isinstance(obj, dict):
        return None
    snakes = {snake(k) for k in known}
    for name in obj:
        if name not in known and name not in snakes:
            message = f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
            return _gemini_invalid(message, where)
    return None


def gemini_config(model: str, payload: dict[str, Any]) -> Response | None:
    """Gemini's generationConfig and thinkingConfig rules (see the module docstring)."""
    config = proto_field(payload, "generationConfig")
    thinking = proto_field(config, "thinkingConfig")
    refused = _unknown_field(config, GEMINI_GENERATION_FIELDS, "generation_config") or _unknown_field(
        thinking, GEMINI_THINKING_FIELDS, "generation_config.thinking_config")
    if refused is not None or not isinstance(thinking, dict):
        return refused
    level = proto_field(thinking, "thinkingLevel")
    if level is None:
        return None
    if proto_field(thinking, "thinkingBudget") is not None:
        return _gemini_invalid("Unable to submit request because thinking_budget and thinking_level are not "
                               "supported together.")
    if str(level).upper() not in GEMINI_THINKING_LEVELS:
        field = "generation_config.thinking_config.thinking_level"
        return _gemini_invalid(f"Invalid value at '{field}' (type.googleapis.com/google.ai.generativelanguage.v1beta."
                               f"ThinkingConfig.ThinkingLevel), \"{level}\"", field)
    if not model.startswith("gemini-3"):
        return _gemini_invalid("Thinking level is not supported for this model.")
    return None


# ---- all of them ----------------------------------------------------------------------------------

def refusal(family: str, kind: str, provider: str, model: str, payload: dict[str, Any],
            headers: dict[str, str]) -> Response | None:
    """The provider's refusal of this request before it answers, or None (see the module docstring)."""
    base = model.partition("?")[0]
    checks: list[Callable[[], Response | None]]
    if family == "anthropic":
        checks = [lambda: anthropic_fields(payload, headers), lambda: anthropic_thinking(payload),
                  lambda: anthropic_output(payload), lambda: media.anthropic_refusal(payload)]
    elif family == "gemini":
        checks = [lambda: gemini_config(base, payload), lambda: media.gemini_refusal(base, payload)] \
            if kind == "chat" else []
    elif kind == "responses":
        checks = [lambda: responses_input(payload), lambda: responses_format(payload)]
    elif kind == "chat" and provider == "mistral":
        checks = [lambda: media.openai_refusal(payload, provider)]
    elif kind == "chat":
        checks = [lambda: _needs_tools(payload), lambda: openai_response_format(payload),
                  lambda: openai_strict_tools(payload), lambda: media.openai_refusal(payload, provider)]
    else:
        checks = []
    for check in checks:
        refused = check()
        if refused is not None:
            return refused
    return None
