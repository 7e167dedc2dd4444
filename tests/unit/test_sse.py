"""The incremental SSE parser: spec cases, and any byte split equals the unsplit parse."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxyservice.sse import MAX_EVENT_BYTES, SSEEvent, SSEEventTooLarge, SSEParser

CORPUS = sorted((Path(__file__).resolve().parent.parent / "data" / "conformance").glob("*/*.sse"))
BODIES = {p.parent.name + "/" + p.stem: p.read_bytes() for p in CORPUS}


def parse(body: bytes, cuts: list[int] | None = None) -> list[SSEEvent]:
    p = SSEParser()
    out: list[SSEEvent] = []
    last = 0
    for c in sorted(set(cuts or [])):
        out += p.feed(body[last:c])
        last = c
    out += p.feed(body[last:])
    return out + p.close()


def test_corpus_present() -> None:
    assert len(BODIES) >= 40


def test_basic_fields() -> None:
    body = b"event: a\ndata: 1\nid: 7\n\ndata:2\n\n: comment\ndata\n\n"
    assert parse(body) == [SSEEvent("a", "1", "7"), SSEEvent("message", "2", "7"), SSEEvent("message", "", "7")]


def test_multiline_data_and_only_one_space_stripped() -> None:
    assert parse(b"data: a\ndata:  b\ndata:c\n\n") == [SSEEvent("message", "a\n b\nc", None)]


@pytest.mark.parametrize("nl", [b"\n", b"\r\n", b"\r"])
def test_line_endings(nl: bytes) -> None:
    body = b"event: x" + nl + b"data: {\"a\": 1}" + nl + nl + b"data: two" + nl + nl
    expected = [SSEEvent("x", '{"a": 1}', None), SSEEvent("message", "two", None)]
    assert parse(body) == expected
    for cut in range(len(body) + 1):  # every single split point, including between \r and \n
        assert parse(body, [cut]) == expected, cut


def test_crlf_split_between_cr_and_lf_does_not_make_an_extra_blank_line() -> None:
    p = SSEParser()
    assert p.feed(b"data: a\r") == []
    assert p.feed(b"\ndata: b\r") == []
    assert p.feed(b"\n\r\n") == [SSEEvent("message", "a\nb", None)]


def test_event_without_data_is_not_dispatched_and_retry_ignored() -> None:
    assert parse(b"event: ping\n\nretry: 10\n\nunknown: z\n\n") == []


def test_close_flushes_final_event_without_blank_line() -> None:
    p = SSEParser()
    assert p.feed(b"data: last") == []
    assert p.close() == [SSEEvent("message", "last", None)]
    assert p.close() == []


def test_bom_stripped_even_when_split() -> None:
    body = "\ufeffdata: é\n\n".encode()
    assert parse(body, [1, 2]) == [SSEEvent("message", "é", None)]


def test_utf8_character_split_across_chunks() -> None:
    body = "data: 日本語 ✓\n\n".encode()
    for cut in range(len(body)):
        assert parse(body, [cut]) == [SSEEvent("message", "日本語 ✓", None)]


def test_id_with_nul_ignored_and_persists() -> None:
    assert parse(b"id: 1\ndata: a\n\nid: 2\x00\ndata: b\n\n") == [
        SSEEvent("message", "a", "1"), SSEEvent("message", "b", "1")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(BODIES)), data=st.data())
def test_any_split_of_corpus_equals_unsplit(name: str, data: st.DataObject) -> None:
    body = BODIES[name]
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=40))
    assert parse(body, cuts) == parse(body)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(BODIES)), nl=st.sampled_from([b"\r\n", b"\r"]), data=st.data())
def test_any_split_with_other_line_endings(name: str, nl: bytes, data: st.DataObject) -> None:
    body = BODIES[name]
    converted = body.replace(b"\n", nl)
    cuts = data.draw(st.lists(st.integers(0, len(converted)), max_size=40))
    assert parse(converted, cuts) == parse(body)


def test_byte_by_byte() -> None:
    body = BODIES["anthropic/incomplete_partial_json_response"]
    assert parse(body, list(range(len(body)))) == parse(body)


def test_an_event_past_the_limit_is_a_clean_error_and_the_buffer_is_dropped() -> None:
    p = SSEParser(max_event_bytes=1000)
    assert p.feed(b"data: " + b"x" * 900) == []
    with pytest.raises(SSEEventTooLarge, match="larger than 1000 bytes"):
        p.feed(b"y" * 200)  # still no blank line: the unfinished event is over the limit
    assert p._buf == b""
    with pytest.raises(SSEEventTooLarge):
        SSEParser(max_event_bytes=1000).feed(b"data: " + b"z" * 1200 + b"\n\n")  # whole, but too big


def test_many_small_events_are_not_limited_by_their_total() -> None:
    p = SSEParser(max_event_bytes=1000)
    events = [e for _ in range(50) for e in p.feed(b"data: " + b"a" * 100 + b"\n\n")]
    assert len(events) == 50 and MAX_EVENT_BYTES == 1 << 20
