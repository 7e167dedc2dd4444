"""The OpenAI Responses API (``POST /v1/responses``): `ResponsesGenerator` writes a generated answer as one
``response`` object, or as the API's typed server-sent events (``response.created``, ``response.in_progress``,
per output item ``response.output_item.added`` … ``response.output_item.done``, then ``response.completed``, or
``response.incomplete`` when ``max_output_tokens`` cut it short), each carrying a ``sequence_number``.

Output items: a ``reasoning`` item when the request sets ``reasoning.effort`` (its tokens are counted, its
content is not shown, as OpenAI does); then a ``function_call`` of the first function tool when the request has
``tools`` (unless ``tool_choice`` is ``"none"``; a named ``tool_choice`` picks the function), else a ``message``
with the generated text (a JSON document for a ``text.format`` json_schema; with ``cite=1`` its output_text carries
url_citation annotations, streamed as ``response.output_text.annotation.added``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from devstack.upstream.answers import _Opts
from devstack.upstream.citations import responses_annotations
from devstack.upstream.frames import TOOL_ARGS, _Generator, sse_event


class ResponsesGenerator(_Generator):
    """A generated answer in the Responses API's shapes."""

    def __init__(self, model: str, payload: dict[str, Any], opts: _Opts) -> None:
        wants_tool = opts.tool or payload.get("tool_choice") != "none"
        super().__init__("openai", model, payload, dataclasses.replace(opts, tool=wants_tool), kind="responses")
        self.created = int(time.time())
        self._seq = 0

    # -- the objects
    def _status(self) -> str:
        return "incomplete" if self.truncated else "completed"

    def _usage(self) -> dict[str, Any]:
        inp, out = self.input_tokens + self.cached, self.n + self.thoughts
        return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": self.cached, "cache_write_tokens": 0},
                "output_tokens": out, "output_tokens_details": {"reasoning_tokens": self.thoughts},
                "total_tokens": inp + out}

    def _items(self) -> list[dict[str, Any]]:
        """The finished output items."""
        items: list[dict[str, Any]] = []
        if self.thoughts:
            items.append({"id": "rs_" + self.id, "type": "reasoning", "summary": []})
        if self.calls_tool():
            items.append({"id": "fc_" + self.id, "type": "function_call", "status": "completed",
                          "arguments": "".join(TOOL_ARGS), "call_id": "call_" + self.id[:12], "name": self.tool})
        else:
            items.append({"id": "msg_" + self.id, "type": "message", "status": self._status(), "role": "assistant",
                          "content": [self._text_part(self.text)]})
        return items

    def _text_part(self, text: str) -> dict[str, Any]:
        """An output_text part; with ``cite=1`` its finished form carries the url_citation annotations."""
        notes = responses_annotations(text) if self.opts.cite and text else []
        return {"type": "output_text", "annotations": notes, "logprobs": [], "text": text}

    def _response(self, done: bool) -> dict[str, Any]:
        p = self.payload
        status = self._status() if done else "in_progress"
        return {
            "id": "resp_" + self.id, "object": "response", "created_at": self.created, "status": status,
            "background": False, "completed_at": int(time.time()) if status == "completed" else None, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": p.get("instructions"), "max_output_tokens": p.get("max_output_tokens"),
            "max_tool_calls": None, "model": self.model, "output": self._items() if done else [],
            "parallel_tool_calls": p.get("parallel_tool_calls", True),
            "previous_response_id": p.get("previous_response_id"),
            "reasoning": {"effort": (p.get("reasoning") or {}).get("effort"), "summary": None},
            "service_tier": "default", "store": p.get("store", True), "temperature": p.get("temperature", 1.0),
            "text": {"format": (p.get("text") or {}).get("format") or {"type": "text"}, "verbosity": "medium"},
            "tool_choice": p.get("tool_choice", "auto"),
            "tools": p.get("tools") or [], "top_p": p.get("top_p", 1.0), "truncation": "disabled",
            "usage": self._usage() if done else None, "user": None, "metadata": p.get("metadata") or {}}

    def whole(self) -> dict[str, Any]:
        return self._response(done=True)

    # -- the stream
    def _event(self, name: str, /, **fields: Any) -> bytes:
        obj = {"type": name, "sequence_number": self._seq, **fields}
        self._seq += 1
        return sse_event(name, obj)

    def error_frame(self, message: str) -> bytes:
        return self._event("error", code="server_error", message=message, param=None)

    def _frames(self) -> Iterator[bytes]:
        self._seq = 0
        yield self._event("response.created", response=self._response(done=False))
        yield self._event("response.in_progress", response=self._response(done=False))
        for index, item in enumerate(self._items()):
            yield from self._item_events(index, item)
        yield self._event("response.incomplete" if self.truncated else "response.completed",
                          response=self._response(done=True))

    def _item_events(self, index: int, item: dict[str, Any]) -> Iterator[bytes]:
        ev, at = self._event, {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            yield ev("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "content": []})
            part = {**at, "content_index": 0}
            yield ev("response.content_part.added", **part, part=self._text_part(""))
            for piece in self.pieces:
                yield ev("response.output_text.delta", **part, delta=piece, logprobs=[])
            text = self.text
            for i, note in enumerate(self._text_part(text)["annotations"]):
                yield ev("response.output_text.annotation.added", **part, annotation_index=i, annotation=note)
            yield ev("response.output_text.done", **part, text=text, logprobs=[])
            yield ev("response.content_part.done", **part, part=self._text_part(text))
        elif item["type"] == "function_call":
            yield ev("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "arguments": ""})
            for piece in TOOL_ARGS:
                yield ev("response.function_call_arguments.delta", **at, delta=piece)
            yield ev("response.function_call_arguments.done", **at, arguments=item["arguments"], name=item["name"])
        else:
            yield ev("response.output_item.added", output_index=index, item=item)
        yield ev("response.output_item.done", output_index=index, item=item)
