"""Embeddings: routing of embedding model names, the Embed request's checks, each family's request (what maps and
what is refused, by field), reading answers (by index, base64 or floats, malformed ones refused whole), batch
splitting and re-joining, and the servicer's bounded, all-or-nothing calls with keyservice and the provider
stubbed."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from typing import Any

import httpx
import pytest
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from devstack.cloudfakes.bedrock import aws_error
from devstack.cloudfakes.bedrock_invoke import invoke
from devstack.cloudfakes.vertex import predict
from devstack.upstream.embeddings import embedding, gemini_embeddings, openai_embeddings
from keyservice.providers import PROVIDERS, provider_for_model
from proxyservice import embeddings as E
from proxyservice import errors
from proxyservice.adapters.base import AdapterError, RequestMappingError, UpstreamRequest
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.service import ChatServicer
from proxyservice.upstream import UpstreamFailure, UpstreamResponse

KEY = "sk-test-" + "k" * 20


def request(*texts: str, **kw: Any) -> pb.EmbedRequest:
    return pb.EmbedRequest(tenant=pb.Tenant(org_id="acme"), model=kw.pop("model", "text-embedding-3-small"),
                           inputs=[pb.EmbedInput(text=t) for t in texts], **kw)


def target(provider: str = "openai", family: str = "openai", model: str = "text-embedding-3-small",
           api_base: str = "") -> E.Target:
    """A lease's target, at the provider's own api_base unless told (openai_compatible: a server of its own)."""
    spec = PROVIDERS.get(provider)
    base = api_base or (spec.default_api_base if spec and spec.default_api_base else "https://llm.example.com/v1")
    return E.Target(family, provider, base, KEY, model)


def body(call: E.EmbedCall) -> dict[str, Any]:
    return json.loads(call.request.body)


def f32(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


# ---- routing -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "provider"), [
    ("gemini-embedding-001", "gemini"), ("text-embedding-004", "gemini"), ("embedding-001", "gemini"),
    ("models/text-embedding-004", "gemini"), ("text-embedding-3-small", "openai"), ("text-embedding-3-large", "openai"),
    ("text-embedding-ada-002", "openai"), ("text-davinci-003", "openai"), ("mistral-embed", "mistral"),
    ("codestral-embed", "mistral"), ("codestral-embed-2505", "mistral"),
])
def test_embedding_models_route_to_their_provider(model: str, provider: str) -> None:
    assert provider_for_model(model).name == provider


# ---- the request's checks ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.tenant.ClearField("org_id"), "tenant.org_id"),
    (lambda r: setattr(r.tenant, "project_id", "../x"), "tenant.project_id"),
    (lambda r: r.ClearField("model"), "model"),
    (lambda r: setattr(r, "model", "bad model"), "model"),
    (lambda r: setattr(r, "provider", "Open AI"), "provider"),
    (lambda r: setattr(r, "credential_id", "cred_x"), "credential_id"),
    (lambda r: r.ClearField("inputs"), "inputs"),
    (lambda r: r.inputs.add(), "inputs[1]"),
    (lambda r: r.inputs.add(text=""), "inputs[1].text"),
    (lambda r: setattr(r, "dimensions", 0), "dimensions"),
    (lambda r: setattr(r, "task_type", 99), "task_type"),
    (lambda r: setattr(r, "request_id", "r" * 129), "request_id"),
])
def test_bad_embed_requests_name_the_field(mutate: Any, field: str) -> None:
    r = request("alpha")
    mutate(r)
    with pytest.raises(errors.InvalidArgument) as info:
        E.validate_embed_request(r)
    assert info.value.field == field and str(info.value).startswith(field + ": ")


def test_a_good_request_passes_and_an_image_is_left_to_the_provider() -> None:
    r = request("alpha", dimensions=256, task_type=pb.EMBED_TASK_TYPE_RETRIEVAL_QUERY)
    r.inputs.add(image=pb.ImagePart(url="https://example.com/a.png"))
    E.validate_embed_request(r)


# ---- the OpenAI family's request ----------------------------------------------------------------------------

def test_openai_request_asks_for_base64_and_sends_nothing_unset() -> None:
    [call] = E.build_calls(request("alpha", "bravo"), target())
    assert (call.request.method, call.request.url) == ("POST", "https://api.openai.com/v1/embeddings")
    assert call.request.body == (b'{"model":"text-embedding-3-small","input":["alpha","bravo"],'
                                 b'"encoding_format":"base64"}')
    assert call.request.headers["authorization"] == f"Bearer {KEY}" and KEY not in call.request.url
    assert KEY not in repr(call) and (call.start, call.count) == (0, 2)


@pytest.mark.parametrize(("provider", "api_base", "fmt", "dims_field"), [
    ("openai", "https://api.openai.com/v1", "base64", "dimensions"),
    ("mistral", "https://api.mistral.ai/v1", "base64", "output_dimension"),
    ("openai_compatible", "https://api.mistral.ai/v1", "base64", "output_dimension"),  # Mistral by its host
    ("together", "https://api.together.xyz/v1", "float", "dimensions"),
    ("fireworks", "https://api.fireworks.ai/inference/v1", "float", "dimensions"),
    ("openai_compatible", "https://llm.example.com/v1", "float", "dimensions"),
])
def test_openai_family_dimensions_and_encoding_per_provider(provider: str, api_base: str, fmt: str,
                                                             dims_field: str) -> None:
    model = "codestral-embed" if "mistral" in api_base else "some-embedder"
    [call] = E.build_calls(request("alpha", dimensions=256, model=model), target(provider, api_base=api_base,
                                                                                 model=model))
    assert body(call) == {"model": model, "input": ["alpha"], "encoding_format": fmt, dims_field: 256}


@pytest.mark.parametrize(("provider", "model", "kw", "field"), [
    ("openai", "text-embedding-3-small", {"task_type": pb.EMBED_TASK_TYPE_CLUSTERING}, "task_type"),
    ("mistral", "mistral-embed", {"task_type": pb.EMBED_TASK_TYPE_CLUSTERING}, "task_type"),
    ("openai", "text-embedding-ada-002", {"dimensions": 256}, "dimensions"),
    ("mistral", "mistral-embed", {"dimensions": 256}, "dimensions"),
])
def test_openai_family_refusals_name_the_field(provider: str, model: str, kw: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestMappingError) as info:
        E.build_calls(request("alpha", model=model, **kw), target(provider, model=model))
    assert info.value.field == field and f"not supported by {provider}" in str(info.value)


def test_an_image_input_is_refused_naming_it_for_every_family() -> None:
    r = request("alpha")
    r.inputs.add(image=pb.ImagePart(data=b"\x89PNG", media_type="image/png"))
    for t in (target(), target("gemini", "gemini", "gemini-embedding-001")):
        with pytest.raises(RequestMappingError) as info:
            E.build_calls(r, t)
        assert info.value.field == "inputs[1].image" and "embedding an image" in str(info.value)


def test_anthropic_has_no_embeddings_and_an_unknown_family_is_failed_precondition() -> None:
    with pytest.raises(RequestMappingError) as info:
        E.build_calls(request("alpha", model="claude-3-5-haiku"), target("anthropic", "anthropic"))
    assert info.value.field == "model" and "not supported by anthropic" in str(info.value)
    with pytest.raises(errors.FailedPrecondition, match="does not speak the API family 'cohere'"):
        E.build_calls(request("alpha"), target("cohere", "cohere"))


# ---- Gemini's request ----------------------------------------------------------------------------------------

def test_gemini_batch_embed_contents_even_for_one_input() -> None:
    r = request("alpha", model="models/gemini-embedding-001", dimensions=4,
                task_type=pb.EMBED_TASK_TYPE_RETRIEVAL_DOCUMENT)
    [call] = E.build_calls(r, target("gemini", "gemini", "models/gemini-embedding-001",
                                     "https://generativelanguage.googleapis.com/v1beta"))
    assert call.request.url == ("https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001"
                                ":batchEmbedContents")
    assert call.request.headers["x-goog-api-key"] == KEY and "authorization" not in call.request.headers
    assert body(call) == {"requests": [{"model": "models/gemini-embedding-001", "taskType": "RETRIEVAL_DOCUMENT",
                                        "outputDimensionality": 4, "content": {"parts": [{"text": "alpha"}]}}]}
    plain = E.build_calls(request("a", "b", model="text-embedding-004"), target("gemini", "gemini",
                                                                               "text-embedding-004"))
    assert [r_["model"] for r_ in body(plain[0])["requests"]] == ["models/text-embedding-004"] * 2
    assert set(body(plain[0])["requests"][0]) == {"model", "content"}


def test_every_task_type_is_a_gemini_task_type_name() -> None:
    accepted = []
    for value in pb.EmbedTaskType.values():
        if value:
            [call] = E.build_calls(request("a", model="gemini-embedding-001", task_type=value),
                                   target("gemini", "gemini", "gemini-embedding-001"))
            one = body(call)["requests"][0]
            accepted.append(gemini_embeddings("batchEmbedContents", "gemini-embedding-001", body(call)).status)
            assert one["taskType"] == pb.EmbedTaskType.Name(value).removeprefix("EMBED_TASK_TYPE_")
    assert accepted == [200] * (len(pb.EmbedTaskType.values()) - 1)


def test_gemini_refuses_dimensions_for_embedding_001() -> None:
    with pytest.raises(RequestMappingError) as info:
        E.build_calls(request("a", model="embedding-001", dimensions=8), target("gemini", "gemini", "embedding-001"))
    assert info.value.field == "dimensions"


# ---- splitting -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("provider", "family", "n", "sizes"), [
    ("openai", "openai", 2049, [2048, 1]), ("openai", "openai", 2048, [2048]),
    ("gemini", "gemini", 250, [100, 100, 50]), ("mistral", "openai", 1025, [512, 512, 1]),
    ("together", "openai", 513, [512, 1]), ("fireworks", "openai", 17, [8, 8, 1]),
    ("openai_compatible", "openai", 4097, [2048, 2048, 1]), ("openrouter", "openai", 3, [3]),
])
def test_batches_split_at_the_providers_limit_in_order(provider: str, family: str, n: int, sizes: list[int]) -> None:
    texts = [f"t{i}" for i in range(n)]
    model = "gemini-embedding-001" if family == "gemini" else "m"
    calls = E.build_calls(request(*texts, model=model), target(provider, family, model))
    assert [c.count for c in calls] == sizes
    assert [c.start for c in calls] == [sum(sizes[:i]) for i in range(len(sizes))]
    sent = [t for c in calls for t in (body(c).get("input") or
                                       [r["content"]["parts"][0]["text"] for r in body(c)["requests"]])]
    assert sent == texts


def test_a_known_host_sets_the_limit_whatever_the_lease_calls_it() -> None:
    texts = [f"t{i}" for i in range(513)]
    calls = E.build_calls(request(*texts, model="mistral-embed"),
                          target("openai_compatible", api_base="https://api.mistral.ai/v1", model="mistral-embed"))
    assert [c.count for c in calls] == [512, 1] and body(calls[0])["encoding_format"] == "base64"


def test_split_is_exact() -> None:
    assert E.split(5, 2) == [(0, 2), (2, 2), (4, 1)] and E.split(1, 100) == [(0, 1)] and E.split(0, 3) == []


# ---- reading answers -----------------------------------------------------------------------------------------

def call_of(n: int, start: int = 0) -> E.EmbedCall:
    return E.EmbedCall(UpstreamRequest("POST", "https://x/embeddings", {}), start, n)


def test_openai_answer_is_placed_by_index_and_base64_and_floats_read_the_same() -> None:
    a, b = embedding("alpha"), embedding("bravo")
    shuffled = {"data": [{"index": 1, "embedding": f32(b)}, {"index": 0, "embedding": a}], "model": "m-2",
                "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    part = E.parse_answer("openai", json.dumps(shuffled).encode(), call_of(2))
    assert [list(v) for v in part.vectors] == [a, b] and (part.model, part.input_tokens) == ("m-2", 7)


def test_the_stand_ins_answers_read_back_to_its_vectors() -> None:
    for fmt in ("base64", "float"):
        answer = openai_embeddings("m", {"model": "m", "input": ["alpha", "bravo"], "encoding_format": fmt})
        part = E.parse_answer("openai", answer.body, call_of(2))
        assert [list(v) for v in part.vectors] == [embedding("alpha"), embedding("bravo")]
    answer = gemini_embeddings("batchEmbedContents", "g", {"requests": [
        {"model": "models/g", "content": {"parts": [{"text": "alpha"}]}, "outputDimensionality": 4}]})
    part = E.parse_answer("gemini", answer.body, call_of(1))
    assert [list(v) for v in part.vectors] == [embedding("alpha", 4)] and part.input_tokens is None


@pytest.mark.parametrize("answer", [
    {"data": [{"index": 0, "embedding": [0.1]}]},  # one vector for two inputs
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}]},  # a repeated index
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 2, "embedding": [0.2]}]},  # out of range
    {"data": [{"index": 0, "embedding": [0.1]}, {"embedding": [0.2]}]},  # no index
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": True, "embedding": [0.2]}]},
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": ["0.2"]}]},  # non-numbers
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": [True]}]},
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": [None]}]},
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": []}]},
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": [1e39]}]},  # not a float32
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": "not base64!"}]},
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": "AAA="}]},  # 2 bytes
    {"data": [{"index": 0, "embedding": [0.1]}, {"index": 1}]},
    {"object": "list"}, {"error": {"type": "server_error", "message": "boom"}}, [1, 2],
])
def test_malformed_openai_answers_are_refused_whole(answer: Any) -> None:
    with pytest.raises(AdapterError):
        E.parse_answer("openai", json.dumps(answer).encode(), call_of(2))


def test_non_finite_and_non_json_answers_are_refused() -> None:
    with pytest.raises(AdapterError):
        E.parse_answer("openai", b'{"data":[{"index":0,"embedding":[NaN]}]}', call_of(1))
    with pytest.raises(AdapterError, match="malformed JSON"):
        E.parse_answer("openai", b"<html>", call_of(1))
    with pytest.raises(AdapterError, match="2 vectors for 3 inputs"):
        E.parse_answer("gemini", json.dumps({"embeddings": [{"values": [1.0]}] * 2}).encode(), call_of(3))
    with pytest.raises(AdapterError, match="non-numbers"):
        E.parse_answer("gemini", json.dumps({"embeddings": [{"values": ["x"]}]}).encode(), call_of(1))


def test_join_in_input_order_with_usage_summed_or_unset() -> None:
    calls = [call_of(2, 0), call_of(1, 2)]
    vec = E._vector
    parts = [E.EmbedPart([vec([1.0, 0.0], "t"), vec([2.0, 0.0], "t")], "m-reported", 3),
             E.EmbedPart([vec([3.0, 0.0], "t")], "", 4)]
    reply = E.join(request("a", "b", "c"), calls, parts, "openai")
    assert [(e.index, list(e.values)) for e in reply.embeddings] == [(0, [1, 0]), (1, [2, 0]), (2, [3, 0])]
    assert reply.model == "m-reported" and reply.usage.input_tokens == 7
    silent = [E.EmbedPart(p.vectors, "", None) for p in parts]
    reply = E.join(request("a", "b", "c", model="gemini-embedding-001"), calls, silent, "gemini")
    assert reply.model == "gemini-embedding-001" and not reply.HasField("usage")
    with pytest.raises(AdapterError, match="1 dimensions where 2"):
        E.join(request("a", "b", "c"), calls, [parts[0], E.EmbedPart([vec([3.0], "t")], "", None)], "openai")
    with pytest.raises(AdapterError, match="2 dimensions where 4"):
        E.join(request("a", "b", "c", dimensions=4), calls, parts, "openai")


# ---- the servicer: bounded, ordered, all or nothing ---------------------------------------------------------

class KeyService:
    def __init__(self, provider: str = "openai", family: str = "openai") -> None:
        self.provider, self.family = provider, family

    async def fetch(self, key: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        expire = Timestamp()
        expire.GetCurrentTime()
        expire.FromSeconds(expire.seconds + 60)
        return kpb.IssueKeyLeaseResponse(lease_id="lease_1", credential_id="cred_" + "0" * 24, provider=self.provider,
                                         api_family=self.family, api_base="http://up/v1", api_key=KEY,
                                         expire_time=expire, key_source=kpb.KEY_SOURCE_TENANT)


class Upstream:
    """Answers as the stand-in does, a little later, counting the calls in flight; `fail_on` fails the call whose
    first input is that text, and `hold` keeps every other call waiting until released."""

    def __init__(self, fail_on: str = "", hold: bool = False) -> None:
        self.fail_on, self.hold = fail_on, hold
        self.in_flight = self.peak = self.calls = self.finished = 0
        self.release = asyncio.Event()

    async def open(self, req: UpstreamRequest, family: str, provider: str = "") -> UpstreamResponse:
        payload = json.loads(req.body)
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)  # a turn of the loop: the calls the bound admits are all in flight before any ends
            if payload["input"][0] == self.fail_on:
                raise UpstreamFailure(429, errors.RateLimited("openai upstream error rate_limit", retry_after="1"))
            if self.hold:
                await self.release.wait()
            answer = openai_embeddings(payload["model"], payload)
            self.finished += 1
            return UpstreamResponse(httpx.Response(answer.status, content=answer.body), family)
        finally:
            self.in_flight -= 1


def servicer(upstream: Upstream, keys: KeyService | None = None) -> tuple[ChatServicer, CollectorRegistry]:
    registry = CollectorRegistry()
    return ChatServicer(cache=LeaseCache((keys or KeyService()).fetch), keys=None,  # type: ignore[arg-type]
                        upstream=upstream, metrics=ProxyMetrics(registry)), registry  # type: ignore[arg-type]


async def test_a_split_batch_runs_bounded_and_comes_back_in_order() -> None:
    upstream = Upstream()
    svc, registry = servicer(upstream, KeyService("fireworks"))
    texts = [f"text {i}" for i in range(8 * 10 + 3)]  # Fireworks: 8 a call, 11 calls
    with structlog.testing.capture_logs() as logs:
        reply = await svc.embed(request(*texts, model="nomic-ai/nomic-embed-text-v1.5"), "caller")
    assert upstream.calls == 11 and upstream.peak == E.MAX_CONCURRENT_CALLS
    assert [e.index for e in reply.embeddings] == list(range(len(texts)))
    assert [list(e.values) for e in reply.embeddings] == [embedding(t) for t in texts]
    assert (reply.provider, reply.credential_id, reply.key_source) == ("fireworks", "cred_" + "0" * 24,
                                                                       pb.KEY_SOURCE_TENANT)
    assert reply.usage.input_tokens == sum(len(t) // 4 + 1 for t in texts) and reply.request_id
    [line] = [e for e in logs if e["event"] == "embed"]
    assert (line["status"], line["input_tokens"], line["model"]) == ("OK", reply.usage.input_tokens,
                                                                    "nomic-ai/nomic-embed-text-v1.5")
    assert registry.get_sample_value("byok_proxy_upstream_responses_total",
                                     {"provider": "fireworks", "status": "200"}) == 11.0


async def test_one_failed_call_fails_the_request_and_cancels_the_others() -> None:
    upstream = Upstream(fail_on="text 8", hold=True)  # the second call fails while the others wait
    svc, _ = servicer(upstream, KeyService("fireworks"))
    with pytest.raises(errors.RateLimited):
        await svc.embed(request(*[f"text {i}" for i in range(40)], model="m"), "caller")
    assert upstream.in_flight == 0 and upstream.finished == 0  # nothing was left running, nothing half-used
    assert upstream.calls == E.MAX_CONCURRENT_CALLS  # the queued calls never went out


async def test_a_caller_that_goes_cancels_every_call() -> None:
    upstream = Upstream(hold=True)
    svc, registry = servicer(upstream, KeyService("fireworks"))
    task = asyncio.ensure_future(svc.embed(request(*[f"t{i}" for i in range(40)], model="m"), "caller"))
    while upstream.in_flight < E.MAX_CONCURRENT_CALLS:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert upstream.in_flight == 0 and upstream.finished == 0
    assert registry.get_sample_value("byok_proxy_requests_total", {"provider": "fireworks", "code": "CANCELLED"}) == 1


async def test_refusals_come_before_any_upstream_call() -> None:
    upstream = Upstream()
    svc, registry = servicer(upstream)
    r = request("alpha")
    r.inputs.add(image=pb.ImagePart(url="https://example.com/a.png"))
    with pytest.raises(errors.InvalidArgument, match=r"^inputs\[1\]\.image: embedding an image"):
        await svc.embed(r, "caller")
    with pytest.raises(errors.InvalidArgument, match="^task_type: "):
        await svc.embed(request("a", task_type=pb.EMBED_TASK_TYPE_CLUSTERING), "caller")
    with pytest.raises(errors.InvalidArgument, match="^inputs: "):
        await svc.embed(request(), "caller")
    assert upstream.calls == 0
    assert registry.get_sample_value("byok_proxy_requests_total",
                                     {"provider": "unknown", "code": "INVALID_ARGUMENT"}) == 1.0  # before a lease


async def test_a_malformed_answer_is_unavailable_never_partial() -> None:
    class Short(Upstream):
        async def open(self, req: UpstreamRequest, family: str, provider: str = "") -> UpstreamResponse:
            return UpstreamResponse(httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0]}]}), family)

    svc, _ = servicer(Short())
    with pytest.raises(errors.UpstreamProtocolError, match="1 vectors for 2 inputs"):
        await svc.embed(request("a", "b"), "caller")


# ---- the cloud providers: Azure OpenAI, Vertex AI, Bedrock (each with its lease) -------------------------------

AZURE = "https://acme.openai.azure.com"
VERTEX = "https://us-central1-aiplatform.googleapis.com/v1"
BEDROCK = "https://bedrock-runtime.us-east-1.amazonaws.com"
TITAN, COHERE = "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"


def lease(provider: str, family: str, api_base: str, scheme: str = "bearer", **settings: str
          ) -> kpb.IssueKeyLeaseResponse:
    """A lease as keyservice hands a cloud credential's out: a key or token (none for SigV4), its settings."""
    out = kpb.IssueKeyLeaseResponse(provider=provider, api_family=family, api_base=api_base, auth_scheme=scheme,
                                    api_key="" if scheme == "aws_sigv4" else KEY, settings=settings)
    if scheme == "aws_sigv4":
        out.aws_credentials.MergeFrom(kpb.AwsSessionCredentials(
            access_key_id="ASIAEXAMPLE", secret_access_key="s" * 40, session_token="t" * 40))
    return out


