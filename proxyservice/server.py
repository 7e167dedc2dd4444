"""Building the proxy's gRPC server apart from running it: `create_server(settings)` wires the lease cache,
keyservice client, revocation follower and upstream pool, then binds (port 0 in tests); `serve()` adds
signals and a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import structlog
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from byok.proxy.v1 import chat_service_pb2, chat_service_pb2_grpc
from byokcommon.decoding import DecodeGuard
from byokcommon.health import SERVING, new_health_servicer, start_plaintext_health_server
from byokcommon.interceptor import RequestInterceptor
from byokcommon.metrics import RpcMetrics, start_metrics_server
from byokcommon.runner import serve_until_signalled
from byokcommon.tls import ReloadingServerCredentials
from proxyservice.errors import PermissionDenied
from proxyservice.keyclient import KeyServiceClient
from proxyservice.leasecache import LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.revocations import follow_revocations
from proxyservice.service import ChatServicer
from proxyservice.settings import ProxySettings
from proxyservice.upstream import Upstream

SERVICE_NAME = chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name
_log = structlog.get_logger("byok.proxy")


def _any_authenticated_caller(method: str, identity: str) -> None:
    """Callers need a certificate from the trusted CA; which tenants they may act for is checked by keyservice
    when it issues the lease (caller bindings), not here."""
    if not identity:
        raise PermissionDenied("a client certificate with an identity is required")


@dataclass
class ProxyApp:
    server: grpc.aio.Server
    port: int
    health_port: int
    metrics_port: int
    cache: LeaseCache
    keys: KeyServiceClient
    upstream: Upstream
    interceptor: RequestInterceptor
    tls: ReloadingServerCredentials
    revocations_connected: asyncio.Event
    _health_server: grpc.aio.Server | None = None
    _metrics_server: Any = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def stop(self, grace: float = 5.0) -> None:
        await self.server.stop(grace)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.cache.close()
        await self.keys.close()
        await self.upstream.close()
        if self._health_server:
            await self._health_server.stop(0)
        if self._metrics_server:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()


async def create_server(settings: ProxySettings, *, upstream_transport: httpx.AsyncBaseTransport | None = None,
                        reuse_port: bool = False) -> ProxyApp:
    rpc_metrics = RpcMetrics()
    metrics = ProxyMetrics(rpc_metrics.registry)
    keys = KeyServiceClient(settings.keyservice_addr, settings.tls, server_name=settings.keyservice_server_name,
                            timeout=settings.keyservice_timeout)
    cache = LeaseCache(keys.issue_lease, refresh_fraction=settings.lease_refresh_fraction)
    upstream = Upstream(connect_timeout=settings.upstream_connect_timeout,
                        read_timeout=settings.upstream_read_timeout,
                        max_connections=settings.upstream_max_connections, transport=upstream_transport)
    servicer = ChatServicer(cache=cache, keys=keys, upstream=upstream, metrics=metrics)
    interceptor = RequestInterceptor(authorize=_any_authenticated_caller, metrics=rpc_metrics,
                                     max_concurrent=settings.max_concurrent_rpcs, log_success=False)
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    server = grpc.aio.server(interceptors=[interceptor, DecodeGuard()], options=options)
    chat_service_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server)
    health = new_health_servicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME, "grpc.health.v1.Health"), server)
    tls = ReloadingServerCredentials(settings.tls, on_reload=lambda: _log.info("tls.reloaded"))
    port = server.add_secure_port(settings.grpc_addr, tls.credentials)
    await server.start()
    connected = asyncio.Event()
    app = ProxyApp(server=server, port=port, health_port=0, metrics_port=0, cache=cache, keys=keys,
                   upstream=upstream, interceptor=interceptor, tls=tls, revocations_connected=connected)
    app._tasks.append(asyncio.create_task(follow_revocations(keys, cache, on_event=metrics.revocations.inc,
                                                             connected=connected)))
    if settings.health_addr:
        app._health_server, app.health_port = await start_plaintext_health_server(health, settings.health_addr)
    if settings.metrics_addr:
        app._metrics_server, _, app.metrics_port = start_metrics_server(rpc_metrics.registry,
                                                                        settings.metrics_addr)
    await health.set("", SERVING)
    await health.set(SERVICE_NAME, SERVING)
    _log.info("proxy.started", port=port, health_port=app.health_port, metrics_port=app.metrics_port)
    return app


async def serve(settings: ProxySettings) -> int:
    """Run until SIGINT/SIGTERM; streams in flight get ten seconds to finish."""
    app = await create_server(settings, reuse_port=True)
    return await serve_until_signalled("proxyservice", app, settings.grpc_addr, grace=10.0)
