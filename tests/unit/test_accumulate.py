"""Folding streams back into answers (proxyservice.accumulate): what one upstream read's responses merge into,
and the citations and model fallbacks a whole answer keeps."""

from __future__ import annotations

import json

from byok.proxy.v1 import chat_service_pb2 as pb
from proxyservice.accumulate import accumulate_v2, coalesce, to_chat_response


def delta(text: str = "", citations_json: str = "") -> pb.StreamChatResponse:
    return pb.StreamChatResponse(choices=[pb.ChoiceDelta(index=0, text=text, citations_json=citations_json)])


def test_one_read_merges_into_one_message_keeping_order_and_the_last_model_and_usage() -> None:
    merged = coalesce([delta("a"), pb.StreamChatResponse(model="m1"), delta("b"),
                       pb.StreamChatResponse(model="m2", usage=pb.Usage(input_tokens=1, output_tokens=2))])
    assert len(merged) == 1
    assert [c.text for c in merged[0].choices] == ["a", "b"]
    assert merged[0].model == "m2" and merged[0].usage.output_tokens == 2


def test_a_fallback_starts_a_message_of_its_own_so_the_earlier_models_text_stays_before_it() -> None:
    fallback = pb.ModelFallback(from_model="claude-opus-4-5", to_model="claude-sonnet-4-5", reason_json="{}")
    responses = [delta("before"), pb.StreamChatResponse(model="claude-sonnet-4-5", fallback=fallback),
                 delta("after"), delta("!")]
    merged = coalesce(responses)
    assert [[c.text for c in m.choices] for m in merged] == [["before"], ["after", "!"]]
    assert not merged[0].HasField("fallback") and merged[1].fallback == fallback
    assert merged[1].model == "claude-sonnet-4-5"
    assert coalesce([]) == []


def test_citations_and_fallbacks_reach_the_whole_answer_in_order() -> None:
    cite1, cite2 = json.dumps({"citation": {"url": "https://a"}}), json.dumps({"citation": {"url": "https://b"}})
    fallback = pb.ModelFallback(from_model="a", to_model="b")
    stream = [delta("x", citations_json=cite1), pb.StreamChatResponse(model="b", fallback=fallback),
              delta("y", citations_json=cite2)]
    reply = to_chat_response(stream, "anthropic")
    assert list(reply.choices[0].citations_json) == [cite1, cite2]
    assert list(reply.fallbacks) == [fallback] and reply.model == "b"
    folded = accumulate_v2(stream, "anthropic")
    assert folded["choices"][0]["citations"] == [{"citation": {"url": "https://a"}}, {"citation": {"url": "https://b"}}]
    assert folded["fallbacks"] == [("a", "b")]
