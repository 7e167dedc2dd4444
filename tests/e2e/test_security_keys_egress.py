"""Issue 11, finding 3, at the proxy: its upstream calls follow the same destination rules as keyservice's,
on their own (a credential whose api_base keyservice accepted in development is refused by a proxy without
the development setting, before any connection)."""

from __future__ import annotations

import secrets

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.egress import EgressPolicy
from tests.e2e.conftest import System, params


async def test_a_strict_proxy_sends_no_key_to_loopback(system: System) -> None:
    key = "sk-proj-" + secrets.token_hex(20)
    credential = await system.add_key("egress", "openai", key)
    await system.admin.UpdateCredential(kpb.UpdateCredentialRequest(credential_id=credential.credential_id,
                                                                   api_base=f"{system.upstream.base_url}/v1"))
    await system.bind("egress")
    await system.restart_proxy(egress=EgressPolicy())
    before = len(system.upstream.requests)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await system.chat.Chat(pb.ChatRequest(parameters=params("egress", "gpt-4o-mini")))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.details().startswith("api_base: must use https")
    assert key not in refused.value.details() and len(system.upstream.requests) == before
