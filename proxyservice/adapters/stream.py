"""The shell the three stream decoders share: SSE framing, one JSON object per event, and on an error the
responses already decoded from the same chunk handed along (`AdapterError.partial`), so none is lost.

A decoder subclasses `SSEJsonDecoder` and gives only its event handling: `_event(name, obj)` for each
event's JSON object (a response, a list of them, or None), and `_skip(event)` for events that carry no JSON
(OpenAI's `[DONE]`, Anthropic's `ping`). `complete` turns true once the provider said the answer is whole.
"""

from __future__ import annotations

from typing import Any

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.adapters.base import AdapterError, loads
from proxyservice.sse import SSEParser


class SSEJsonDecoder:
    """One streamed response body; stateful, one per response."""

    __slots__ = ("_sse", "complete")
    source = "stream"  # named in errors: "unexpected JSON in <source> from upstream"

    def __init__(self) -> None:
        self._sse = SSEParser()
        self.complete = False

    def feed(self, chunk: bytes) -> list[pb.StreamChatResponse]:
        return self._decode(self._sse.feed(chunk))

    def close(self) -> list[pb.StreamChatResponse]:
        return self._decode(self._sse.close())

    def _decode(self, events: list[Any]) -> list[pb.StreamChatResponse]:
        out: list[pb.StreamChatResponse] = []
        for ev in events:
            if self._skip(ev):
                continue
            try:
                obj = loads(ev.data, self.source)
                if not isinstance(obj, dict):
                    raise AdapterError(f"unexpected JSON in {self.source} from upstream")
                resp = self._event(ev.event, obj)
            except AdapterError as e:
                e.partial = out
                raise
            if isinstance(resp, list):
                out.extend(resp)
            elif resp is not None:
                out.append(resp)
        return out

    def _skip(self, event: Any) -> bool:
        """True for an event without JSON data (it may still change the decoder's state)."""
        return False

    def _event(self, name: str, obj: dict[str, Any]) -> pb.StreamChatResponse | list[pb.StreamChatResponse] | None:
        """The response(s) one event makes: usually one or none; several where one event holds several steps (an
        Anthropic turn resumed whole in message_start, split at each model fallback)."""
        raise NotImplementedError
