"""The serving half both services share: an mTLS gRPC server with health and reflection, the plaintext health
port for kubelet, the metrics port, and a shutdown that drains before it stops.

Each service builds its own servicers and interceptors, then hands them to `start_grpc()`; its app object
extends `ServingApp`, which owns the ports and knows how to drain and close them. Draining first marks every
health name NOT_SERVING (kubelet and load balancers stop sending new work), waits `drain_seconds` for them to
notice, and only then stops the server, giving RPCs in flight `grace` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from byokcommon.health import SERVING, new_health_servicer, start_plaintext_health_server
from byokcommon.metrics import start_metrics_server
from byokcommon.tls import ReloadingServerCredentials, TlsFiles

# Keepalive, both ways. The server pings idle connections every 30 s (dead peers are noticed, idle-killing
# middleboxes kept at bay) and accepts clients' pings down to every 10 s: gRPC's default is to answer a client
# that pings an idle connection more often than every 5 minutes with GOAWAY "too_many_pings", which dropped the
# proxy's revocation stream and its next lease fetch after a quiet spell. Clients of ours ping every 20 s
# (KEEPALIVE_CLIENT_PING_MS, proxyservice/keyclient.py), safely above the server's floor.
MIN_CLIENT_PING_INTERVAL_MS = 10_000
KEEPALIVE_CLIENT_PING_MS = 20_000


def keepalive_options(min_client_ping_interval_ms: int = MIN_CLIENT_PING_INTERVAL_MS) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", min_client_ping_interval_ms),
    ]


@dataclass(kw_only=True)
class ServingApp:
    """A started server and its side ports. Services extend it with what they own and stop it in `stop()`."""

    server: grpc.aio.Server
    port: int
    tls: ReloadingServerCredentials
    health: health.aio.HealthServicer
    health_port: int = 0
    metrics_port: int = 0
    _health_server: grpc.aio.Server | None = None
    _metrics_server: Any = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def drain(self) -> None:
        """NOT_SERVING for every service name, on both ports, from now on (later `set` calls are ignored)."""
        await self.health.enter_graceful_shutdown()

    async def stop(self, grace: float = 5.0) -> None:  # pragma: no cover - every service overrides it
        await self.server.stop(grace)
        await self.cancel_tasks()
        await self.close_side_ports()

    async def cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close_side_ports(self) -> None:
        if self._health_server:
            await self._health_server.stop(0)
        if self._metrics_server:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()


@dataclass(frozen=True)
class GrpcParts:
    """What `start_grpc` made, passed on to the service's ServingApp subclass (`**parts.fields()`)."""

    server: grpc.aio.Server
    port: int
    tls: ReloadingServerCredentials
    health: health.aio.HealthServicer

    def fields(self) -> dict[str, Any]:
        return {"server": self.server, "port": self.port, "tls": self.tls, "health": self.health}


async def start_grpc(*, service_name: str, register: Callable[[grpc.aio.Server], None],
                     interceptors: Sequence[grpc.aio.ServerInterceptor], options: Sequence[tuple[str, Any]],
                     tls_files: TlsFiles, listen_addr: str, on_tls_reload: Callable[[], None] | None = None,
                     min_client_ping_interval_ms: int = MIN_CLIENT_PING_INTERVAL_MS) -> GrpcParts:
    """Build the server, register the service (`register`), health and reflection, bind `listen_addr` with
    client certificates required (reloaded from disk when they change), and start it. `options` come on top
    of the keepalive policy above."""
    server = grpc.aio.server(interceptors=list(interceptors),
                             options=keepalive_options(min_client_ping_interval_ms) + list(options))
    register(server)
    servicer = new_health_servicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((service_name, reflection.SERVICE_NAME, "grpc.health.v1.Health"), server)
    tls = ReloadingServerCredentials(tls_files, on_reload=on_tls_reload)
    port = server.add_secure_port(listen_addr, tls.credentials)
    await server.start()
    return GrpcParts(server=server, port=port, tls=tls, health=servicer)


async def open_side_ports(app: ServingApp, *, health_addr: str, metrics_addr: str,
                          registry: CollectorRegistry) -> None:
    """The plaintext health port (same servicer as the mTLS port, so they never disagree) and /metrics;
    an empty address leaves that port closed."""
    if health_addr:
        app._health_server, app.health_port = await start_plaintext_health_server(app.health, health_addr)
    if metrics_addr:
        app._metrics_server, _, app.metrics_port = start_metrics_server(registry, metrics_addr)


async def mark_serving(app: ServingApp, service_name: str) -> None:
    """SERVING for the whole server ("", what liveness asks) and for the service (what readiness asks)."""
    await app.health.set("", SERVING)
    await app.health.set(service_name, SERVING)
