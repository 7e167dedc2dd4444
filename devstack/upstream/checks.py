"""Request checks the providers make before answering, each returning the provider's own 400 (or None)."""

from __future__ import annotations

from typing import Any

from devstack.upstream.answers import Response, _bad_request

_THINKING_DOCS = ("https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                  "#max-tokens-and-context-window-size")


def anthropic_thinking(payload: dict[str, Any]) -> Response | None:
    """Anthropic's extended thinking rules: 1024 <= budget_tokens < max_tokens, and no forced tool use."""
    thinking = payload.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return _bad_request("anthropic", "thinking.enabled.budget_tokens: Field required")
    if budget < 1024:
        return _bad_request("anthropic",
                            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    max_tokens = payload.get("max_tokens")
    if isinstance(max_tokens, int) and max_tokens <= budget:
        return _bad_request("anthropic", "`max_tokens` must be greater than `thinking.budget_tokens`. "
                            f"Please consult our documentation at {_THINKING_DOCS}")
    choice = payload.get("tool_choice") or {}
    if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
        return _bad_request("anthropic", "Thinking may not be enabled when tool_choice forces tool use.")
    return None


def responses_input(payload: dict[str, Any]) -> Response | None:
    """The Responses API wants an ``input`` (a string or a list of items) unless it continues a stored response."""
    value = payload.get("input")
    if isinstance(value, str | list) or payload.get("previous_response_id"):
        return None
    return _bad_request("openai", "Missing required parameter: 'input'.")
