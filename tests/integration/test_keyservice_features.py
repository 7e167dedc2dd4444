"""keyservice features over mTLS gRPC on a real OpenBao and real databases: registering ops' imports, provider
verification against the local fake upstream, envelope mode with transit rotation and rewrap, pagination and
filters, primary flags, platform fallback, caller unbinding, org revocation, destruction of old secret
versions, AppRole auth, and revocations crossing replicas through PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as pb
from devstack.ports import free_port
from devstack.upstream import FakeUpstream, UpstreamConfig
from keyservice.server import KeyServiceApp, create_server
from keyservice.settings import KeyServiceSettings
from tests.support.bao import BaoDevServer
from tests.support.stack import CALLER, Identities, keys_stub, keyservice_settings, secure_channel, upstream_base_urls


def fake_openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(24)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class Running:
    app: KeyServiceApp
    admin: Any
    proxy: Any


@asynccontextmanager
async def running(settings: KeyServiceSettings, ids: Identities, *, migrate: bool = True
                  ) -> AsyncIterator[Running]:
    app = await create_server(settings, migrate=migrate)
    try:
        async with secure_channel(app.port, ids.admin) as a, secure_channel(app.port, ids.proxyservice) as p:
            yield Running(app, keys_stub(a), keys_stub(p))
    finally:
        await app.stop(grace=0)



@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ks.db"


def create_request(org: str, name: str, key: str | None = None, **kw: Any) -> pb.CreateCredentialRequest:
    params: dict[str, Any] = dict(provider="openai", scope=pb.Scope(org_id=org), name=name,
                                  api_key=key or fake_openai_key())
    params.update(kw)
    return pb.CreateCredentialRequest(**params)


async def bind(admin: Any, org: str, project: str = "") -> None:
    await admin.CreateCallerBinding(pb.CreateCallerBindingRequest(
        binding=pb.CallerBinding(caller_identity=CALLER, org_id=org, project_id=project)))


def lease_request(org: str, **kw: Any) -> pb.IssueKeyLeaseRequest:
    return pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id=org), provider="openai", caller_identity=CALLER, **kw)


async def next_event(stream: Any, match: Any, timeout: float = 3.0) -> pb.WatchRevocationsResponse:
    """The first event on the stream that satisfies `match`, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        event = await asyncio.wait_for(stream.read(), max(0.01, deadline - time.monotonic()))
        assert event is not grpc.aio.EOF
        if match(event):
            return event


async def watch(proxy: Any) -> Any:
    stream = proxy.WatchRevocations(pb.WatchRevocationsRequest())
    assert (await asyncio.wait_for(stream.read(), 5)).ready
    return stream


# -- register ---------------------------------------------------------------------------------------------------

