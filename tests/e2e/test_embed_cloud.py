"""Embed through the cloud providers end to end: the real keyservice deriving short-lived credentials, the real proxy,
and the cloud stand-ins checking what the providers check (tests/e2e/test_cloud_providers.py's system, imported):
Azure OpenAI deployment embeddings with an api-key and with an Entra ID token, Vertex AI ``:predict`` with the minted
token under the project and location, Bedrock InvokeModel for Titan (one input a call, SigV4-signed with the STS
session) and Cohere (96 texts a call, split and re-joined in order). A refusal per provider reaches no provider."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from byok.proxy.v1 import chat_service_pb2 as pb
from devstack.cloudfakes import CloudRequest
from devstack.upstream import embedding
from tests.e2e import test_cloud_providers as clouds
from tests.e2e.test_cloud_providers import ORG, Cloud, add_entra

cloud = clouds.cloud  # the fixture: the whole system with the cloud stand-ins
TITAN, COHERE = "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"


def embed(model: str, provider: str, *texts: str, **kw: Any) -> pb.EmbedRequest:
    return pb.EmbedRequest(tenant=pb.Tenant(org_id=ORG), model=model, provider=provider,
                           inputs=[pb.EmbedInput(text=t) for t in texts], **kw)


def vectors(reply: pb.EmbedResponse) -> list[list[float]]:
    return [list(e.values) for e in reply.embeddings]


def sent(cloud: Cloud, kind: str) -> list[CloudRequest]:
    return [r for r in cloud.upstream.cloud_requests if r.cloud == kind]


def payload(request: CloudRequest) -> dict[str, Any]:
    value = json.loads(request.body)
    assert isinstance(value, dict)
    return value


async def refused(cloud: Cloud, request: pb.EmbedRequest, field: str) -> None:
    """INVALID_ARGUMENT naming the field, and no request reached any stand-in."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await cloud.chat.Embed(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(field + ":")
    assert cloud.upstream.cloud_requests == []


# ---- Azure OpenAI ---------------------------------------------------------------------------------------------

async def test_azure_embeds_at_its_deployment_with_the_leased_api_key(cloud: Cloud) -> None:
    await cloud.add("azure_openai", "main", {"api_key": cloud.azure_key}, endpoint="https://acme.openai.azure.com",
                    api_version="2024-10-21", deployments=json.dumps({"text-embedding-3-small": "embed-prod"}))
    reply = await cloud.chat.Embed(embed("text-embedding-3-small", "azure_openai", "alpha", "bravo", dimensions=16))
    assert vectors(reply) == [embedding("alpha", 16), embedding("bravo", 16)]
    assert (reply.provider, reply.model, reply.usage.input_tokens) == ("azure_openai", "text-embedding-3-small", 4)
    [call] = sent(cloud, "azure")
    assert call.target == "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21"
    assert call.credential_headers == ("api-key",) and call.status == 200
    assert payload(call)["encoding_format"] == "base64"  # Azure documents it; the stand-in answers in it


async def test_azure_embeds_through_its_v1_api_with_an_entra_token(cloud: Cloud) -> None:
    await add_entra(cloud)
    reply = await cloud.chat.Embed(embed("embed-prod", "azure_openai", "alpha"))
    assert vectors(reply) == [embedding("alpha")] and reply.model == "text-embedding-3-small"
    [call] = sent(cloud, "azure")
    assert (call.target, call.credential_headers, call.status) == ("/openai/v1/embeddings", ("authorization",), 200)
    assert payload(call)["model"] == "embed-prod"


async def test_azure_refuses_dimensions_for_ada_before_any_call(cloud: Cloud) -> None:
    await cloud.add("azure_openai", "main", {"api_key": cloud.azure_key}, endpoint="https://acme.openai.azure.com")
    await refused(cloud, embed("text-embedding-ada-002", "azure_openai", "alpha", dimensions=256), "dimensions")


# ---- Bedrock InvokeModel --------------------------------------------------------------------------------------

async def add_iam(cloud: Cloud) -> str:
    return await cloud.add("bedrock", "iam", {"access_key_id": cloud.pair.access_key_id,
                                              "secret_access_key": cloud.pair.secret_access_key}, region="us-east-1")


