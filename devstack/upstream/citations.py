"""Citations (``cite=1``) and Anthropic's server-side fallback block (``fallback=<model>``) in each provider's form.

- OpenAI Chat Completions: ``annotations`` [{type: url_citation, url_citation: {start_index, end_index, title,
  url}}] on the message, and streamed as a delta of their own after the text (as web-search models send them,
  https://platform.openai.com/docs/guides/tools-web-search); the Responses API puts {type: url_citation, start_index,
  end_index, title, url} on the ``output_text`` part and streams ``response.output_text.annotation.added``.
- Anthropic: a ``citations_delta`` event in the text block before its text (https://docs.claude.com/en/docs/
  build-with-claude/citations#streaming-support): a ``char_location`` in the request's first plain-text document, a
  ``page_location`` in its first PDF, else a ``web_search_result_location`` (as after a web search); a whole answer
  carries it in the text block's ``citations``.
- Gemini: ``groundingMetadata`` on the last candidate chunk (https://ai.google.dev/gemini-api/docs/google-search):
  ``webSearchQueries``, ``searchEntryPoint``, ``groundingChunks`` [{web: {uri, title, domain}}] and
  ``groundingSupports`` whose ``segment`` spans the answer text (byte offsets, as Gemini counts them).
- Anthropic fallback (the ``server-side-fallback`` beta, whose content block the SDK types define as
  ``BetaFallbackBlock``): a ``fallback`` block {from: {model}, to: {model}, trigger: {type: refusal, category: null}}
  that arrives as a bare ``content_block_start`` / ``content_block_stop`` pair with no deltas; the text after it is
  the fallback model's, and usage's ``iterations`` end with a ``fallback_message`` entry naming it.
"""

from __future__ import annotations

import base64
from typing import Any

CITED_URL = "https://example.com/alpha"
CITED_TITLE = "Alpha"
CITED_TEXT = "alpha"


def openai_annotations(text: str) -> list[dict[str, Any]]:
    """Chat Completions' url_citation annotations over ``text``."""
    return [{"type": "url_citation", "url_citation": {"start_index": 0, "end_index": len(text), "title": CITED_TITLE,
                                                      "url": CITED_URL}}]


def responses_annotations(text: str) -> list[dict[str, Any]]:
    """The Responses API's url_citation annotations over ``text`` (flat, not nested under ``url_citation``)."""
    return [{"type": "url_citation", "start_index": 0, "end_index": len(text), "title": CITED_TITLE, "url": CITED_URL}]


def _first_document(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The request's first document block (Anthropic's document_index 0: documents are counted across messages)."""
    for m in payload.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "document":
                return block
    return None


def anthropic_citation(payload: dict[str, Any]) -> dict[str, Any]:
    """The citation an Anthropic answer carries: into the request's first document when it has one, else the web."""
    block = _first_document(payload)
    if block is None:
        return {"type": "web_search_result_location", "cited_text": CITED_TEXT, "url": CITED_URL,
                "title": CITED_TITLE, "encrypted_index": base64.b64encode(b"index:0").decode()}
    index = 0
    source = block.get("source") or {}
    title = block.get("title")
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        cited = source["data"][:40]
        return {"type": "char_location", "cited_text": cited, "document_index": index, "document_title": title,
                "start_char_index": 0, "end_char_index": len(cited)}
    return {"type": "page_location", "cited_text": CITED_TEXT, "document_index": index, "document_title": title,
            "start_page_number": 1, "end_page_number": 2}


def gemini_grounding(text: str) -> dict[str, Any]:
    """Gemini's groundingMetadata for an answer of ``text`` grounded in one web page."""
    return {
        "webSearchQueries": [CITED_TEXT],
        "searchEntryPoint": {"renderedContent": f"<div class=\"chip\">{CITED_TEXT}</div>"},
        "groundingChunks": [{"web": {"uri": CITED_URL, "title": CITED_TITLE, "domain": "example.com"}}],
        "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": len(text.encode()), "text": text},
                               "groundingChunkIndices": [0]}],
    }


def fallback_block(requested: str, served: str) -> dict[str, Any]:
    """Anthropic's ``fallback`` content block: ``requested`` declined, ``served`` answers from here on."""
    return {"type": "fallback", "from": {"model": requested}, "to": {"model": served},
            "trigger": {"type": "refusal", "category": None}}
