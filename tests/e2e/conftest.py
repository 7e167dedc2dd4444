"""A whole system per test: keyservice (SQLite) on the shared OpenBao, the local upstream, and a proxy (or, with
`running_fleet`, several proxies on one keyservice)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from devstack.ports import free_port
from devstack.upstream import FakeUpstream, UpstreamConfig
from keyservice.server import KeyServiceApp, create_server
from keyservice.settings import KeyServiceSettings
from proxyservice.server import ProxyApp
from proxyservice.server import create_server as create_proxy
from tests.support.bao import BaoDevServer
from tests.support.stack import (
    CALLER,
    Identities,
    keyservice_settings,
    proxy_settings,
    secure_channel,
    upstream_base_urls,
)


@dataclass
class System:
    ids: Identities
    upstream: FakeUpstream
    keyservice: KeyServiceApp
    proxy: ProxyApp
    admin: kpb_grpc.KeyServiceStub
    chat: pb_grpc.ChatServiceStub
    channels: list[grpc.aio.Channel]

    async def add_key(self, org: str, provider: str, key: str, name: str = "main", **scope: str) -> kpb.Credential:
        reply = await self.admin.CreateCredential(kpb.CreateCredentialRequest(
            provider=provider, scope=kpb.Scope(org_id=org, **scope), name=name, api_key=key))
        return reply.credential

    async def bind(self, org: str, caller: str = CALLER) -> None:
        await self.admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
            binding=kpb.CallerBinding(caller_identity=caller, org_id=org)))

    async def restart_proxy(self, **overrides: Any) -> None:
        await self.proxy.stop(grace=0)
        self.proxy = await create_proxy(proxy_settings(self.ids, self.keyservice.port, **overrides))
        channel = secure_channel(self.proxy.port, self.ids.caller)
        self.channels.append(channel)
        self.chat = pb_grpc.ChatServiceStub(channel)


def params(org: str, model: str, text: str = "hi", **kw: Any) -> pb.ChatParameters:
    return pb.ChatParameters(tenant=pb.Tenant(org_id=org), model=model,
                             messages=[pb.Message(role=pb.ROLE_USER, content=text)], **kw)


@contextlib.asynccontextmanager
async def running_system(bao: BaoDevServer, ids: Identities, tmp_path: Path, **keyservice_overrides: Any
                         ) -> AsyncIterator[System]:
    """Upstream, keyservice (SQLite, the shared OpenBao) and proxy, started and stopped together."""
    upstream = FakeUpstream(UpstreamConfig())
    await upstream.start()
    keyservice = await create_server(keyservice_settings(
        bao, ids, f"sqlite:///{tmp_path}/ks.db", provider_base_urls=upstream_base_urls(upstream.base_url),
        **keyservice_overrides))
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


@pytest.fixture
async def system(bao: BaoDevServer, ids: Identities, tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(bao, ids, tmp_path) as started:
        yield started


@dataclass
class Fleet:
    """One keyservice and several proxies on it. A test may restart `keyservice` (with `settings`, on `port`) or
    stop a proxy and drop it from `proxies`: what is left here is stopped at the end."""

    upstream: FakeUpstream
    settings: KeyServiceSettings
    port: int
    keyservice: KeyServiceApp
    proxies: list[ProxyApp]
    channels: list[grpc.aio.Channel]
    stubs: list[pb_grpc.ChatServiceStub]


@contextlib.asynccontextmanager
async def running_fleet(bao: BaoDevServer, ids: Identities, tmp_path: Path, proxies: int, **proxy_overrides: Any
                        ) -> AsyncIterator[Fleet]:
    """The local upstream, keyservice on a fixed free port (so a restart keeps its address) and `proxies` proxies,
    each with a caller channel; all stopped together."""
    upstream = FakeUpstream(UpstreamConfig())
    await upstream.start()
    port = free_port()
    settings = keyservice_settings(bao, ids, f"sqlite:///{tmp_path}/ks.db", grpc_addr=f"127.0.0.1:{port}",
                                   provider_base_urls=upstream_base_urls(upstream.base_url))
    keyservice = await create_server(settings)
    started = [await create_proxy(proxy_settings(ids, port, **proxy_overrides)) for _ in range(proxies)]
    channels = [secure_channel(p.port, ids.caller) for p in started]
    fleet = Fleet(upstream, settings, port, keyservice, started, channels,
                  [pb_grpc.ChatServiceStub(c) for c in channels])
    try:
        yield fleet
    finally:
        for channel in fleet.channels:
            await channel.close()
        for proxy in fleet.proxies:
            await proxy.stop(grace=0)
        await fleet.keyservice.stop(grace=0)
        await upstream.stop()
