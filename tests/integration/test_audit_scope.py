"""Every audit event carries the full scope of what it touched (org, project, user), and ListAuditEvents filters
by each (issue 12: the README's own `byokctl audit --org acme` missed the delete, stored with an empty org).

One credential at user scope goes through every management action and both lease outcomes, over mTLS gRPC on a
real OpenBao, SQLite and PostgreSQL; then every event is checked for its scope, and the filters for what they
return."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.server import create_server
from tests.support.bao import BaoDevServer
from tests.support.stack import CALLER, Identities, keys_stub, keyservice_settings, secure_channel


@pytest.fixture
async def stubs(bao: BaoDevServer, ids: Identities, database_url: str) -> AsyncIterator[tuple[object, object]]:
    app = await create_server(keyservice_settings(bao, ids, database_url))
    try:
        async with secure_channel(app.port, ids.admin) as a, secure_channel(app.port, ids.proxyservice) as p:
            yield keys_stub(a), keys_stub(p)
    finally:
        await app.stop(grace=0)


async def _all_events(admin, **filters: str) -> list[pb.AuditEvent]:  # type: ignore[no-untyped-def]
    reply = await admin.ListAuditEvents(pb.ListAuditEventsRequest(page_size=500, **filters), timeout=10)
    return list(reply.events)


async def test_every_action_is_audited_with_its_full_scope(stubs) -> None:  # type: ignore[no-untyped-def]
    admin, proxy = stubs
    org, project, user = "scope-" + uuid.uuid4().hex[:6], "proj-1", "user-1"
    scope = pb.Scope(org_id=org, project_id=project, user_id=user)
    await admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org, project_id=project)))
    created = await admin.CreateCredential(pb.CreateCredentialRequest(
        provider="openai", scope=scope, name="main", api_key="sk-proj-" + secrets.token_hex(24)))
    cid = created.credential.credential_id
    await admin.UpdateCredential(pb.UpdateCredentialRequest(credential_id=cid, default_model="gpt-4o-mini"))
    await admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id=cid, api_key="sk-proj-" + secrets.token_hex(24)))
    lease = await proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(scope=scope, provider="openai", caller_identity=CALLER))
    await proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(credential_id=cid, http_status=429,
                                                            lease_id=lease.lease_id))
    await admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=cid))
    with pytest.raises(grpc.aio.AioRpcError):
        await proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(scope=scope, credential_id=cid, caller_identity=CALLER))
    await admin.ActivateCredential(pb.ActivateCredentialRequest(credential_id=cid))
    await admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=cid))
    await admin.DeleteCallerBinding(pb.DeleteCallerBindingRequest(caller_identity=CALLER, org_id=org,
                                                                  project_id=project))

    events = await _all_events(admin, org_id=org)
    actions = [e.action for e in reversed(events)]
    assert actions == ["binding.create", "credential.create", "credential.update", "credential.rotate",
                       "lease.issue", "credential.report_failure", "credential.deactivate", "lease.refuse",
                       "credential.activate", "credential.delete", "binding.delete"]
    for e in events:
        want = (org, project, "" if e.action.startswith("binding.") else user)
        assert (e.org_id, e.project_id, e.user_id) == want, e.action
        if e.action.startswith(("credential.", "lease.")):
            assert e.credential_id == cid, e.action

    # The filters: by project, by user, and a project or user that matches nothing.
    assert len(await _all_events(admin, org_id=org, project_id=project)) == len(events)
    assert [e.action for e in await _all_events(admin, org_id=org, user_id=user)] == \
        [a for a in reversed(actions) if not a.startswith("binding.")]
    assert await _all_events(admin, org_id=org, project_id="proj-2") == []
    assert await _all_events(admin, org_id=org, user_id="someone-else") == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _all_events(admin, project_id="bad/project")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "project_id" in (err.value.details() or "")
