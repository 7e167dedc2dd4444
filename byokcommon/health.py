"""gRPC health (grpc.health.v1) for both services: on the mTLS port for callers, and on a plaintext port for
kubelet, which cannot present a client certificate. Both ports share one servicer, so they never disagree.

The plaintext port answers anyone who can reach it, so it serves `Check` only (what kubelet's gRPC probe, the
chart's test pod and `byokcommon.healthcheck` call): `Watch` holds a stream and its memory for as long as the
client likes, and 4,000 of them without a certificate grew keyservice by 60 MB (issue 11, finding 5); there it
answers UNIMPLEMENTED. RPCs in flight, streams per connection, request size, idle time and connection life are
bounded too (PLAINTEXT_*): a probe is one small unary call on a fresh connection. Watch stays available on
the mTLS ports, to authenticated clients.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def new_health_servicer() -> health.aio.HealthServicer:
    return health.aio.HealthServicer()


PLAINTEXT_MAX_CONNECTIONS = 64
PLAINTEXT_MAX_RPCS = 32  # in flight; more are answered RESOURCE_EXHAUSTED at once
# gRPC applies the connection count under memory pressure only (its connection quota), so the hard bounds are
# the idle timeout (a connection without an RPC in flight, which with Check alone is any open connection
# between probes, is closed) and the age limit.
PLAINTEXT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_allowed_incoming_connections", PLAINTEXT_MAX_CONNECTIONS),
    ("grpc.max_concurrent_streams", 4),
    ("grpc.max_receive_message_length", 4096),
    ("grpc.max_connection_idle_ms", 10_000),
    ("grpc.max_connection_age_ms", 120_000),
    ("grpc.max_connection_age_grace_ms", 5_000),
]


def check_only_handler(servicer: health.aio.HealthServicer) -> grpc.GenericRpcHandler:
    """grpc.health.v1.Health with its Check method only."""
    check = grpc.unary_unary_rpc_method_handler(
        servicer.Check, request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString)
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check})


async def start_plaintext_health_server(servicer: health.aio.HealthServicer, addr: str) -> tuple[grpc.aio.Server, int]:
    """Serve health Check only, without TLS, on `addr` (port 0 picks a free one), within the bounds above."""
    server = grpc.aio.server(maximum_concurrent_rpcs=PLAINTEXT_MAX_RPCS, options=PLAINTEXT_OPTIONS)
    server.add_generic_rpc_handlers((check_only_handler(servicer),))
    port = server.add_insecure_port(addr)
    await server.start()
    return server, port
