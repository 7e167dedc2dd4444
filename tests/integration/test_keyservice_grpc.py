"""keyservice end to end over mTLS gRPC, on a real OpenBao and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.server import KeyServiceApp, create_server
from tests.support.bao import BaoDevServer
from tests.support.stack import ADMIN, CALLER, Identities, keys_stub, keyservice_settings, secure_channel


def fake_openai_key() -> str:
    return "sk-proj-" + secrets.token_urlsafe(36).replace("-", "a").replace("_", "b")




@pytest.fixture
async def app(bao: BaoDevServer, ids: Identities, database_url: str) -> AsyncIterator[KeyServiceApp]:
    app = await create_server(keyservice_settings(bao, ids, database_url))
    try:
        yield app
    finally:
        await app.stop(grace=0)


@pytest.fixture
async def admin(app: KeyServiceApp, ids: Identities) -> AsyncIterator[object]:
    async with secure_channel(app.port, ids.admin) as channel:
        yield keys_stub(channel)


@pytest.fixture
async def proxy(app: KeyServiceApp, ids: Identities) -> AsyncIterator[object]:
    async with secure_channel(app.port, ids.proxyservice) as channel:
        yield keys_stub(channel)


def create_request(org: str = "acme", key: str | None = None, **kw: object) -> pb.CreateCredentialRequest:
    params: dict[str, object] = dict(provider="openai", scope=pb.Scope(org_id=org), name="main",
                                     api_key=key or fake_openai_key())
    params.update(kw)
    return pb.CreateCredentialRequest(**params)  # type: ignore[arg-type]


async def test_lifecycle_never_returns_the_key(app: KeyServiceApp, admin, bao: BaoDevServer) -> None:
    key = fake_openai_key()
    created = (await admin.CreateCredential(create_request(key=key))).credential
    assert created.credential_id.startswith("cred_") and created.active
    assert created.key_hint == "sk-…" + key[-4:] and created.fingerprint.startswith("sha256:")
    assert created.secret_ref.version == 1 and created.secret_ref.mount == "secret"

    meta = json.loads(bao.cli("kv", "metadata", "get", "-format=json",
                              f"secret/{created.secret_ref.path}").stdout)["data"]["custom_metadata"]
    assert meta["org_id"] == "acme" and meta["provider"] == "openai" and meta["name"] == "main"
    assert meta["credential_id"] == created.credential_id and key not in json.dumps(meta)

    got = (await admin.GetCredential(pb.GetCredentialRequest(credential_id=created.credential_id))).credential
    assert got == created
    listed = await admin.ListCredentials(pb.ListCredentialsRequest(org_id="acme"))
    assert [c.credential_id for c in listed.credentials] == [created.credential_id]

    updated = (await admin.UpdateCredential(pb.UpdateCredentialRequest(
        credential_id=created.credential_id, name="renamed", default_model="gpt-4o"))).credential
    assert (updated.name, updated.default_model) == ("renamed", "gpt-4o")

    new_key = fake_openai_key()
    rotated = (await admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
        credential_id=created.credential_id, api_key=new_key))).credential
    assert rotated.secret_ref.version == 2 and rotated.key_hint.endswith(new_key[-4:])
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
            credential_id=created.credential_id, api_key=fake_openai_key(), expected_version=1))
    assert stale.value.code() == grpc.StatusCode.ABORTED

    off = (await admin.DeactivateCredential(pb.DeactivateCredentialRequest(
        credential_id=created.credential_id))).credential
    assert not off.active
    on = (await admin.ActivateCredential(pb.ActivateCredentialRequest(credential_id=created.credential_id)))
    assert on.credential.active

    await admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=created.credential_id))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await admin.GetCredential(pb.GetCredentialRequest(credential_id=created.credential_id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    missing = bao.cli("kv", "metadata", "get", f"secret/{created.secret_ref.path}", check=False)
    assert missing.returncode != 0  # every version and the metadata are gone

    events = (await admin.ListAuditEvents(pb.ListAuditEventsRequest(org_id="acme", page_size=100))).events
    actions = [e.action for e in events]
    for action in ("credential.create", "credential.update", "credential.rotate", "credential.deactivate",
                   "credential.activate"):
        assert action in actions
    assert all(e.actor == ADMIN for e in events if e.action.startswith("credential."))
    assert key not in repr(events) and new_key not in repr(events)


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda r: r.scope.ClearField("org_id"), "scope.org_id"),
    (lambda r: setattr(r, "provider", "nope"), "provider"),
    (lambda r: setattr(r, "api_key", "gsk_" + "x" * 40), "api_key"),
    (lambda r: setattr(r, "name", "bad name!"), "name"),
    (lambda r: setattr(r, "api_base", "http://evil.example.com"), "api_base"),
    (lambda r: r.scope.__setattr__("org_id", "../etc"), "scope.org_id"),
])
async def test_bad_input_names_the_field_and_changes_nothing(admin, mutate, field: str) -> None:
    request = create_request(org="badinput")
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.CreateCredential(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(field)
    assert request.api_key not in info.value.details()
    listed = await admin.ListCredentials(pb.ListCredentialsRequest(org_id="badinput"))
    assert list(listed.credentials) == []


async def test_duplicate_name_and_unknown_id(admin) -> None:
    await admin.CreateCredential(create_request(org="dup"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.CreateCredential(create_request(org="dup"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.GetCredential(pb.GetCredentialRequest(credential_id="cred_" + "0" * 24))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def _bind(admin, org: str, project: str = "") -> None:
    await admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org, project_id=project)))


async def test_lease_resolution_order_and_fallback(admin, proxy, app: KeyServiceApp) -> None:
    org_key, project_key, user_key = fake_openai_key(), fake_openai_key(), fake_openai_key()
    org = (await admin.CreateCredential(create_request(org="res", key=org_key))).credential
    proj = (await admin.CreateCredential(create_request(org="res", key=project_key, name="p",
                                                        scope=pb.Scope(org_id="res", project_id="web")))).credential
    user = (await admin.CreateCredential(create_request(
        org="res", key=user_key, name="u", scope=pb.Scope(org_id="res", project_id="web", user_id="ann")))).credential

    def lease_req(**scope: str) -> pb.IssueKeyLeaseRequest:
        return pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id="res", **scope), model="gpt-4o-mini",
                                       caller_identity=CALLER)

    with pytest.raises(grpc.aio.AioRpcError) as unbound:
        await proxy.IssueKeyLease(lease_req())
    assert unbound.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await _bind(admin, "res")

    lease = await proxy.IssueKeyLease(lease_req(project_id="web", user_id="ann"))
    assert (lease.api_key, lease.credential_id, lease.key_source) == (user_key, user.credential_id,
                                                                       pb.KEY_SOURCE_TENANT)
    assert lease.provider == "openai" and lease.api_family == "openai" and lease.lease_id.startswith("lease_")
    ttl = lease.expire_time.ToDatetime().timestamp() - time.time()
    assert 50 < ttl <= 61
    assert (await proxy.IssueKeyLease(lease_req(project_id="web", user_id="bob"))).api_key == project_key
    assert (await proxy.IssueKeyLease(lease_req(project_id="other"))).api_key == org_key

    await admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=user.credential_id))
    project_lease = await proxy.IssueKeyLease(lease_req(project_id="web", user_id="ann"))
    assert project_lease.api_key == project_key
    # Marking a key invalid takes a lease of that very credential, issued to the reporting proxy.
    refused_reports = [
        (pb.ReportKeyFailureRequest(credential_id=proj.credential_id, http_status=401),
         grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ReportKeyFailureRequest(credential_id=org.credential_id, http_status=401, lease_id=project_lease.lease_id),
         grpc.StatusCode.FAILED_PRECONDITION),
        (pb.ReportKeyFailureRequest(credential_id=proj.credential_id, http_status=403, lease_id="lease_" + "0" * 32),
         grpc.StatusCode.FAILED_PRECONDITION),
    ]
    for bad, code in refused_reports:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await proxy.ReportKeyFailure(bad)
        assert refused.value.code() == code
    assert (await proxy.IssueKeyLease(lease_req(project_id="other"))).api_key == org_key  # org key still served
    # A report without the provider's bad-key evidence is audited only: the key stays in service.
    await proxy.ReportKeyFailure(pb.ReportKeyFailureRequest(credential_id=proj.credential_id, http_status=401,
                                                            lease_id=project_lease.lease_id))
    assert (await proxy.IssueKeyLease(lease_req(project_id="web", user_id="ann"))).api_key == project_key
    excluded = lease_req(project_id="web")
    excluded.exclude_credential_ids.extend([org.credential_id, proj.credential_id])
    with pytest.raises(grpc.aio.AioRpcError) as none_left:
        await proxy.IssueKeyLease(excluded)
    assert none_left.value.code() == grpc.StatusCode.NOT_FOUND

    # Platform fallback: only when the org allows it and the platform has a key.
    await admin.SetOrgPolicy(pb.SetOrgPolicyRequest(policy=pb.OrgPolicy(org_id="res", allow_platform_fallback=True)))
    with pytest.raises(grpc.aio.AioRpcError):
        await proxy.IssueKeyLease(excluded)  # no OPENAI_API_KEY configured in this keyservice

    with pytest.raises(grpc.aio.AioRpcError) as wrong_role:
        await admin.IssueKeyLease(lease_req())
    assert wrong_role.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as wrong_role:
        await proxy.CreateCredential(create_request(org="res", name="x"))
    assert wrong_role.value.code() == grpc.StatusCode.PERMISSION_DENIED

    audit = (await admin.ListAuditEvents(pb.ListAuditEventsRequest(org_id="res", action="lease.issue"))).events
    assert len(audit) >= 4 and all(user_key not in e.details_json for e in audit)


async def test_revocations_reach_watchers_within_a_second(admin, proxy) -> None:
    created = (await admin.CreateCredential(create_request(org="rev"))).credential
    stream = proxy.WatchRevocations(pb.WatchRevocationsRequest())
    first = await asyncio.wait_for(stream.read(), 5)
    assert first.ready
    latencies = []
    for action in ("deactivate", "rotate", "delete"):
        started = time.perf_counter()
        if action == "deactivate":
            await admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=created.credential_id))
            reason = pb.REVOCATION_REASON_DEACTIVATED
        elif action == "rotate":
            await admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                credential_id=created.credential_id, api_key=fake_openai_key()))
            reason = pb.REVOCATION_REASON_ROTATED
        else:
            await admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=created.credential_id))
            reason = pb.REVOCATION_REASON_DELETED
        while True:
            event = await asyncio.wait_for(stream.read(), 2)
            if event.credential_id == created.credential_id and event.reason == reason:
                break
        latencies.append(time.perf_counter() - started)
    stream.cancel()
    assert max(latencies) < 1.0, latencies


async def test_mtls_refuses_unauthenticated_and_untrusted(app: KeyServiceApp, ids: Identities,
                                                          tmp_path: Path) -> None:
    import datetime as dt

    from byokcommon.devcerts import CertificateAuthority

    def handled() -> float:
        """ListProviders calls that reached the servicer (past the TLS handshake), whatever their status."""
        return sum(s.value for m in app.metrics.requests.collect() for s in m.samples
                   if s.name.endswith("_total") and s.labels.get("method") == "ListProviders")

    async def call(creds: grpc.ChannelCredentials) -> grpc.StatusCode:
        async with grpc.aio.secure_channel(f"localhost:{app.port}", creds) as channel:
            try:
                await keys_stub(channel).ListProviders(pb.ListProvidersRequest(), timeout=3)
                return grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                return exc.code()

    ca_pem = Path(ids.admin.ca).read_bytes()
    # UNAVAILABLE is how a client sees a refused handshake; `handled()` shows the server refused it there.
    assert await call(grpc.ssl_channel_credentials(root_certificates=ca_pem)) == grpc.StatusCode.UNAVAILABLE
    other = CertificateAuthority.create("other CA").write_identity(tmp_path / "other", "admin",
                                                                  spiffe=ADMIN)
    other_creds = grpc.ssl_channel_credentials(ca_pem, Path(other.key).read_bytes(), Path(other.cert).read_bytes())
    assert await call(other_creds) == grpc.StatusCode.UNAVAILABLE
    now = dt.datetime.now(dt.UTC)
    expired = ids.ca.write_identity(tmp_path / "expired", "admin", spiffe=ADMIN,
                                    not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1))
    expired_creds = grpc.ssl_channel_credentials(ca_pem, Path(expired.key).read_bytes(),
                                                 Path(expired.cert).read_bytes())
    assert await call(expired_creds) == grpc.StatusCode.UNAVAILABLE
    assert handled() == 0  # none of the three got past the handshake
    stranger = ids.ca.write_identity(tmp_path / "stranger", "stranger", spiffe="spiffe://byok.local/stranger")
    stranger_creds = grpc.ssl_channel_credentials(ca_pem, Path(stranger.key).read_bytes(),
                                                  Path(stranger.cert).read_bytes())
    assert await call(stranger_creds) == grpc.StatusCode.PERMISSION_DENIED
    assert handled() == 1  # the stranger's call reached the interceptor, which refused it
    assert await call(grpc.ssl_channel_credentials(ca_pem, Path(ids.admin.key).read_bytes(),
                                                   Path(ids.admin.cert).read_bytes())) == grpc.StatusCode.OK
    assert handled() == 2


async def test_db_holds_no_key_material(app: KeyServiceApp, admin, database_url: str, tmp_path: Path) -> None:
    keys = [fake_openai_key() for _ in range(3)]
    created = (await admin.CreateCredential(create_request(org="leak", key=keys[0]))).credential
    await admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(credential_id=created.credential_id,
                                                                        api_key=keys[1]))
    await admin.CreateCredential(create_request(org="leak", key=keys[2], name="second"))
    if database_url.startswith("sqlite"):
        app.store.close()
        blob = b"".join(p.read_bytes() for p in tmp_path.glob("ks.db*"))
    else:
        url = database_url.replace("postgresql+psycopg://", "postgresql://")
        blob = subprocess.run(["pg_dump", url], capture_output=True, check=True, timeout=60).stdout
        assert b"CREATE TABLE" in blob
    for key in keys:
        for form in (key.encode(), base64.b64encode(key.encode()), key.encode().hex().encode(),
                     base64.b64encode(key.encode()).rstrip(b"=")[:-4]):
            assert form not in blob