def cloud(model: str, leased: kpb.IssueKeyLeaseResponse) -> E.Target:
    return E.Target(leased.api_family, leased.provider, leased.api_base, leased.api_key, model, leased)


@pytest.mark.parametrize(("scheme", "settings", "url", "model", "header"), [
    ("api_key", {"api_version": "2024-10-21", "deployments": '{"text-embedding-3-small": "embed-prod"}'},
     AZURE + "/openai/deployments/embed-prod/embeddings?api-version=2024-10-21", "text-embedding-3-small", "api-key"),
    ("bearer", {}, AZURE + "/openai/v1/embeddings", "embed-prod", "authorization"),
])
def test_azure_embeds_at_the_deployment_with_the_leases_presentation(
        scheme: str, settings: dict[str, str], url: str, model: str, header: str) -> None:
    leased = lease("azure_openai", "openai", AZURE, scheme, **settings)
    r = request("alpha", "bravo", model="text-embedding-3-small" if settings else "embed-prod", dimensions=256)
    [call] = E.build_calls(r, cloud(r.model, leased))
    assert call.request.url == url and call.request.sigv4 is None
    assert header in call.request.headers and KEY in call.request.headers[header]
    assert body(call) == {"model": model, "input": ["alpha", "bravo"], "encoding_format": "base64",
                          "dimensions": 256}
    part = E.parse_answer("openai", json.dumps({"data": [{"index": 0, "embedding": f32([0.5])},
                                                         {"index": 1, "embedding": [0.25]}]}).encode(), call)
    assert [list(v) for v in part.vectors] == [[0.5], [0.25]]


