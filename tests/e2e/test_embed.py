"""Embed end to end: real keyservice on OpenBao, real mTLS gRPC, the local upstream answering OpenAI's
/v1/embeddings and Gemini's :batchEmbedContents (with their batch limits, so splitting is tested against them)."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import grpc
import pytest
import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from devstack.upstream import embedding
from tests.e2e.conftest import System
from tests.e2e.test_proxy import gemini_key, openai_key


def embed_request(org: str, model: str, *texts: str, **kw: object) -> pb.EmbedRequest:
    return pb.EmbedRequest(tenant=pb.Tenant(org_id=org), model=model,
                           inputs=[pb.EmbedInput(text=t) for t in texts], **kw)  # type: ignore[arg-type]


def vectors(reply: pb.EmbedResponse) -> list[list[float]]:
    return [list(e.values) for e in reply.embeddings]


async def test_openai_embeds_with_the_tenants_key_in_its_header_only(system: System) -> None:
    key = openai_key()
    system.upstream.config.keys = {"openai": {key}}
    credential = await system.add_key("acme", "openai", key)
    await system.bind("acme")
    with structlog.testing.capture_logs() as logs:
        reply = await system.chat.Embed(embed_request("acme", "text-embedding-3-small", "alpha", "bravo",
                                                      request_id="e-1"))
    assert vectors(reply) == [embedding("alpha"), embedding("bravo")] and [e.index for e in reply.embeddings] == [0, 1]
    assert (reply.request_id, reply.provider, reply.model) == ("e-1", "openai", "text-embedding-3-small")
    assert (reply.key_source, reply.credential_id) == (pb.KEY_SOURCE_TENANT, credential.credential_id)
    assert reply.usage.input_tokens == 4  # the stand-in's prompt_tokens: 5 // 4 + 1 per text
    [sent] = system.upstream.requests
    assert (sent.path, sent.key_header, sent.key_in_url, sent.authorized) == ("/v1/embeddings", "authorization",
                                                                              False, True)
    assert sent.json == {"model": "text-embedding-3-small", "input": ["alpha", "bravo"], "encoding_format": "base64"}
    assert key not in repr(logs) and key not in str(reply)
    [line] = [e for e in logs if e["event"] == "embed"]
    assert (line["status"], line["provider"], line["input_tokens"]) == ("OK", "openai", 4)


async def test_a_batch_over_openais_limit_is_split_and_rejoined_in_order(system: System) -> None:
    await system.add_key("big", "openai", openai_key())
    await system.bind("big")
    texts = [f"text number {i}" for i in range(2048 + 300)]
    reply = await system.chat.Embed(embed_request("big", "text-embedding-3-small", *texts, dimensions=4))
    assert [len(r.json["input"]) for r in system.upstream.requests] == [2048, 300]  # the stand-in takes <= 2048
    assert all(r.status == 200 and r.json["dimensions"] == 4 for r in system.upstream.requests)
    assert vectors(reply) == [embedding(t, 4) for t in texts]
    assert [e.index for e in reply.embeddings] == list(range(len(texts)))
    assert reply.usage.input_tokens == sum(len(t) // 4 + 1 for t in texts)  # summed over both calls


async def test_gemini_batch_embed_contents_split_at_100_with_task_type_and_dimensions(system: System) -> None:
    key = gemini_key()
    system.upstream.config.keys = {"gemini": {key}}
    await system.add_key("g", "gemini", key)
    await system.bind("g")
    texts = [f"passage {i}" for i in range(250)]
    reply = await system.chat.Embed(embed_request("g", "gemini-embedding-001", *texts, dimensions=4,
                                                  task_type=pb.EMBED_TASK_TYPE_RETRIEVAL_DOCUMENT))
    sent = system.upstream.requests
    assert [len(r.json["requests"]) for r in sent] == [100, 100, 50] and {r.status for r in sent} == {200}
    assert {r.path for r in sent} == {"/v1beta/models/gemini-embedding-001:batchEmbedContents"}
    assert all(r.key_header == "x-goog-api-key" and not r.key_in_url for r in sent)
    assert sent[0].json["requests"][0] == {"model": "models/gemini-embedding-001", "taskType": "RETRIEVAL_DOCUMENT",
                                           "outputDimensionality": 4, "content": {"parts": [{"text": "passage 0"}]}}
    assert vectors(reply) == [embedding(t, 4) for t in texts]
    assert reply.model == "gemini-embedding-001" and not reply.HasField("usage")  # Gemini reports none
    one = await system.chat.Embed(embed_request("g", "text-embedding-004", "alpha"))  # routed to Gemini too
    assert one.provider == "gemini" and vectors(one) == [embedding("alpha")]
    assert system.upstream.requests[-1].path == "/v1beta/models/text-embedding-004:batchEmbedContents"


async def test_a_compatible_provider_gets_float_and_dimensions(system: System) -> None:
    await system.add_key("tg", "together", secrets.token_hex(32))
    await system.bind("tg")
    reply = await system.chat.Embed(embed_request("tg", "togethercomputer/m2-bert-80M-8k-retrieval", "alpha",
                                                  dimensions=4))
    assert reply.provider == "together" and vectors(reply) == [embedding("alpha", 4)]
    [sent] = system.upstream.requests
    assert (sent.json["encoding_format"], sent.json["dimensions"], sent.key_header) == ("float", 4, "authorization")


async def test_mistral_routes_by_model_splits_at_its_limit_and_refuses_dimensions_for_mistral_embed(
        system: System) -> None:
    await system.admin.CreateCredential(kpb.CreateCredentialRequest(
        provider="mistral", scope=kpb.Scope(org_id="eu"), name="main", api_key=secrets.token_hex(16),
        api_base=system.upstream.mistral_base))
    await system.bind("eu")
    reply = await system.chat.Embed(embed_request("eu", "mistral-embed", "alpha"))
    assert reply.provider == "mistral" and vectors(reply) == [embedding("alpha")]
    assert system.upstream.requests[-1].json["encoding_format"] == "base64"
    texts = [f"text {i}" for i in range(600)]  # Mistral takes 512 a request (its 400 code 3210 past them)
    many = await system.chat.Embed(embed_request("eu", "codestral-embed", *texts, dimensions=4))
    assert vectors(many) == [embedding(t, 4) for t in texts]
    sent = [r.json for r in system.upstream.requests[1:]]
    assert sorted(len(r["input"]) for r in sent) == [88, 512] and {r["output_dimension"] for r in sent} == {4}
    system.upstream.requests.clear()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await system.chat.Embed(embed_request("eu", "mistral-embed", "alpha", dimensions=256))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("dimensions: dimensions for mistral-embed")
    assert system.upstream.requests == []


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: setattr(r, "task_type", pb.EMBED_TASK_TYPE_RETRIEVAL_QUERY), "task_type: task_type is not supported"),
    (lambda r: r.inputs.add(image=pb.ImagePart(url="https://example.com/cat.png")),
     "inputs[1].image: embedding an image is not supported by openai"),
    (lambda r: r.ClearField("inputs"), "inputs: "),
])
async def test_refusals_come_before_any_upstream_call(system: System, mutate: Callable[[pb.EmbedRequest], object],
                                                       field: str) -> None:
    await system.add_key("no", "openai", openai_key())
    await system.bind("no")
    r = embed_request("no", "text-embedding-3-small", "alpha")
    mutate(r)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await system.chat.Embed(r)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and (info.value.details() or "").startswith(field)
    assert system.upstream.requests == []


async def test_a_refused_key_fails_over_to_the_next_credential(system: System) -> None:
    good, bad = openai_key(), openai_key()
    system.upstream.config.keys = {"openai": {good}}
    bad_cred = await system.add_key("fo", "openai", bad, name="a-bad")
    good_cred = await system.add_key("fo", "openai", good, name="b-good")
    await system.bind("fo")
    reply = await system.chat.Embed(embed_request("fo", "text-embedding-3-small", "alpha"))
    assert reply.credential_id == good_cred.credential_id and vectors(reply) == [embedding("alpha")]
    refused, served = [r for r in system.upstream.requests if r.path == "/v1/embeddings"]  # keyservice checks too
    assert (refused.status, refused.authorized, served.status) == (401, False, 200)
    reported = await system.admin.GetCredential(kpb.GetCredentialRequest(credential_id=bad_cred.credential_id))
    assert reported.credential.health == kpb.CREDENTIAL_HEALTH_INVALID


async def test_a_provider_429_is_resource_exhausted_with_its_retry_after(system: System) -> None:
    key = openai_key()
    await system.add_key("busy", "openai", key)
    await system.bind("busy")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await system.chat.Embed(embed_request("busy", "fault:429", "alpha", provider="openai"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(info.value.trailing_metadata() or ())["retry-after"] == "7"
    assert key not in (info.value.details() or "")
