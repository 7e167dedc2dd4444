"""Bad input that gets past protobuf's own parsing must still be INVALID_ARGUMENT (found by the reliability
harness's scenario 8, which generates requests for every RPC): never INTERNAL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.server import KeyServiceApp, create_server
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities, keys_stub, keyservice_settings, secure_channel


@pytest.fixture
async def admin(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[object]:
    app: KeyServiceApp = await create_server(keyservice_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db"))
    try:
        async with secure_channel(app.port, ids.admin) as channel:
            yield keys_stub(channel)
    finally:
        await app.stop(grace=0)


@pytest.mark.parametrize(("seconds", "nanos"), [(2**40, 0), (-(2**40), 0), (0, -5), (0, 2**31 - 1)])
async def test_audit_since_out_of_range_is_invalid_argument(admin, seconds: int, nanos: int) -> None:
    request = pb.ListAuditEventsRequest()
    request.since.seconds, request.since.nanos = seconds, nanos
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.ListAuditEvents(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "since" in (info.value.details() or "")


async def test_audit_since_in_range_works(admin) -> None:
    request = pb.ListAuditEventsRequest()
    request.since.seconds = 0
    reply = await admin.ListAuditEvents(request, timeout=10)
    assert reply is not None


async def test_register_refuses_a_key_shaped_vault_path(admin) -> None:
    # Found by the reliability harness's scenario 7: the path of a Vault read is in Vault's audit log in clear.
    key = "sk-proj-" + "ab12" * 12
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.RegisterCredential(pb.RegisterCredentialRequest(
            provider="openai", scope=pb.Scope(org_id="acme"), name="r", vault_path=f"byok/imports/{key}"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "vault_path" in (info.value.details() or "") and key not in (info.value.details() or "")
