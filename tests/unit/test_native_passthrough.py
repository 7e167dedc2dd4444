"""The native passthrough's pure parts: path checks, the allowlist, header filters, the usage tap, the scrubber."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byokcommon.wire import sdk_root
from proxyservice import errors
from proxyservice.native.headers import to_caller, to_provider
from proxyservice.native.paths import PathAllowlist, check_path, upstream_url
from proxyservice.native.scrub import KeyInBody, KeyScrubber
from proxyservice.native.usage_tap import UsageTap

V2 = Path(__file__).resolve().parents[2].parent / "shared" / "conformance-v2"


@pytest.mark.parametrize(("family", "base", "root"), [
    ("openai", "https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("anthropic", "https://api.anthropic.com/v1", "https://api.anthropic.com"),
    ("gemini", "https://generativelanguage.googleapis.com/v1beta", "https://generativelanguage.googleapis.com"),
    ("gemini", "http://127.0.0.1:9/v1beta/", "http://127.0.0.1:9"),
    ("openai", "https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1"),
])
def test_sdk_root(family: str, base: str, root: str) -> None:
    assert sdk_root(family, base) == root


@pytest.mark.parametrize("path", ["/chat/completions", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                                  "/v1/messages", "/files/file-abc%20x/content", "/models/"])
def test_paths_under_the_root_pass(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize("path", ["", "chat", "//evil.example/x", "/a/../b", "/a/%2e%2E/b", "/a/.", "/a%2fb",
                                  "/a%5Cb", "/a\\b", "/a//b", "/http://evil/x", "/a b", "/a\x00", "/a#frag",
                                  "/" + "a" * 3000])
def test_paths_that_could_escape_are_refused(path: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        check_path(path)
    assert caught.value.field == "path"


@given(st.text(alphabet="/.%2fFeE5cCab:", max_size=24))
def test_no_checked_path_climbs_above_the_root(path: str) -> None:
    import posixpath
    from urllib.parse import unquote, urlsplit
    try:
        check_path("/" + path)
    except errors.InvalidArgument:
        return
    url = upstream_url("https://h.example/root", "/" + path, "")  # as the relay joins it: root + path
    parts = urlsplit(url)
    assert parts.hostname == "h.example"
    assert posixpath.normpath(unquote(parts.path)).startswith("/root")  # even once a server decodes it


def test_upstream_url_drops_only_the_key_parameter() -> None:
    assert upstream_url("https://h/v1beta", "/models/m:x", "alt=sse&key=AIzaX&keyring=1") == \
        "https://h/v1beta/models/m:x?alt=sse&keyring=1"
    assert upstream_url("https://h", "/v1/messages", "key=1") == "https://h/v1/messages"


def test_allowlist() -> None:
    allow = PathAllowlist.parse("openai=/chat/completions,/responses*; anthropic=/v1/messages*")
    assert allow.allows("openai", "/chat/completions") and allow.allows("openai", "/responses/resp_1")
    assert not allow.allows("openai", "/files") and not allow.allows("openai", "/chat/completions/x")
    assert allow.allows("gemini", "/anything")  # no entry: unrestricted
    assert allow.allows("anthropic", "/v1/messages/count_tokens")
    for bad in ("openai", "Open AI=/x", "openai=chat", "openai=/a*b"):
        with pytest.raises(ValueError, match="BYOK_HTTP_PATH_ALLOWLIST"):
            PathAllowlist.parse(bad)


def test_headers_toward_the_provider() -> None:
    caller = [("authorization", "Bearer sk-caller"), ("x-api-key", "k"), ("x-goog-api-key", "g"), ("cookie", "c"),
              ("connection", "keep-alive"), ("host", "proxy"), ("x-byok-org", "acme"), ("openai-organization", "o"),
              ("anthropic-version", "2024-01-01"), ("anthropic-beta", "b1"), ("anthropic-beta", "b2"),
              ("content-type", "application/json"), ("accept-encoding", "gzip"), ("proxy-authorization", "p")]
    sent = to_provider(caller, "anthropic", "sk-ant-lease")
    assert sent == {"anthropic-version": "2024-01-01", "anthropic-beta": "b1, b2",
                    "content-type": "application/json", "x-api-key": "sk-ant-lease", "accept-encoding": "identity"}
    assert to_provider(caller, "openai", "sk-lease")["authorization"] == "Bearer sk-lease"
    assert to_provider([], "gemini", "AIzaLease") == {"x-goog-api-key": "AIzaLease", "accept-encoding": "identity"}


def test_headers_toward_the_caller() -> None:
    answer = [("content-type", "text/event-stream"), ("x-request-id", "r1"), ("set-cookie", "s"),
              ("transfer-encoding", "chunked"), ("content-length", "9"), ("retry-after", "2"),
              ("x-ratelimit-remaining-requests", "9"), ("x-debug", "key was sk-lease-123"), ("x-byok-key-source", "x")]
    assert to_caller(answer, "sk-lease-123") == [("content-type", "text/event-stream"), ("x-request-id", "r1"),
                                                ("retry-after", "2"), ("x-ratelimit-remaining-requests", "9")]


def _tap(content_type: str, body: bytes, size: int = 7) -> UsageTap:
    tap = UsageTap(content_type)
    for i in range(0, len(body), size):
        tap.feed(body[i:i + size])
    tap.close()
    return tap


def test_usage_from_each_shape() -> None:
    chat = (b'data: {"model":"gpt-4o","choices":[]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":11,'
            b'"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":'
            b'{"reasoning_tokens":2}}}\n\ndata: [DONE]\n\n')
    assert _tap("text/event-stream", chat).usage.fields() == {
        "input_tokens": 11, "output_tokens": 5, "cached_input_tokens": 3, "reasoning_tokens": 2}
    anthropic = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-x","usage":'
                 b'{"input_tokens":20,"cache_read_input_tokens":8,"cache_creation_input_tokens":4,'
                 b'"output_tokens":1}}}\n\nevent: message_delta\ndata: {"type":"message_delta","usage":'
                 b'{"output_tokens":0}}\n\n')
    tap = _tap("text/event-stream", anthropic)
    assert tap.usage.fields() == {"input_tokens": 20, "output_tokens": 0, "cached_input_tokens": 8,
                                  "cache_creation_input_tokens": 4}  # the last count wins, 0 included
    assert tap.usage.model == "claude-x"
    gemini = json.dumps([{"candidates": [], "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 9,
                                                               "thoughtsTokenCount": 4, "cachedContentTokenCount": 1},
                          "modelVersion": "gemini-2.5-pro"}]).encode()
    tap = _tap("application/json; charset=utf-8", gemini)
    assert tap.usage.fields() == {"input_tokens": 7, "output_tokens": 9, "cached_input_tokens": 1,
                                  "reasoning_tokens": 4}
    assert tap.usage.model == "gemini-2.5-pro"
    responses = (b'event: response.completed\ndata: {"type":"response.completed","response":{"model":"o4",'
                 b'"usage":{"input_tokens":30,"output_tokens":12,"input_tokens_details":{"cached_tokens":10},'
                 b'"output_tokens_details":{"reasoning_tokens":6}}}}\n\n')
    assert _tap("text/event-stream", responses).usage.fields() == {
        "input_tokens": 30, "output_tokens": 12, "cached_input_tokens": 10, "reasoning_tokens": 6}
    assert _tap("application/octet-stream", chat).usage.fields() == {}


@pytest.mark.skipif(not V2.is_dir(), reason="../shared/conformance-v2 is not beside the checkout")
def test_usage_tap_agrees_with_the_recorded_v2_corpus() -> None:
    checked = 0
    for sse in sorted(V2.glob("*/*.sse")):
        expected_file = sse.with_suffix("").with_suffix(".expected.json")
        if not expected_file.is_file() or sse.parent.name == "bedrock":
            continue
        expected = json.loads(expected_file.read_text())
        usage = expected.get("usage")
        if not isinstance(usage, dict) or "input_tokens" not in usage:
            continue
        tap = _tap("text/event-stream", sse.read_bytes(), size=13)
        assert tap.usage.input_tokens == usage["input_tokens"], sse.name
        assert tap.usage.output_tokens == usage.get("output_tokens"), sse.name
        checked += 1
    assert checked > 10


def test_scrubber_masks_a_key_and_stops_on_a_split_one() -> None:
    key = "sk-proj-" + "a1" * 20
    scrub = KeyScrubber(key)
    assert scrub.clean(b"before " + key.encode() + b" after") == b"before " + b"*" * len(key) + b" after"
    assert scrub.clean(b"x" * 100) == b"x" * 100
    split = KeyScrubber(key)
    split.clean(b"data: " + key[:10].encode())
    with pytest.raises(KeyInBody):
        split.clean(key[10:].encode() + b"\n\n")
    tiny = KeyScrubber(key)  # chunks shorter than the key still catch a key spread over several
    with pytest.raises(KeyInBody):
        for i in range(0, len(key), 3):
            tiny.clean(key[i:i + 3].encode())
