"""Building the proxy's gRPC server apart from running it: `create_server(settings)` wires the lease cache,
keyservice client, revocation follower, upstream pool, usage reporter and tracing (off unless BYOK_OTLP_ENDPOINT), then
binds (port 0 in tests); `serve()` adds signals and a graceful stop, which flushes the usage records and the spans
still queued."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog

from byok.proxy.v1 import chat_service_pb2, chat_service_pb2_grpc
from byokcommon.decoding import DecodeGuard
from byokcommon.grpcserver import ServingApp, mark_serving, open_side_ports, start_grpc
from byokcommon.interceptor import RequestInterceptor
from byokcommon.metrics import RpcMetrics
from byokcommon.runner import serve_until_signalled
from byokcommon.tls import configure_identity
from proxyservice.errors import PermissionDenied
from proxyservice.failover import KeyFailover
from proxyservice.http.front import HttpFront
from proxyservice.http.unified import UnifiedEndpoint
from proxyservice.keyclient import KeyServiceClient
from proxyservice.leasecache import CacheLimits, LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.native import NativeRelay
from proxyservice.ratelimit import RateLimiter
from proxyservice.revocations import follow_revocations
from proxyservice.service import ChatServicer
from proxyservice.settings import ProxySettings
from proxyservice.tracing import Tracing
from proxyservice.upstream import Transport, Upstream
from proxyservice.usage_reporter import UsageReporter

SERVICE_NAME = chat_service_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name
_log = structlog.get_logger("byok.proxy")


def _any_authenticated_caller(method: str, identity: str) -> None:
    """Callers need a certificate from the trusted CA; which tenants they may act for is checked by keyservice
    when it issues the lease (caller bindings), not here."""
    if not identity:
        raise PermissionDenied("a client certificate with an identity is required")


@dataclass(kw_only=True)
class ProxyApp(ServingApp):
    """A running proxy: the servers, the lease cache, the keyservice client and the upstream pool."""

    cache: LeaseCache
    keys: KeyServiceClient
    upstream: Upstream
    interceptor: RequestInterceptor
    revocations_connected: asyncio.Event
    http: HttpFront | None = None
    tracing: Tracing = field(default_factory=Tracing)
    usage: UsageReporter | None = None
    usage_flush_deadline: float = 5.0
    limiter: RateLimiter | None = None

    @property
    def http_port(self) -> int:
        """The HTTP front's port (0 when it is off)."""
        return self.http.port if self.http else 0

    async def stop(self, grace: float = 5.0) -> None:
        if self.http is not None:
            await self.http.stop()
        await self.server.stop(grace)
        await self.cancel_tasks()
        await self.cache.close()
        if self.usage is not None:  # every request has ended: what they reported goes out, within the deadline
            await self.usage.close(self.usage_flush_deadline)
        await self.keys.close()
        await self.upstream.close()
        await self.close_side_ports()
        # Last, once no request can end a span any more: exports what is queued (blocking, so off the loop).
        await asyncio.to_thread(self.tracing.shutdown)


