"""Revoking an org end to end: its platform fallback stops too, and proxies drop its cached platform leases
(which name no credential, so no per-credential revocation reaches them)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from devstack.upstream import FakeUpstream, UpstreamConfig
from keyservice.server import create_server
from proxyservice.server import create_server as create_proxy
from tests.e2e.conftest import System, params
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities, keyservice_settings, proxy_settings, secure_channel, upstream_base_urls

PLATFORM_KEY = "sk-proj-platform" + secrets.token_hex(16)


@pytest.fixture
async def platform_system(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[System]:
    """The e2e system with a platform OpenAI key configured in keyservice."""
    upstream = FakeUpstream(UpstreamConfig())
    await upstream.start()
    keyservice = await create_server(keyservice_settings(
        bao, ids, f"sqlite:///{tmp_path}/ks.db", provider_base_urls=upstream_base_urls(upstream.base_url),
        platform_keys={"OPENAI_API_KEY": PLATFORM_KEY}))
    proxy = await create_proxy(proxy_settings(ids, keyservice.port))
    admin_channel = secure_channel(keyservice.port, ids.admin)
    chat_channel = secure_channel(proxy.port, ids.caller)
    system = System(ids=ids, upstream=upstream, keyservice=keyservice, proxy=proxy,
                    admin=kpb_grpc.KeyServiceStub(admin_channel), chat=pb_grpc.ChatServiceStub(chat_channel),
                    channels=[admin_channel, chat_channel])
    try:
        yield system
    finally:
        for channel in system.channels:
            await channel.close()
        await system.proxy.stop(grace=0)
        await system.keyservice.stop(grace=0)
        await upstream.stop()


async def chat(system: System, org: str) -> pb.ChatResponse:
    return await system.chat.Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini")))


async def test_revoking_an_org_ends_its_platform_fallback_and_cached_platform_leases(
        platform_system: System) -> None:
    system = platform_system
    await system.admin.SetOrgPolicy(kpb.SetOrgPolicyRequest(
        policy=kpb.OrgPolicy(org_id="fallback", allow_platform_fallback=True)))
    await system.admin.SetOrgPolicy(kpb.SetOrgPolicyRequest(
        policy=kpb.OrgPolicy(org_id="bystander", allow_platform_fallback=True)))
    for org in ("fallback", "bystander"):
        await system.bind(org)
    await asyncio.wait_for(system.proxy.revocations_connected.wait(), 5)
    for org in ("fallback", "bystander"):
        await chat(system, org)  # served with the platform key; the lease is cached
    cached = {key.org_id: entry.lease for key, entry in system.proxy.cache._entries.items()}  # noqa: SLF001
    assert cached["fallback"].key_source == kpb.KEY_SOURCE_PLATFORM and cached["fallback"].credential_id == ""
    fetches = system.proxy.cache.fetches

    started = time.perf_counter()
    answer = await system.admin.RevokeOrg(kpb.RevokeOrgRequest(org_id="fallback"))
    assert answer.deactivated_count == 0  # no credential at all: only the platform key served this org
    # The org-wide revocation reaches the proxy, which drops the cached platform lease within a second.
    while any(k.org_id == "fallback" for k in system.proxy.cache._entries):  # noqa: SLF001
        assert time.perf_counter() - started < 1.0, "the proxy kept the revoked org's platform lease"
        await asyncio.sleep(0.01)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await chat(system, "fallback")
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND  # and keyservice refuses a new platform lease
    policy = await system.admin.GetOrgPolicy(kpb.GetOrgPolicyRequest(org_id="fallback"))
    assert policy.policy.allow_platform_fallback is False

    # Other orgs keep their cached lease and their fallback.
    await chat(system, "bystander")
    assert system.proxy.cache.fetches == fetches + 1  # only the refused org's lookup went to keyservice
