"""The proxy's keyservice client over several keyservice replicas (BYOK_KEYSERVICE_ADDR as a gRPC target that
resolves to several addresses): calls are balanced round robin over them, a replica that is stopped leaves the
balancing without a failed call, and the revocation watch it carried reopens on the surviving replica and
delivers what that replica revokes. Two real keyservice replicas on one database and a real OpenBao."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokcommon.settings import SettingsError
from keyservice.server import KeyServiceApp, create_server
from proxyservice.keyclient import KeyServiceClient, LeaseKey
from proxyservice.leasecache import LeaseCache
from proxyservice.revocations import follow_revocations
from proxyservice.settings import ProxySettings
from tests.integration.test_byokctl import fake_openai_key
from tests.support.bao import BaoDevServer
from tests.support.stack import CALLER, Identities, keyservice_settings, secure_channel


def served(app: KeyServiceApp, method: str) -> float:
    """IssueKeyLease (or another method) calls this replica answered, from its own metrics."""
    total = 0.0
    for metric in app.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "byok_rpc_requests_total" and method in sample.labels.get("method", ""):
                total += sample.value
    return total


def watchers(app: KeyServiceApp) -> int:
    """Subscribers of this replica's revocation feed: its open WatchRevocations streams, and its own forgetting of
    derived credentials (compare with a count taken before a proxy connects)."""
    return len(app.feed._subscribers)  # noqa: SLF001 - the only place the server keeps them


class CountingEvent(asyncio.Event):
    """The follower's `connected` event, counting how often it was set (once per stream that reached READY)."""

    sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


@pytest.fixture
async def replicas(bao: BaoDevServer, tmp_path: Path) -> AsyncIterator[tuple[Identities, list[KeyServiceApp]]]:
    ids = Identities.create(tmp_path / "certs")
    prefix = "byok-balance-" + secrets.token_hex(4)
    apps = [await create_server(keyservice_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db",
                                                    vault={"kv_prefix": prefix}), reconcile=False)
            for _ in range(2)]
    try:
        yield ids, apps
    finally:
        for app in apps:
            await app.stop(grace=0)


async def tenant(ids: Identities, app: KeyServiceApp) -> tuple[str, str]:
    """A bound org with one credential: (org, credential id)."""
    org = "balance-" + secrets.token_hex(3)
    async with secure_channel(app.port, ids.admin) as channel:
        admin = kpb_grpc.KeyServiceStub(channel)
        await admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
            binding=kpb.CallerBinding(caller_identity=CALLER, org_id=org)), timeout=10)
        reply = await admin.CreateCredential(kpb.CreateCredentialRequest(
            provider="openai", scope=kpb.Scope(org_id=org), name="main", api_key=fake_openai_key()), timeout=10)
    return org, reply.credential.credential_id


def client(ids: Identities, apps: list[KeyServiceApp]) -> KeyServiceClient:
    target = "ipv4:" + ",".join(f"127.0.0.1:{app.port}" for app in apps)
    return KeyServiceClient(target, ids.proxyservice, server_name="localhost", timeout=5)


def lease_key(org: str) -> LeaseKey:
    return LeaseKey(caller=CALLER, org_id=org, project_id="", user_id="", provider="openai", model="",
                    credential_id="")


def test_the_keyservice_address_may_be_a_target_naming_several_replicas(tmp_path: Path) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    env = {"BYOK_TLS_CERT": str(tmp_path / "tls.crt"), "BYOK_TLS_KEY": str(tmp_path / "tls.key"),
           "BYOK_TLS_CA": str(tmp_path / "ca.crt")}
    for target in ("keyservice:8443", "dns:///byok-keyservice-headless.byok.svc:8443",
                   "dns://10.0.0.10/keyservice:8443", "ipv4:127.0.0.1:1001,127.0.0.1:1002", "ipv6:[::1]:8443"):
        assert ProxySettings.from_env(env | {"BYOK_KEYSERVICE_ADDR": target}).keyservice_addr == target
    for bad in ("dns:///", "ipv4:127.0.0.1", "ipv4:127.0.0.1:1,127.0.0.1:x", "keyservice"):
        with pytest.raises(SettingsError, match="BYOK_KEYSERVICE_ADDR"):
            ProxySettings.from_env(env | {"BYOK_KEYSERVICE_ADDR": bad})