async def test_register_an_ops_import_then_lease_it(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    settings = keyservice_settings(bao, ids, sqlite_url)
    key = fake_openai_key()
    path = f"{settings.vault.kv_prefix}/imports/x"
    bao.cli("kv", "put", f"secret/{path}", "api_key=-", input=key)  # ops' way: the key on stdin
    async with running(settings, ids) as ks:
        created = (await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
            provider="openai", scope=pb.Scope(org_id="reg"), name="imported", vault_path=path))).credential
        assert created.secret_ref.path == path and created.secret_ref.version == 1
        assert created.key_hint.endswith(key[-4:])
        await bind(ks.admin, "reg")
        lease = await ks.proxy.IssueKeyLease(lease_request("reg"))
        assert (lease.api_key, lease.credential_id) == (key, created.credential_id)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
                provider="openai", scope=pb.Scope(org_id="reg"), name="none", vault_path=path + "-nope"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_register_refuses_a_secret_another_credential_uses(bao: BaoDevServer, ids: Identities,
                                                                 sqlite_url: str) -> None:
    settings = keyservice_settings(bao, ids, sqlite_url)
    prefix = settings.vault.kv_prefix
    key_a, key_import = fake_openai_key(), fake_openai_key()
    import_path = f"{prefix}/imports/shared"
    bao.cli("kv", "put", f"secret/{import_path}", "api_key=-", input=key_import)

    async def register(org: str, name: str, path: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
                provider="openai", scope=pb.Scope(org_id=org), name=name, vault_path=path))
        details = refused.value.details() or ""
        assert "vault_path" in details and key_a not in details and key_import not in details
        return refused.value

    async with running(settings, ids) as ks:
        owned = (await ks.admin.CreateCredential(create_request("org-a", "main", key_a))).credential
        # 1. Another org's managed secret (plain KV mode: registering it would hand org B org A's key).
        refused = await register("org-b", "stolen", owned.secret_ref.path)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "managed layout" in (refused.details() or "")
        # 2. A secret tagged managed_by outside the layout: an import that is already registered.
        first = (await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
            provider="openai", scope=pb.Scope(org_id="org-a"), name="imported", vault_path=import_path))).credential
        refused = await register("org-b", "imported", import_path)
        assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "managed by keyservice" in (refused.details() or "") and first.credential_id in refused.details()
        # 3. A path a row references but whose tag is gone (a register that crashed before tagging, or ops
        #    rewrote the metadata): the store's reference check (and unique index) refuses it.
        bao.api("POST", f"secret/metadata/{import_path}", json={"custom_metadata": {"note": "ops"}}
                ).raise_for_status()
        assert "managed_by" not in bao.api("GET", f"secret/metadata/{import_path}").json()["data"]["custom_metadata"]
        refused = await register("org-b", "imported", import_path)
        assert refused.code() == grpc.StatusCode.ALREADY_EXISTS and "already referenced" in (refused.details() or "")

        assert (await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id="org-b"))).credentials == []
        await bind(ks.admin, "org-a")
        lease = await ks.proxy.IssueKeyLease(lease_request("org-a", credential_id=owned.credential_id))
        assert lease.api_key == key_a
        # Each secret still serves exactly one credential, so deleting one leaves the other's key intact.
        await ks.admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=first.credential_id))
        lease = await ks.proxy.IssueKeyLease(lease_request("org-a", credential_id=owned.credential_id))
        assert lease.api_key == key_a


# -- verify -----------------------------------------------------------------------------------------------------