def test_azure_splits_at_2048_and_refuses_dimensions_for_ada_and_task_type() -> None:
    leased = lease("azure_openai", "openai", AZURE, "api_key")
    calls = E.build_calls(request(*["x"] * 2050, model="embed-prod"), cloud("embed-prod", leased))
    assert [(c.start, c.count) for c in calls] == [(0, 2048), (2048, 2)]
    for kw, field in (({"dimensions": 8}, "dimensions"), ({"task_type": pb.EMBED_TASK_TYPE_CLUSTERING}, "task_type")):
        with pytest.raises(RequestMappingError) as info:
            E.build_calls(request("x", model="text-embedding-ada-002", **kw), cloud("text-embedding-ada-002", leased))
        assert info.value.field == field and "azure_openai" in str(info.value)


@pytest.mark.parametrize(("model", "sizes"), [("text-embedding-005", [250, 250, 1]),
                                               ("gemini-embedding-001", [1, 1, 1])])
def test_vertex_predicts_under_the_project_and_location_at_its_per_model_limit(model: str, sizes: list[int]) -> None:
    leased = lease("vertex_ai", "gemini", VERTEX, project="p-1", location="us-central1")
    n = sum(sizes)
    r = request(*[f"t{i}" for i in range(n)], model=model, dimensions=64,
                task_type=pb.EMBED_TASK_TYPE_QUESTION_ANSWERING)
    calls = E.build_calls(r, cloud(model, leased))
    assert [c.count for c in calls] == sizes and [c.start for c in calls] == [0, sizes[0], sizes[0] + sizes[1]]
    first = calls[0].request
    assert first.url == f"{VERTEX}/projects/p-1/locations/us-central1/publishers/google/models/{model}:predict"
    assert first.headers["authorization"] == f"Bearer {KEY}" and "x-goog-api-key" not in first.headers
    assert body(calls[0])["instances"][0] == {"content": "t0", "task_type": "QUESTION_ANSWERING"}
    assert body(calls[0])["parameters"] == {"outputDimensionality": 64}


