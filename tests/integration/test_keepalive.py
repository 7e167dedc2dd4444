"""Keepalive between our clients and servers: a client that pings an idle stream (the proxy's revocation stream
does, every 20 s) must not be cut off by the server's ping policy. gRPC's default policy answers pings on an
idle connection more often than every 5 minutes with GOAWAY "too_many_pings"; ours accepts them down to 10 s.
Shown at a 1 s scale: the same client kept alive by our policy is cut off by gRPC's default."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from byokcommon.grpcserver import KEEPALIVE_CLIENT_PING_MS, MIN_CLIENT_PING_INTERVAL_MS, start_grpc
from byokcommon.tls import channel_credentials
from tests.support.stack import Identities

GRPC_DEFAULT_MIN_PING_INTERVAL_MS = 300_000


def test_our_clients_ping_no_faster_than_our_servers_accept() -> None:
    assert KEEPALIVE_CLIENT_PING_MS >= 2 * MIN_CLIENT_PING_INTERVAL_MS  # slack for timer jitter


async def idle_stream_outcome(ids: Identities, server_min_ping_interval_ms: int) -> str:
    """Hold an idle server stream open under 1 s client pings for up to 6 s: 'open' or the status it died of."""
    parts = await start_grpc(service_name="test.Idle", register=lambda server: None, interceptors=[], options=[],
                             tls_files=ids.keyservice, listen_addr="127.0.0.1:0",
                             min_client_ping_interval_ms=server_min_ping_interval_ms)
    options = [("grpc.keepalive_time_ms", 1_000), ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.max_pings_without_data", 0)]
    try:
        async with grpc.aio.secure_channel(f"localhost:{parts.port}", channel_credentials(ids.proxyservice),
                                           options=options) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            await watch.read()  # the current status; then the stream stays silent
            try:
                await asyncio.wait_for(watch.read(), timeout=6)
            except TimeoutError:
                watch.cancel()
                return "open"
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return "message"
    finally:
        await parts.server.stop(0)


@pytest.mark.parametrize(("server_min_ping_interval_ms", "outcome"), [
    (500, "open"),  # our policy, scaled down with the client's pings
    (GRPC_DEFAULT_MIN_PING_INTERVAL_MS, "UNAVAILABLE"),  # gRPC's default: GOAWAY too_many_pings
])
async def test_idle_stream_survives_client_pings(ids: Identities, server_min_ping_interval_ms: int,
                                                 outcome: str) -> None:
    assert await idle_stream_outcome(ids, server_min_ping_interval_ms) == outcome