async def create_server(settings: ProxySettings, *, upstream_transport: Transport | None = None,
                        reuse_port: bool = False, tracing: Tracing | None = None) -> ProxyApp:
    """`tracing`: instead of the one the settings describe (tests: an in-memory exporter)."""
    tracing = tracing or Tracing.from_settings(settings)
    rpc_metrics = RpcMetrics()
    metrics = ProxyMetrics(rpc_metrics.registry)
    keys = KeyServiceClient(settings.keyservice_addr, settings.tls, server_name=settings.keyservice_server_name,
                            timeout=settings.keyservice_timeout)
    configure_identity(cn_fallback=settings.identity_cn_fallback)
    limits = CacheLimits(max_entries=settings.lease_cache_max_entries, negative_ttl=settings.lease_negative_ttl,
                         misses_per_second=settings.lease_misses_per_second, miss_burst=settings.lease_miss_burst)
    limiter = RateLimiter()  # tenants' rate limits: learnt from the leases fetched and ReportUsage answers
    cache = LeaseCache(limiter.learning(keys.issue_lease), refresh_fraction=settings.lease_refresh_fraction,
                       limits=limits, observe=lambda result: metrics.lease_lookups.labels(result).inc())
    cache.start()
    upstream = Upstream(connect_timeout=settings.upstream_connect_timeout,
                        read_timeout=settings.upstream_read_timeout,
                        max_connections=settings.upstream_max_connections, transport=upstream_transport,
                        egress=settings.egress)
    usage = UsageReporter(keys.report_usage, interval=settings.usage_report_interval,
                          batch_records=settings.usage_batch_records, max_records=settings.usage_buffer_records,
                          registry=rpc_metrics.registry, answered=limiter.answered) \
        if settings.usage_buffer_records else None
    servicer = ChatServicer(cache=cache, keys=keys, upstream=upstream, metrics=metrics,
                            native=NativeRelay(failover=KeyFailover(cache=cache, keys=keys, metrics=metrics,
                                                                 limiter=limiter),
                                               upstream=upstream, metrics=metrics,
                                               allowlist=settings.http_path_allowlist, usage=usage),
                            tracing=tracing, usage=usage)
    interceptor = RequestInterceptor(authorize=_any_authenticated_caller, metrics=rpc_metrics,
                                     max_concurrent=settings.max_concurrent_rpcs, log_success=False)
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    if settings.max_connection_age_seconds:
        # Callers hold HTTP/2 connections for as long as they live; without an age limit, pods the autoscaler
        # adds behind a ClusterIP Service never get their share. GOAWAY makes clients reconnect; streams in
        # flight get the grace period to finish.
        options += [("grpc.max_connection_age_ms", int(settings.max_connection_age_seconds * 1000)),
                    ("grpc.max_connection_age_grace_ms", int(settings.max_connection_age_grace_seconds * 1000))]
    parts = await start_grpc(
        service_name=SERVICE_NAME,
        register=lambda server: chat_service_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server),
        interceptors=[interceptor, DecodeGuard()], options=options, tls_files=settings.tls,
        listen_addr=settings.grpc_addr, on_tls_reload=lambda: _log.info("tls.reloaded"))
    connected = asyncio.Event()
    app = ProxyApp(**parts.fields(), cache=cache, keys=keys, upstream=upstream, interceptor=interceptor,
                   revocations_connected=connected, tracing=tracing, usage=usage, limiter=limiter,
                   usage_flush_deadline=settings.usage_flush_deadline)
    if usage is not None:
        usage.start()
    app._tasks.append(asyncio.create_task(follow_revocations(keys, cache, on_event=metrics.revocations.inc,
                                                             connected=connected)))
    if settings.http_addr:
        app.http = HttpFront(relay=servicer.native, tls=settings.tls, max_body_bytes=settings.http_max_body_bytes,
                             max_concurrent=settings.max_concurrent_rpcs, tracing=tracing)
        app.http.unified = UnifiedEndpoint(servicer=servicer, keys=keys, front=app.http)
        await app.http.start(settings.http_addr, reuse_port=reuse_port)
    await open_side_ports(app, health_addr=settings.health_addr, metrics_addr=settings.metrics_addr,
                          registry=rpc_metrics.registry)
    await mark_serving(app, SERVICE_NAME)
    _log.info("proxy.started", port=app.port, http_port=app.http_port or None, health_port=app.health_port,
              metrics_port=app.metrics_port,
              otlp_endpoint=settings.otlp_endpoint or None)
    return app


async def serve(settings: ProxySettings) -> int:
    """Run until SIGINT/SIGTERM, then drain and stop; streams in flight get the grace period to finish."""
    app = await create_server(settings, reuse_port=True)
    return await serve_until_signalled("proxyservice", app, settings.grpc_addr,
                                       drain=settings.shutdown_drain_seconds, grace=settings.shutdown_grace_seconds)
