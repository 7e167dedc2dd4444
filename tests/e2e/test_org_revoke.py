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
from byok.proxy.v1 import chat_service_pb2 as pb
from tests.e2e.conftest import System, params, running_system
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities

PLATFORM_KEY = "sk-proj-platform" + secrets.token_hex(16)


@pytest.fixture
async def platform_system(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[System]:
    """The e2e system with a platform OpenAI key configured in keyservice."""
    async with running_system(bao, ids, tmp_path, platform_keys={"OPENAI_API_KEY": PLATFORM_KEY}) as system:
        yield system


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