def test_vertex_answer_reads_predictions_in_order_with_token_counts_summed() -> None:
    leased = lease("vertex_ai", "gemini", VERTEX, project="p", location="global")
    [call] = E.build_calls(request("a", "b", model="text-embedding-005"), cloud("text-embedding-005", leased))
    assert set(body(call)) == {"instances"}  # nothing unset is sent
    predictions = [{"embeddings": {"values": [1.0, 0.0], "statistics": {"token_count": 3}}},
                   {"embeddings": {"values": [0.0, 1.0], "statistics": {"token_count": 4.0}}}]
    answer = {"predictions": predictions, "metadata": {"billableCharacterCount": 2}}
    part = E.parse_answer("gemini", json.dumps(answer).encode(), call)
    assert [list(v) for v in part.vectors] == [[1.0, 0.0], [0.0, 1.0]] and part.input_tokens == 7
    with pytest.raises(AdapterError, match="vertex_ai embeddings answer has 1 vectors for 2 inputs"):
        E.parse_answer("gemini", json.dumps({"predictions": predictions[:1]}).encode(), call)
    with pytest.raises(errors.FailedPrecondition, match="project and location"):
        E.build_calls(request("a", model="text-embedding-005"), cloud("text-embedding-005", lease(
            "vertex_ai", "gemini", VERTEX)))


