"""Every refused lease is audited, including one that names its credential explicitly (found by the reliability
harness's scenario 6: a proxy asking by credential id for a deactivated key left no trace)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.audit_writer import AuditWriter
from keyservice.server import create_server
from keyservice.store import AuditRow, Store
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


def test_dropped_lease_audit_events_are_counted_and_logged() -> None:
    """With the database down the writer keeps at most max_pending events; older ones are dropped, never
    silently: a Prometheus counter and a (rate-limited) warning say how many."""
    store = Store("postgresql+psycopg://byok@127.0.0.1:1/down", connect_timeout=1)
    registry = CollectorRegistry()
    with capture_logs() as logs:
        writer = AuditWriter(store, interval=3600, batch=1000, max_pending=3, registry=registry)
        try:
            for i in range(5):
                writer.add(AuditRow.new("spiffe://test/proxy", "lease.issue", org_id=f"o{i}"))
            assert writer.dropped == 2
            assert registry.get_sample_value("byok_audit_events_dropped_total") == 2.0
        finally:
            writer._stop.set()  # noqa: SLF001 - no final flush: the database is down on purpose
            writer._wake.set()  # noqa: SLF001
            store.close()
    warnings = [e for e in logs if e["event"] == "audit.events_dropped"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"  # one per interval, not one per event
    assert (warnings[0]["dropped"], warnings[0]["dropped_total"], warnings[0]["max_pending"]) == (1, 1, 3)


async def test_keyservice_exports_the_dropped_audit_counter(bao: BaoDevServer, ids: Identities,
                                                            tmp_path: Path) -> None:
    app = await create_server(keyservice_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db"))
    try:
        assert app.metrics.registry.get_sample_value("byok_audit_events_dropped_total") == 0.0
    finally:
        await app.stop(grace=0)


def test_a_flush_that_finds_the_queue_empty_waits_for_the_batch_being_committed(tmp_path: Path) -> None:
    """The writer thread has taken the last batch and is committing it when ListAuditEvents flushes: the flush
    must not return before that batch is in the database (reliability scenario 6 missed 6 of 144 refusals so)."""
    import threading

    store = Store(f"sqlite:///{tmp_path}/ks.db")
    store.migrate()
    committing, release, waiting = threading.Event(), threading.Event(), threading.Event()
    real_append = store.append_audits

    def slow_append(rows: list[AuditRow]) -> None:
        committing.set()  # the writer thread holds the batch, not yet written
        assert release.wait(30)
        real_append(rows)
    store.append_audits = slow_append  # type: ignore[method-assign]
    writer = AuditWriter(store, interval=0.001, on_flush_wait=waiting.set)
    try:
        writer.add(AuditRow.new("spiffe://test/proxy", "lease.refuse", org_id="o1"))
        assert committing.wait(30)
        seen: list[int] = []

        def read_after_flush() -> None:
            writer.flush()
            seen.append(len(store.list_audit()[0]))
        reader = threading.Thread(target=read_after_flush)
        reader.start()
        # Released once the reader's flush is waiting for the batch in flight (or has returned without it).
        while not waiting.is_set() and reader.is_alive():
            waiting.wait(0.01)
        release.set()
        reader.join(30)
        assert seen == [1]
    finally:
        release.set()
        writer.close()
        store.close()


async def test_a_new_binding_tells_proxies_to_forget_cached_refusals(stubs) -> None:  # type: ignore[no-untyped-def]
    """Proxies cache a refusal briefly (issue 11): a binding created after one must reach them at once, as an
    org-wide scope_changed on the revocation stream, or the newly bound caller is refused for seconds."""
    admin, proxy = stubs
    org = "bind-" + secrets.token_hex(3)
    watch = proxy.WatchRevocations(pb.WatchRevocationsRequest())
    first = await watch.read()
    assert first.ready
    await admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org)))
    event = await watch.read()
    watch.cancel()
    assert (event.reason, event.org_id, event.credential_id) == (pb.REVOCATION_REASON_SCOPE_CHANGED, org, "")
