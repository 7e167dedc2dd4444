"""The ChatServicer's bookkeeping with keyservice and the provider stubbed: lease hit/miss per request, outcome
codes, requests refused by validation, what unary Chat records as time to first byte."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import httpx
import pytest
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from devstack.upstream import generated_text
from proxyservice import errors
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.service import ChatServicer, _Outcome
from proxyservice.upstream import UpstreamResponse

BODY = (b'{"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"alpha"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}')


class Context:
    def auth_context(self) -> dict[str, list[bytes]]:
        return {}


class Upstream:
    """Answers every request with 200 and a whole OpenAI-shaped body."""

    async def open(self, req: Any, family: str, provider: str = "") -> UpstreamResponse:
        return UpstreamResponse(httpx.Response(200, content=BODY), family)


class KeyService:
    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}

    async def fetch(self, key: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        gate = self.gates.get(key.org_id)
        if gate is not None:
            await gate.wait()
        expire = Timestamp()
        expire.GetCurrentTime()
        expire.FromSeconds(expire.seconds + 60)
        return kpb.IssueKeyLeaseResponse(lease_id="lease_1", credential_id="cred_" + "0" * 24, provider="openai",
                                         api_family="openai", api_base="http://up/v1", api_key="sk-test-" + "k" * 20,
                                         expire_time=expire, key_source=kpb.KEY_SOURCE_TENANT)


def servicer(keys: KeyService | None = None) -> tuple[ChatServicer, CollectorRegistry]:
    registry = CollectorRegistry()
    keys = keys or KeyService()
    return ChatServicer(cache=LeaseCache(keys.fetch), keys=None, upstream=Upstream(),  # type: ignore[arg-type]
                        metrics=ProxyMetrics(registry)), registry


def params(org: str = "acme", **kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(tenant=pb.Tenant(org_id=org), model="gpt-4o-mini",
                             messages=[pb.Message(role=pb.ROLE_USER, content="hi")], **kw)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_lease_hit_or_miss_is_what_each_lookup_saw_under_concurrency() -> None:
    keys = KeyService()
    svc, registry = servicer(keys)
    await svc.Chat(pb.ChatRequest(parameters=params("warm")), Context())  # miss: warms "warm"
    keys.gates["cold"] = asyncio.Event()
    cold = asyncio.ensure_future(svc.Chat(pb.ChatRequest(parameters=params("cold")), Context()))
    await asyncio.sleep(0.01)  # the cold request waits on keyservice...
    await svc.Chat(pb.ChatRequest(parameters=params("warm")), Context())  # ...while a warm one hits
    keys.gates["cold"].set()
    await cold
    name = "byok_proxy_lease_cache_lookups_total"
    assert (sample(registry, name, result="hit"), sample(registry, name, result="miss")) == (1.0, 2.0)


async def test_an_unknown_exception_is_internal_not_cancelled() -> None:
    svc, registry = servicer()
    outcome = _Outcome(request_id="r", caller="c", params=params())
    with pytest.raises(ZeroDivisionError):
        with svc._tracking(outcome):
            raise ZeroDivisionError
    with pytest.raises(asyncio.CancelledError):
        with svc._tracking(outcome):
            raise asyncio.CancelledError
    name = "byok_proxy_requests_total"
    assert sample(registry, name, provider="unknown", code="INTERNAL") == 1.0
    assert sample(registry, name, provider="unknown", code="CANCELLED") == 1.0


@pytest.mark.parametrize("rpc", ["Chat", "StreamChat"])
async def test_requests_refused_by_validation_are_counted_and_logged(rpc: str) -> None:
    svc, registry = servicer()
    bad = params(temperature=9.0)
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(errors.InvalidArgument):
            if rpc == "Chat":
                await svc.Chat(pb.ChatRequest(parameters=bad), Context())
            else:
                async for _ in svc.StreamChat(pb.StreamChatRequest(parameters=bad), Context()):
                    pass
    assert sample(registry, "byok_proxy_requests_total", provider="unknown", code="INVALID_ARGUMENT") == 1.0
    chat = [e for e in logs if e["event"] == "chat"]
    assert len(chat) == 1 and chat[0]["status"] == "INVALID_ARGUMENT" and chat[0]["org_id"] == "acme"


async def test_unary_chat_records_no_time_to_first_byte() -> None:
    svc, registry = servicer()
    with structlog.testing.capture_logs() as logs:
        reply = await svc.Chat(pb.ChatRequest(parameters=params()), Context())
    assert reply.choices[0].text == "alpha" and generated_text(1) == "alpha"
    assert sample(registry, "byok_proxy_ttfb_seconds_count", provider="openai") == 0.0
    assert sample(registry, "byok_proxy_request_duration_seconds_count", provider="openai") == 1.0
    assert [e["ttfb_ms"] for e in logs if e["event"] == "chat"] == [None]
    assert grpc.StatusCode.OK.name == [e["status"] for e in logs if e["event"] == "chat"][0]