def test_titan_is_one_signed_invoke_per_input_with_normalize_and_dimensions() -> None:
    leased = lease("bedrock", "bedrock", BEDROCK, "aws_sigv4", region="us-east-1")
    calls = E.build_calls(request("a", "b", "c", model=TITAN, dimensions=512), cloud(TITAN, leased))
    assert [(c.start, c.count, c.api) for c in calls] == [(0, 1, "titan"), (1, 1, "titan"), (2, 1, "titan")]
    sent = calls[1].request
    assert sent.url == f"{BEDROCK}/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert sent.sigv4 is not None and (sent.sigv4.access_key_id, sent.sigv4.region) == ("ASIAEXAMPLE", "us-east-1")
    assert "authorization" not in sent.headers  # signed by upstream as it is sent
    assert body(calls[1]) == {"inputText": "b", "normalize": True, "dimensions": 512}
    part = E.parse_answer("bedrock", b'{"embedding": [0.6, 0.8], "inputTextTokenCount": 2, '
                                     b'"embeddingsByType": {"float": [0.6, 0.8]}}', calls[1])
    assert len(part.vectors) == 1 and part.input_tokens == 2
    g1 = "amazon.titan-embed-text-v1"
    [old] = E.build_calls(request("a", model=g1), cloud(g1, lease("bedrock", "bedrock", BEDROCK, region="us-east-1")))
    assert body(old) == {"inputText": "a"} and old.request.headers["authorization"] == f"Bearer {KEY}"


