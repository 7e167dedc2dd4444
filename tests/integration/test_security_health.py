"""Issue 11, finding 5: the health ports.

- The plaintext port (kubelet's, no certificate) serves Check only: a Watch there held a stream and its memory
  for as long as the client liked (4,000 of them grew keyservice by 60 MB). Now UNIMPLEMENTED, however many.
- Watch on the mTLS port, behind the decode guard both services install, answered UNKNOWN (a TypeError: the
  guard iterated the coroutine grpc_health's Watch is). Now it streams the status and its changes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from byokcommon.decoding import DecodeGuard
from byokcommon.grpcserver import ServingApp, mark_serving, open_side_ports, start_grpc
from byokcommon.health import NOT_SERVING, SERVING
from byokcommon.interceptor import RequestInterceptor
from byokcommon.metrics import RpcMetrics
from byokcommon.tls import channel_credentials
from tests.support.stack import Identities

SERVICE = "test.Guarded"


async def _app(ids: Identities) -> ServingApp:
    interceptor = RequestInterceptor(authorize=lambda method, identity: None, metrics=RpcMetrics(),
                                     max_concurrent=16)
    parts = await start_grpc(service_name=SERVICE, register=lambda server: None,
                             interceptors=[interceptor, DecodeGuard()], options=[], tls_files=ids.keyservice,
                             listen_addr="127.0.0.1:0")
    app = ServingApp(**parts.fields())
    await open_side_ports(app, health_addr="127.0.0.1:0", metrics_addr="", registry=RpcMetrics().registry)
    await mark_serving(app, SERVICE)
    return app


async def _code(call: Any) -> grpc.StatusCode:
    """How a call ended: its error code, or OK once it answered (a stream's first message; it is then closed)."""
    try:
        await (call.read() if hasattr(call, "read") else call)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    call.cancel()
    return grpc.StatusCode.OK


async def _close(app: ServingApp) -> None:
    await app.server.stop(0)
    await app.close_side_ports()


async def test_watch_on_the_mtls_port_streams_the_status(ids: Identities) -> None:
    app = await _app(ids)
    try:
        async with grpc.aio.secure_channel(f"localhost:{app.port}", channel_credentials(ids.proxyservice)) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=10)
            first = await watch.read()  # was: AioRpcError UNKNOWN (TypeError in the decode guard)
            assert first.status == SERVING
            await app.health.set(SERVICE, NOT_SERVING)
            assert (await watch.read()).status == NOT_SERVING
            watch.cancel()
    finally:
        await _close(app)


async def test_plaintext_port_serves_check_and_no_watch(ids: Identities) -> None:
    app = await _app(ids)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.health_port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            assert (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status == SERVING
            assert (await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)).status == SERVING

            # Many at once, as the attack did: none is held open (past the per-connection stream bound some are
            # refused outright, UNAVAILABLE or RESOURCE_EXHAUSTED, rather than queued).
            codes = await asyncio.gather(*(_code(stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5))
                                           for _ in range(200)))
            assert grpc.StatusCode.UNIMPLEMENTED in codes
            assert set(codes) <= {grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED}
            # The same servicer as the mTLS port: a drain shows on both.
            await app.drain()
            assert (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status == NOT_SERVING
    finally:
        await _close(app)


async def test_plaintext_port_refuses_big_requests(ids: Identities) -> None:
    app = await _app(ids)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.health_port}") as ch:
            big = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="x" * 100_000), timeout=5)
            assert await _code(big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await _close(app)