async def test_leases_are_balanced_and_a_stopped_replica_costs_no_call(
        replicas: tuple[Identities, list[KeyServiceApp]]) -> None:
    ids, apps = replicas
    org, _ = await tenant(ids, apps[0])
    keys = client(ids, apps)
    try:
        for _ in range(20):
            await keys.issue_lease(lease_key(org))
        # Both replicas answered (round robin over every address; pick_first would have used one).
        assert served(apps[0], "IssueKeyLease") > 0 and served(apps[1], "IssueKeyLease") > 0

        await apps[0].stop(grace=0)
        before = served(apps[1], "IssueKeyLease")
        results = await asyncio.gather(*(keys.issue_lease(lease_key(org)) for _ in range(20)))
        assert all(r.api_key for r in results)  # none failed: every call went to (or was retried on) replica 2
        assert served(apps[1], "IssueKeyLease") == before + 20
    finally:
        await keys.close()


async def test_the_revocation_watch_moves_to_the_surviving_replica(
        replicas: tuple[Identities, list[KeyServiceApp]]) -> None:
    ids, apps = replicas
    org, credential_id = await tenant(ids, apps[0])
    keys = client(ids, apps)
    cache = LeaseCache(keys.issue_lease)
    connected, applied = asyncio.Event(), asyncio.Event()
    follower = asyncio.create_task(follow_revocations(keys, cache, on_event=applied.set, connected=connected))
    try:
        await asyncio.wait_for(connected.wait(), 10)
        holder = next(app for app in apps if watchers(app))
        survivor = next(app for app in apps if app is not holder)
        await holder.stop(grace=0)  # the replica carrying the stream goes away
        await asyncio.wait_for(_reconnected(connected, survivor), 10)

        async with secure_channel(survivor.port, ids.admin) as channel:
            await kpb_grpc.KeyServiceStub(channel).DeactivateCredential(
                kpb.DeactivateCredentialRequest(credential_id=credential_id), timeout=10)
        await asyncio.wait_for(applied.wait(), 10)  # the survivor's revocation reached the proxy
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await keys.close()


async def _reconnected(connected: asyncio.Event, survivor: KeyServiceApp) -> None:
    """Until the watch has reopened (READY received again) on the surviving replica."""
    while not (connected.is_set() and watchers(survivor)):
        await asyncio.sleep(0.02)


async def test_a_stopping_replica_ends_its_watches_at_once_rather_than_after_its_grace(
        replicas: tuple[Identities, list[KeyServiceApp]]) -> None:
    """A replica stopping with a long grace (a rolling deploy) no longer delivers revocations; its watches must
    end when the stop begins, not when the grace runs out, so the proxy follows the survivor meanwhile."""
    ids, apps = replicas
    org, credential_id = await tenant(ids, apps[0])
    keys = client(ids, apps)
    cache = LeaseCache(keys.issue_lease)
    connected, applied = CountingEvent(), asyncio.Event()
    before = [watchers(app) for app in apps]
    follower = asyncio.create_task(follow_revocations(keys, cache, on_event=applied.set, connected=connected))
    try:
        await asyncio.wait_for(connected.wait(), 10)
        holder = next(app for app, n in zip(apps, before, strict=True) if watchers(app) > n)
        survivor = next(app for app in apps if app is not holder)
        stopping = asyncio.create_task(holder.stop(grace=60))
        # A second READY: the watch reopened, on the survivor (the stopping holder takes no new call).
        await asyncio.wait_for(_set_twice(connected), 10)
        async with secure_channel(survivor.port, ids.admin) as channel:
            await kpb_grpc.KeyServiceStub(channel).DeactivateCredential(
                kpb.DeactivateCredentialRequest(credential_id=credential_id), timeout=10)
        await asyncio.wait_for(applied.wait(), 10)
        await asyncio.wait_for(stopping, 10)  # with no call in flight, the stop did not wait out the grace
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await keys.close()


async def _set_twice(event: CountingEvent) -> None:
    while event.sets < 2:
        await asyncio.sleep(0.01)