def test_cohere_batches_96_with_its_input_type_and_reads_either_answer_shape() -> None:
    leased = lease("bedrock", "bedrock", BEDROCK, region="us-east-1")
    r = request(*[f"t{i}" for i in range(100)], model="us." + COHERE,
                task_type=pb.EMBED_TASK_TYPE_RETRIEVAL_DOCUMENT)
    calls = E.build_calls(r, cloud(r.model, leased))
    assert [(c.start, c.count) for c in calls] == [(0, 96), (96, 4)]
    assert calls[0].request.url == f"{BEDROCK}/model/us.{COHERE}/invoke"
    assert body(calls[1]) == {"texts": ["t96", "t97", "t98", "t99"], "input_type": "search_document"}
    for embeddings in ([[1.0], [2.0], [3.0], [4.0]], {"float": [[1.0], [2.0], [3.0], [4.0]]}):
        part = E.parse_answer("bedrock", json.dumps({"id": "x", "embeddings": embeddings, "texts": []}).encode(),
                              calls[1])
        assert [list(v) for v in part.vectors] == [[1.0], [2.0], [3.0], [4.0]] and part.input_tokens is None
    for task, input_type in ((pb.EMBED_TASK_TYPE_RETRIEVAL_QUERY, "search_query"),
                             (pb.EMBED_TASK_TYPE_CLASSIFICATION, "classification"),
                             (pb.EMBED_TASK_TYPE_CLUSTERING, "clustering")):
        [one] = E.build_calls(request("q", model=COHERE, task_type=task), cloud(COHERE, leased))
        assert body(one)["input_type"] == input_type