@asynccontextmanager
async def http_429_server() -> AsyncIterator[str]:
    """A loopback HTTP server that answers every request 429 (the fake upstream only rate-limits chats)."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    finally:
        server.close()
        await server.wait_closed()


async def test_verify_records_health_from_the_provider(bao: BaoDevServer, ids: Identities,
                                                       sqlite_url: str) -> None:
    good = fake_openai_key()
    upstream = FakeUpstream(UpstreamConfig(keys={"openai": {good}}))
    await upstream.start()
    try:
        settings = keyservice_settings(bao, ids, sqlite_url, provider_base_urls=upstream_base_urls(upstream.base_url),
                                       verify_timeout_seconds=2.0)
        async with running(settings, ids) as ks, http_429_server() as limited_base:
            ok = (await ks.admin.CreateCredential(create_request("ver", "ok", good))).credential
            bad = (await ks.admin.CreateCredential(create_request("ver", "bad"))).credential
            limited = (await ks.admin.CreateCredential(create_request("ver", "limited",
                                                                      api_base=limited_base))).credential
            gone = (await ks.admin.CreateCredential(create_request(
                "ver", "gone", api_base=f"http://127.0.0.1:{free_port()}/v1"))).credential
            stream = await watch(ks.proxy)

            expected = {ok.credential_id: (pb.CREDENTIAL_HEALTH_ACTIVE, 200),
                        bad.credential_id: (pb.CREDENTIAL_HEALTH_INVALID, 401),
                        limited.credential_id: (pb.CREDENTIAL_HEALTH_RATE_LIMITED, 429),
                        gone.credential_id: (pb.CREDENTIAL_HEALTH_UNREACHABLE, 0)}
            for credential_id, (health, status) in expected.items():
                before = time.time()
                answer = await ks.admin.VerifyCredential(pb.VerifyCredentialRequest(credential_id=credential_id))
                assert (answer.credential.health, answer.http_status) == (health, status)
                assert answer.credential.HasField("last_verify_time")
                assert answer.credential.last_verify_time.ToDatetime().timestamp() >= before - 1
            event = await next_event(stream, lambda e: e.credential_id == bad.credential_id)
            assert event.reason == pb.REVOCATION_REASON_INVALID
            stream.cancel()
            # The key went in a header, never in the URL.
            assert all(good not in r.path for r in upstream.requests)
            await bind(ks.admin, "ver")
            lease = await ks.proxy.IssueKeyLease(lease_request("ver", exclude_credential_ids=[ok.credential_id]))
            assert lease.credential_id != bad.credential_id  # an invalid credential is not leased
    finally:
        await upstream.stop()


# -- envelope mode ----------------------------------------------------------------------------------------------

@pytest.fixture
def transit_mount(bao: BaoDevServer) -> Any:
    mount = unique("transit-features")
    bao.cli("secrets", "enable", f"-path={mount}", "transit")
    yield mount
    bao.cli("secrets", "disable", mount, check=False)


async def test_envelope_mode_rotation_and_rewrap(bao: BaoDevServer, ids: Identities, sqlite_url: str,
                                                 transit_mount: str) -> None:
    transit_key = unique("byok-features")
    settings = keyservice_settings(bao, ids, sqlite_url,
                                   vault={"transit_key": transit_key, "transit_mount": transit_mount})
    keys = [fake_openai_key() for _ in range(3)]
    async with running(settings, ids) as ks:
        created = [(await ks.admin.CreateCredential(create_request(f"env{i % 2}", f"c{i}", key))).credential
                   for i, key in enumerate(keys)]
        for cred, key in zip(created, keys, strict=True):
            assert cred.secret_ref.transit_key == transit_key and cred.secret_ref.transit_key_version == 1
            raw = bao.api("GET", f"secret/data/{cred.secret_ref.path}").json()["data"]["data"]
            assert set(raw) == {"ciphertext", "transit_key"} and raw["ciphertext"].startswith("vault:v1:")
            text = json.dumps(raw)
            assert key not in text and base64.b64encode(key.encode()).decode() not in text
        for i in range(2):
            await bind(ks.admin, f"env{i}")
        lease = await ks.proxy.IssueKeyLease(lease_request("env0", credential_id=created[0].credential_id))
        assert lease.api_key == keys[0]

        bao.cli("write", "-f", f"{transit_mount}/keys/{transit_key}/rotate")
        answer = await ks.admin.RewrapSecrets(pb.RewrapSecretsRequest())
        assert (answer.rewrapped_count, answer.min_transit_key_version) == (3, 2)
        for cred, key in zip(created, keys, strict=True):
            now = (await ks.admin.GetCredential(pb.GetCredentialRequest(
                credential_id=cred.credential_id))).credential
            assert now.secret_ref.transit_key_version == 2 and now.secret_ref.version == 2
            raw = bao.api("GET", f"secret/data/{cred.secret_ref.path}").json()["data"]["data"]
            assert raw["ciphertext"].startswith("vault:v2:") and key not in json.dumps(raw)
            org = cred.scope.org_id
            lease = await ks.proxy.IssueKeyLease(lease_request(org, credential_id=cred.credential_id))
            assert (lease.api_key, lease.secret_version) == (key, 2)
        again = await ks.admin.RewrapSecrets(pb.RewrapSecretsRequest())
        assert (again.rewrapped_count, again.min_transit_key_version) == (0, 2)


async def test_rotation_in_envelope_mode_records_the_transit_key(bao: BaoDevServer, ids: Identities,
                                                                 sqlite_url: str, transit_mount: str) -> None:
    """A row with no transit key (an ops import, or created before envelope mode) holds ciphertext once it is
    rotated in envelope mode: the row must say so, or rewrap skips it and raising min_decryption_version
    makes it undecryptable."""
    transit_key = unique("byok-rotenv")
    settings = keyservice_settings(bao, ids, sqlite_url,
                                   vault={"transit_key": transit_key, "transit_mount": transit_mount})
    prefix = settings.vault.kv_prefix
    paths = [f"{prefix}/imports/plain{i}" for i in range(2)]
    for path in paths:
        bao.cli("kv", "put", f"secret/{path}", "api_key=-", input=fake_openai_key())
    new_keys = [fake_openai_key() for _ in paths]
    async with running(settings, ids) as ks:
        await bind(ks.admin, "rotenv")
        creds = []
        for i, (path, key) in enumerate(zip(paths, new_keys, strict=True)):
            imported = (await ks.admin.RegisterCredential(pb.RegisterCredentialRequest(
                provider="openai", scope=pb.Scope(org_id="rotenv"), name=f"imp{i}", vault_path=path))).credential
            assert imported.secret_ref.transit_key == ""  # a plain value
            rotated = (await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                credential_id=imported.credential_id, api_key=key))).credential
            assert (rotated.secret_ref.transit_key, rotated.secret_ref.transit_key_version) == (transit_key, 1)
            assert bao.api("GET", f"secret/data/{path}").json()["data"]["data"]["ciphertext"].startswith("vault:v1:")
            creds.append(rotated)
        # A row left by a rotation before this fix (ciphertext in Vault, no transit key on the row):
        # RewrapSecrets finds it from the secret itself and records it.
        await asyncio.to_thread(ks.app.store.update_credential, creds[1].credential_id, transit_key="",
                                transit_key_version=0)

        bao.cli("write", "-f", f"{transit_mount}/keys/{transit_key}/rotate")
        answer = await ks.admin.RewrapSecrets(pb.RewrapSecretsRequest(org_id="rotenv"))
        assert (answer.rewrapped_count, answer.min_transit_key_version) == (2, 2)
        bao.cli("write", f"{transit_mount}/keys/{transit_key}/config", "min_decryption_version=2")
        for cred, key in zip(creds, new_keys, strict=True):
            now = (await ks.admin.GetCredential(pb.GetCredentialRequest(
                credential_id=cred.credential_id))).credential
            assert (now.secret_ref.transit_key, now.secret_ref.transit_key_version) == (transit_key, 2)
            lease = await ks.proxy.IssueKeyLease(lease_request("rotenv", credential_id=cred.credential_id))
            assert lease.api_key == key  # still decryptable after the old transit version was retired


async def test_rewrap_keeps_the_key_the_row_serves(bao: BaoDevServer, ids: Identities, sqlite_url: str,
                                                   transit_mount: str) -> None:
    """After a rotation that wrote Vault but never moved its row (a crash, or a lost compare-and-set), Vault's
    current version holds a key the row never served; rewrap must rewrap the row's version, not that one."""
    transit_key = unique("byok-rewrap-row")
    settings = keyservice_settings(bao, ids, sqlite_url,
                                   vault={"transit_key": transit_key, "transit_mount": transit_mount})
    served, unserved = fake_openai_key(), fake_openai_key()
    async with running(settings, ids) as ks:
        await bind(ks.admin, "rowver")
        cred = (await ks.admin.CreateCredential(create_request("rowver", "k", served))).credential
        path = cred.secret_ref.path
        # The lost rotation: Vault version 2, row still on 1.
        await asyncio.to_thread(ks.app.vault.write_secret, path, unserved, org_id="rowver", cas=1,
                                metadata={"org_id": "rowver", "credential_id": cred.credential_id})
        bao.cli("write", "-f", f"{transit_mount}/keys/{transit_key}/rotate")
        answer = await ks.admin.RewrapSecrets(pb.RewrapSecretsRequest(org_id="rowver"))
        assert (answer.rewrapped_count, answer.min_transit_key_version) == (1, 2)
        now = (await ks.admin.GetCredential(pb.GetCredentialRequest(credential_id=cred.credential_id))).credential
        assert (now.secret_ref.version, now.secret_ref.transit_key_version) == (3, 2)  # on top of version 2
        lease = await ks.proxy.IssueKeyLease(lease_request("rowver", credential_id=cred.credential_id))
        assert (lease.api_key, lease.secret_version) == (served, 3)  # the same key as before the rewrap
        # And the credential still rotates normally afterwards.
        newest = fake_openai_key()
        rotated = (await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
            credential_id=cred.credential_id, api_key=newest))).credential
        assert rotated.secret_ref.version == 4
        lease = await ks.proxy.IssueKeyLease(lease_request("rowver", credential_id=cred.credential_id))
        assert lease.api_key == newest