async def test_titan_embeds_one_input_a_call_signed_with_the_sts_session(cloud: Cloud) -> None:
    await add_iam(cloud)
    texts = [f"passage {i}" for i in range(6)]
    reply = await cloud.chat.Embed(embed(TITAN, "bedrock", *texts, dimensions=256))
    assert vectors(reply) == [embedding(t, 256) for t in texts] and [e.index for e in reply.embeddings] == [*range(6)]
    assert reply.usage.input_tokens == sum(len(t) // 4 + 1 for t in texts)  # inputTextTokenCount, summed
    calls = sent(cloud, "bedrock")
    assert len(calls) == 6 and {c.status for c in calls} == {200}
    assert {c.target for c in calls} == {"/model/amazon.titan-embed-text-v2%3A0/invoke"}
    assert all(c.signed_by in cloud.sts.sessions and "x-amz-security-token" in c.credential_headers for c in calls)
    assert sorted(payload(c)["inputText"] for c in calls) == sorted(texts)
    assert {(payload(c)["dimensions"], payload(c)["normalize"]) for c in calls} == {(256, True)}


async def test_a_cohere_batch_over_96_is_split_and_rejoined_in_order(cloud: Cloud) -> None:
    await cloud.add("bedrock", "apikey", {"api_key": cloud.bedrock_key}, region="us-east-1")
    texts = [f"document {i}" for i in range(100)]
    reply = await cloud.chat.Embed(embed(COHERE, "bedrock", *texts, task_type=pb.EMBED_TASK_TYPE_RETRIEVAL_DOCUMENT))
    assert vectors(reply) == [embedding(t, 1024) for t in texts]  # the stand-in takes at most 96 a call
    assert [e.index for e in reply.embeddings] == list(range(100)) and not reply.HasField("usage")
    calls = sent(cloud, "bedrock")
    assert sorted(len(payload(c)["texts"]) for c in calls) == [4, 96]
    assert {payload(c)["input_type"] for c in calls} == {"search_document"} and {c.status for c in calls} == {200}
    assert all(c.credential_headers == ("authorization",) and not c.signed_by for c in calls)


async def test_bedrock_refuses_what_its_models_cannot_take_before_any_call(cloud: Cloud) -> None:
    await add_iam(cloud)
    await refused(cloud, embed(TITAN, "bedrock", "alpha", dimensions=384), "dimensions")
    await refused(cloud, embed(COHERE, "bedrock", "alpha"), "task_type")  # Cohere's input_type is required


# ---- Vertex AI :predict ---------------------------------------------------------------------------------------

VERTEX_MODELS = "/v1/projects/byok-test-project/locations/us-central1/publishers/google/models/"


async def add_service_account(cloud: Cloud) -> str:
    return await cloud.add("vertex_ai", "sa", {"service_account_json": cloud.service_account}, location="us-central1")


async def test_vertex_predicts_with_the_minted_token_split_at_250(cloud: Cloud) -> None:
    await add_service_account(cloud)
    texts = [f"query {i}" for i in range(260)]
    reply = await cloud.chat.Embed(embed("text-embedding-005", "vertex_ai", *texts, dimensions=8,
                                         task_type=pb.EMBED_TASK_TYPE_RETRIEVAL_QUERY))
    assert vectors(reply) == [embedding(t, 8) for t in texts] and reply.model == "text-embedding-005"
    assert reply.usage.input_tokens == sum(len(t) // 4 + 1 for t in texts)  # statistics.token_count, summed
    calls = sent(cloud, "vertex")
    assert {c.target for c in calls} == {VERTEX_MODELS + "text-embedding-005:predict"}
    assert sorted(len(payload(c)["instances"]) for c in calls) == [10, 250]
    assert all(c.credential_headers == ("authorization",) and c.status == 200 for c in calls)
    first = next(payload(c) for c in calls if len(payload(c)["instances"]) == 250)
    assert first["instances"][0] == {"content": "query 0", "task_type": "RETRIEVAL_QUERY"}
    assert first["parameters"] == {"outputDimensionality": 8}


async def test_gemini_embedding_on_vertex_is_one_instance_a_call(cloud: Cloud) -> None:
    await add_service_account(cloud)
    reply = await cloud.chat.Embed(embed("gemini-embedding-001", "vertex_ai", "a", "b", "c", dimensions=4))
    assert vectors(reply) == [embedding(t, 4) for t in "abc"]
    assert [len(payload(c)["instances"]) for c in sent(cloud, "vertex")] == [1, 1, 1]


async def test_vertex_refuses_an_image_before_any_call(cloud: Cloud) -> None:
    await add_service_account(cloud)
    request = embed("text-embedding-005", "vertex_ai", "alpha")
    request.inputs.add(image=pb.ImagePart(url="https://example.com/cat.png"))
    await refused(cloud, request, "inputs[1].image")