@pytest.mark.parametrize(("model", "kw", "field", "text"), [
    (TITAN, {"task_type": pb.EMBED_TASK_TYPE_RETRIEVAL_QUERY}, "task_type", "task_type for Titan"),
    (TITAN, {"dimensions": 384}, "dimensions", "dimensions=384 for Titan Text Embeddings V2 (it takes 256, 512, 1024)"),
    ("amazon.titan-embed-text-v1", {"dimensions": 256}, "dimensions", "Titan Text Embeddings G1"),
    (COHERE, {}, "task_type", "needs one of EMBED_TASK_TYPE_RETRIEVAL_QUERY"),
    (COHERE, {"task_type": pb.EMBED_TASK_TYPE_SEMANTIC_SIMILARITY}, "task_type", "input_type is required"),
    (COHERE, {"dimensions": 256, "task_type": pb.EMBED_TASK_TYPE_CLUSTERING}, "dimensions", "Cohere Embed"),
    ("anthropic.claude-3-5-haiku-20241022-v1:0", {}, "model", "Bedrock embeds with amazon.titan-embed-text-*"),
])
def test_bedrock_refusals_name_the_field(model: str, kw: dict[str, Any], field: str, text: str) -> None:
    leased = lease("bedrock", "bedrock", BEDROCK, region="us-east-1")
    with pytest.raises(RequestMappingError) as info:
        E.build_calls(request("x", model=model, **kw), cloud(model, leased))
    assert info.value.field == field and text in str(info.value)