# -- listing, primaries, fallback, bindings, revoke, old versions ----------------------------------------------

async def test_list_pagination_and_filters(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        made = []
        for i in range(7):
            scope = pb.Scope(org_id="pages", project_id="web" if i % 2 else "")
            made.append((await ks.admin.CreateCredential(create_request("pages", f"k{i}", scope=scope))).credential)
        made.append((await ks.admin.CreateCredential(pb.CreateCredentialRequest(
            provider="anthropic", scope=pb.Scope(org_id="pages"), name="claude",
            api_key="sk-ant-api03-" + secrets.token_hex(24)))).credential)
        await ks.admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=made[0].credential_id))

        pages, token = [], ""
        while True:
            page = await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id="pages", page_size=3,
                                                                            page_token=token))
            pages.append([c.credential_id for c in page.credentials])
            token = page.next_page_token
            if not token:
                break
        assert [len(p) for p in pages] == [3, 3, 2]
        assert [cid for p in pages for cid in p] == [c.credential_id for c in made]  # creation order, no dupes

        async def ids_of(**kw: Any) -> list[str]:
            page = await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id="pages", page_size=100, **kw))
            return [c.credential_id for c in page.credentials]

        assert await ids_of(provider="anthropic") == [made[7].credential_id]
        assert await ids_of(active=False) == [made[0].credential_id]
        assert len(await ids_of(active=True)) == 7
        assert await ids_of(project_id="web") == [c.credential_id for c in made[1:7:2]]
        assert await ids_of(provider="openai", project_id="web", active=True) == \
            [c.credential_id for c in made[1:7:2]]
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await ks.admin.ListCredentials(pb.ListCredentialsRequest(page_token="garbage"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_primary_is_exclusive_and_preferred(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        await bind(ks.admin, "prim")
        oldest = (await ks.admin.CreateCredential(create_request("prim", "oldest"))).credential
        a = (await ks.admin.CreateCredential(create_request("prim", "a", primary=True))).credential
        b = (await ks.admin.CreateCredential(create_request("prim", "b", primary=True))).credential

        async def primaries() -> set[str]:
            page = await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id="prim"))
            return {c.credential_id for c in page.credentials if c.primary}

        assert await primaries() == {b.credential_id}  # creating b as primary cleared a
        assert (await ks.proxy.IssueKeyLease(lease_request("prim"))).credential_id == b.credential_id
        await ks.admin.UpdateCredential(pb.UpdateCredentialRequest(credential_id=a.credential_id, primary=True))
        assert await primaries() == {a.credential_id}
        assert (await ks.proxy.IssueKeyLease(lease_request("prim"))).credential_id == a.credential_id
        await ks.admin.UpdateCredential(pb.UpdateCredentialRequest(credential_id=a.credential_id, primary=False))
        assert await primaries() == set()
        assert (await ks.proxy.IssueKeyLease(lease_request("prim"))).credential_id == oldest.credential_id


async def test_platform_fallback_only_where_allowed(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    platform_key = fake_openai_key()
    settings = keyservice_settings(bao, ids, sqlite_url, platform_keys={"OPENAI_API_KEY": platform_key})
    async with running(settings, ids) as ks:
        for org in ("allowed", "denied"):
            await bind(ks.admin, org)
        await ks.admin.SetOrgPolicy(pb.SetOrgPolicyRequest(
            policy=pb.OrgPolicy(org_id="allowed", allow_platform_fallback=True)))
        assert (await ks.admin.GetOrgPolicy(pb.GetOrgPolicyRequest(org_id="allowed"))).policy.allow_platform_fallback
        lease = await ks.proxy.IssueKeyLease(lease_request("allowed"))
        assert (lease.key_source, lease.api_key, lease.credential_id) == (pb.KEY_SOURCE_PLATFORM, platform_key, "")
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await ks.proxy.IssueKeyLease(lease_request("denied"))
        assert denied.value.code() == grpc.StatusCode.NOT_FOUND
        own = (await ks.admin.CreateCredential(create_request("allowed", "own"))).credential
        lease = await ks.proxy.IssueKeyLease(lease_request("allowed"))  # a tenant key wins over the platform's
        assert (lease.key_source, lease.credential_id) == (pb.KEY_SOURCE_TENANT, own.credential_id)


async def test_list_tenant_models_follows_lease_resolution(bao: BaoDevServer, ids: Identities,
                                                           sqlite_url: str) -> None:
    settings = keyservice_settings(bao, ids, sqlite_url, platform_keys={"OPENAI_API_KEY": fake_openai_key()})
    async with running(settings, ids) as ks:
        await bind(ks.admin, "reach")
        org_key = (await ks.admin.CreateCredential(create_request("reach", "org-wide"))).credential
        user_key = (await ks.admin.CreateCredential(create_request(
            "reach", "mine", scope=pb.Scope(org_id="reach", user_id="u1"), default_model="gpt-4.1"))).credential
        off = (await ks.admin.CreateCredential(create_request(
            "reach", "off", provider="anthropic", api_key="sk-ant-api03-" + secrets.token_hex(24)))).credential
        await ks.admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=off.credential_id))

        async def models(user: str = "", caller: str = CALLER) -> list[tuple[str, str, int, str]]:
            reply = await ks.proxy.ListTenantModels(pb.ListTenantModelsRequest(
                scope=pb.Scope(org_id="reach", user_id=user), caller_identity=caller))
            return [(m.provider, m.model, m.key_source, m.credential_id) for m in reply.models]

        default = org_key.default_model or "gpt-4o-mini"
        assert await models() == [("openai", default, pb.KEY_SOURCE_TENANT, org_key.credential_id)]
        assert await models("u1") == [("openai", "gpt-4.1", pb.KEY_SOURCE_TENANT, user_key.credential_id),
                                      ("openai", default, pb.KEY_SOURCE_TENANT, org_key.credential_id)]
        await ks.admin.SetOrgPolicy(pb.SetOrgPolicyRequest(
            policy=pb.OrgPolicy(org_id="reach", allow_platform_fallback=True)))
        await ks.admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=org_key.credential_id))
        assert [m[2] for m in await models()] == [pb.KEY_SOURCE_PLATFORM]  # the deactivated Anthropic key: none
        with pytest.raises(grpc.aio.AioRpcError) as unbound:
            await models(caller="spiffe://byok.local/caller/stranger")
        assert unbound.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as admin_only:
            await ks.admin.ListTenantModels(pb.ListTenantModelsRequest(scope=pb.Scope(org_id="reach"),
                                                                       caller_identity=CALLER))
        assert admin_only.value.code() == grpc.StatusCode.PERMISSION_DENIED  # a proxy-role RPC


