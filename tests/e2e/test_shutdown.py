"""Shutdown as Kubernetes needs it: draining reports NOT_SERVING on both health ports (every service name)
while RPCs are still served, so load balancers take the instance out before it refuses anything."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byokcommon.grpcserver import ServingApp
from tests.e2e.conftest import System, params
from tests.support.stack import secure_channel

KEYSERVICE = "byok.keys.v1.KeyService"
CHAT = "byok.proxy.v1.ChatService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def plaintext_health(app: ServingApp, service: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.health_port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                                 timeout=5)
        return int(reply.status)


async def test_draining_reports_not_serving_while_still_serving(system: System) -> None:
    await system.add_key("drain-org", "openai", "sk-proj-" + "d" * 40)
    await system.bind("drain-org")
    for app, name in ((system.keyservice, KEYSERVICE), (system.proxy, CHAT)):
        assert [await plaintext_health(app, s) for s in ("", name)] == [SERVING, SERVING]

    await system.keyservice.drain()
    await system.proxy.drain()

    for app, name in ((system.keyservice, KEYSERVICE), (system.proxy, CHAT)):
        assert [await plaintext_health(app, s) for s in ("", name)] == [NOT_SERVING, NOT_SERVING]
    # The mTLS port says the same to a caller that checks it...
    async with secure_channel(system.proxy.port, system.ids.caller) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=CHAT))
        assert reply.status == NOT_SERVING
    # ...yet work still gets done until the server stops: nothing in flight during the drain is refused.
    providers = await system.admin.ListProviders(kpb.ListProvidersRequest())
    assert providers.providers
    reply = await system.chat.Chat(pb.ChatRequest(parameters=params("drain-org", "gpt-4o-mini")))
    assert reply.choices[0].text
    # keyservice's dependency watcher must not flip readiness back once draining.
    await system.keyservice.health.set(KEYSERVICE, SERVING)
    assert await plaintext_health(system.keyservice, KEYSERVICE) == NOT_SERVING