@pytest.mark.parametrize("leased", [
    lease("azure_openai", "openai", AZURE), lease("vertex_ai", "gemini", VERTEX, project="p", location="global"),
    lease("bedrock", "bedrock", BEDROCK, region="us-east-1"),
])
def test_every_cloud_refuses_an_image(leased: kpb.IssueKeyLeaseResponse) -> None:
    r = request("x", model="cohere.embed-english-v3", task_type=pb.EMBED_TASK_TYPE_CLUSTERING)
    r.inputs.add(image=pb.ImagePart(url="https://example.com/cat.png"))
    with pytest.raises(RequestMappingError) as info:
        E.build_calls(r, cloud(r.model, leased))
    assert info.value.field == "inputs[1].image"


def test_a_sigv4_target_without_its_lease_is_never_sent_unsigned() -> None:
    with pytest.raises(errors.FailedPrecondition, match="needs its lease"):
        E.build_calls(request("x", model=TITAN), E.Target("bedrock", "bedrock", BEDROCK, "", TITAN))


def test_the_cloud_stand_ins_answer_what_the_calls_read_and_refuse_past_their_limits() -> None:
    bedrock = lease("bedrock", "bedrock", BEDROCK, region="us-east-1")
    vertex = lease("vertex_ai", "gemini", VERTEX, project="p", location="global")
    texts = [f"t{i}" for i in range(97)]
    cohere_r = request(*texts, model=COHERE, task_type=pb.EMBED_TASK_TYPE_CLUSTERING)
    for model, r, leased, answer in (
            (TITAN, request("a", model=TITAN, dimensions=256), bedrock, lambda c: invoke(TITAN, body(c), aws_error)),
            (COHERE, cohere_r, bedrock, lambda c: invoke(COHERE, body(c), aws_error)),
            ("text-embedding-005", request("a", "b", model="text-embedding-005", dimensions=4), vertex,
             lambda c: predict("r", "text-embedding-005", c.request.body))):
        calls = E.build_calls(r, cloud(model, leased))
        parts = [E.parse_answer(leased.api_family, answer(c).body, c) for c in calls]
        assert vectors_of(E.join(r, calls, parts, leased.api_family)) == [
            embedding(i.text, len(parts[0].vectors[0])) for i in r.inputs]
    too_many = invoke(COHERE, {"texts": texts, "input_type": "clustering"}, aws_error)
    assert too_many.status == 400 and b"expected maximum item count: 96, found: 97" in too_many.body
    assert invoke(TITAN, {"inputText": "a", "dimensions": 384}, aws_error).status == 400
    assert invoke(COHERE, {"texts": ["a"]}, aws_error).status == 400  # input_type is required
    two = json.dumps({"instances": [{"content": "a"}, {"content": "b"}]}).encode()
    assert predict("r", "gemini-embedding-001", two).status == 400  # one instance a request
    assert predict("r", "text-embedding-005", two).status == 200
    assert predict("r", "text-embedding-005", b'{"instances": [{"content": "a", "taskType": "X"}]}').status == 400


def vectors_of(reply: pb.EmbedResponse) -> list[list[float]]:
    return [list(e.values) for e in reply.embeddings]