async def test_unbinding_a_caller_and_revoking_an_org(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        creds = [(await ks.admin.CreateCredential(create_request("cut", f"k{i}"))).credential for i in range(3)]
        other = (await ks.admin.CreateCredential(create_request("keep", "k"))).credential
        await bind(ks.admin, "cut")
        await ks.proxy.IssueKeyLease(lease_request("cut"))
        stream = await watch(ks.proxy)

        await ks.admin.DeleteCallerBinding(pb.DeleteCallerBindingRequest(caller_identity=CALLER, org_id="cut"))
        event = await next_event(stream, lambda e: e.reason == pb.REVOCATION_REASON_CALLER_UNBOUND)
        assert (event.caller_identity, event.org_id) == (CALLER, "cut")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.proxy.IssueKeyLease(lease_request("cut"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

        answer = await ks.admin.RevokeOrg(pb.RevokeOrgRequest(org_id="cut"))
        assert answer.deactivated_count == 3
        wanted = {c.credential_id for c in creds}
        seen: set[str] = set()
        while seen != wanted:
            event = await next_event(stream, lambda e: e.reason == pb.REVOCATION_REASON_DEACTIVATED)
            assert event.org_id == "cut"
            seen.add(event.credential_id)
        stream.cancel()
        listed = (await ks.admin.ListCredentials(pb.ListCredentialsRequest(org_id="cut"))).credentials
        assert [c.active for c in listed] == [False] * 3
        kept = (await ks.admin.GetCredential(pb.GetCredentialRequest(credential_id=other.credential_id))).credential
        assert kept.active
        events = (await ks.admin.ListAuditEvents(pb.ListAuditEventsRequest(org_id="cut", action="org.revoke"))).events
        assert len(events) == 1
        assert (await ks.admin.RevokeOrg(pb.RevokeOrgRequest(org_id="cut"))).deactivated_count == 0


async def test_old_secret_versions_are_destroyed(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    async with running(keyservice_settings(bao, ids, sqlite_url, keep_secret_versions=2), ids) as ks:
        cred = (await ks.admin.CreateCredential(create_request("old", "k"))).credential
        for _ in range(4):
            cred = (await ks.admin.RotateCredentialSecret(pb.RotateCredentialSecretRequest(
                credential_id=cred.credential_id, api_key=fake_openai_key()))).credential
        assert cred.secret_ref.version == 5
        meta = json.loads(bao.cli("kv", "metadata", "get", "-format=json",
                                  f"secret/{cred.secret_ref.path}").stdout)["data"]
        destroyed = {int(v): info["destroyed"] for v, info in meta["versions"].items()}
        # The current version and keep_secret_versions=2 older ones stay; the rest are destroyed.
        assert destroyed == {1: True, 2: True, 3: False, 4: False, 5: False}
        gone = bao.cli("kv", "get", "-version=2", f"secret/{cred.secret_ref.path}", check=False)
        assert "api_key" not in gone.stdout


# -- AppRole ----------------------------------------------------------------------------------------------------

async def test_approle_auth_serves_create_and_lease(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    mount, policy, role = unique("approle-ks"), unique("byok-ks"), "keyservice"
    prefix = unique("byok-approle")
    bao.cli("auth", "enable", f"-path={mount}", "approle")
    try:
        bao.cli("policy", "write", policy, "-", input=f"""
path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}
path "secret/metadata/{prefix}" {{ capabilities = ["list"] }}
path "secret/destroy/{prefix}/*" {{ capabilities = ["update"] }}
""")
        bao.cli("write", f"auth/{mount}/role/{role}", f"token_policies={policy}", "token_ttl=5m")
        role_id = json.loads(bao.cli("read", "-format=json", f"auth/{mount}/role/{role}/role-id").stdout
                             )["data"]["role_id"]
        secret_id = json.loads(bao.cli("write", "-f", "-format=json", f"auth/{mount}/role/{role}/secret-id").stdout
                               )["data"]["secret_id"]
        settings = keyservice_settings(bao, ids, sqlite_url, vault={
            "auth": "approle", "token": None, "role_id": role_id, "secret_id": secret_id,
            "approle_mount": mount, "kv_prefix": prefix})
        key = fake_openai_key()
        async with running(settings, ids) as ks:
            cred = (await ks.admin.CreateCredential(create_request("app", "k", key))).credential
            await bind(ks.admin, "app")
            assert (await ks.proxy.IssueKeyLease(lease_request("app"))).api_key == key
            await ks.admin.DeleteCredential(pb.DeleteCredentialRequest(credential_id=cred.credential_id))
    finally:
        bao.cli("auth", "disable", mount, check=False)
        bao.cli("policy", "delete", policy, check=False)


# -- replicas ---------------------------------------------------------------------------------------------------

async def test_revocation_reaches_another_replica_within_a_second(bao: BaoDevServer, ids: Identities,
                                                                   postgres_url: str) -> None:
    settings = keyservice_settings(bao, ids, postgres_url)
    async with running(settings, ids) as a, running(settings, ids, migrate=False) as b:
        creds = [(await a.admin.CreateCredential(create_request("repl", f"k{i}"))).credential for i in range(3)]
        stream = await watch(b.proxy)
        latencies = []
        for cred in creds:
            started = time.perf_counter()
            await a.admin.DeactivateCredential(pb.DeactivateCredentialRequest(credential_id=cred.credential_id))
            await next_event(stream, lambda e, cid=cred.credential_id: e.credential_id == cid
                             and e.reason == pb.REVOCATION_REASON_DEACTIVATED)
            latencies.append(time.perf_counter() - started)
        stream.cancel()
    print(f"cross-replica revocation latency (deactivate on A -> event on B's stream): "
          f"{', '.join(f'{x * 1000:.1f} ms' for x in latencies)}")
    assert max(latencies) < 1.0, latencies
