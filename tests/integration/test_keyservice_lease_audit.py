"""Every refused lease is audited, including one that names its credential explicitly (found by the reliability
harness's scenario 6: a proxy asking by credential id for a deactivated key left no trace)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.server import create_server
from tests.support.bao import BaoDevServer
from tests.support.stack import CALLER, Identities, keys_stub, keyservice_settings, secure_channel


@pytest.fixture
async def stubs(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[tuple[object, object]]:
    app = await create_server(keyservice_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db"))
    try:
        async with secure_channel(app.port, ids.admin) as a, secure_channel(app.port, ids.proxyservice) as p:
            yield keys_stub(a), keys_stub(p)
    finally:
        await app.stop(grace=0)


async def _refusals(admin, org: str) -> list[pb.AuditEvent]:
    reply = await admin.ListAuditEvents(pb.ListAuditEventsRequest(org_id=org, action="lease.refuse"), timeout=10)
    return list(reply.events)


async def test_explicit_lease_refusals_are_audited(stubs) -> None:
    admin, proxy = stubs
    org = "audit-" + secrets.token_hex(3)
    await admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org)))
    created = await admin.CreateCredential(pb.CreateCredentialRequest(
        provider="openai", scope=pb.Scope(org_id=org), name="main", api_key="sk-proj-" + secrets.token_hex(20)))
    cid = created.credential.credential_id
    request = pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id=org), credential_id=cid, caller_identity=CALLER)
    await proxy.IssueKeyLease(request, timeout=10)
    assert await _refusals(admin, org) == []

    await admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=cid))
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await proxy.IssueKeyLease(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    events = await _refusals(admin, org)
    assert [(e.outcome, e.credential_id) for e in events] == [("credential_inactive", cid)] * 2

    await admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=cid))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await proxy.IssueKeyLease(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert sorted(e.outcome for e in await _refusals(admin, org)) == \
        ["credential_inactive", "credential_inactive", "credential_not_found"]

    other = pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id=org + "-other"), credential_id=cid, caller_identity=CALLER)
    await admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org + "-other")))
    with pytest.raises(grpc.aio.AioRpcError):
        await proxy.IssueKeyLease(other, timeout=10)
    assert [e.outcome for e in await _refusals(admin, org + "-other")] == ["credential_not_found"]
