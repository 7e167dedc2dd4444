"""gRPC health (grpc.health.v1) for both services: on the mTLS port for callers, and on a plaintext port for
kubelet, which cannot present a client certificate. Both ports share one servicer, so they never disagree."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def new_health_servicer() -> health.aio.HealthServicer:
    return health.aio.HealthServicer()


async def start_plaintext_health_server(servicer: health.aio.HealthServicer, addr: str) -> tuple[grpc.aio.Server, int]:
    """Serve only the health service, without TLS, on `addr` (port 0 picks a free one)."""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(addr)
    await server.start()
    return server, port
