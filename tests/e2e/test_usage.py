"""Usage end to end: real keyservice (SQLite, OpenBao), real proxy, the local upstream. Every surface's requests
(StreamChat, Chat, Embed, Forward, the HTTP front's passthrough and its /v1 endpoint) reach keyservice's rollups
with the tokens the provider reported, a batch whose acknowledgement was lost is not counted twice, last_use_time
moves, and a budget trips: the request in flight finishes, the next is refused naming the budget, and the
overshoot is that one request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from keyservice.server import create_server
from proxyservice import errors
from proxyservice.server import ProxyApp
from tests.e2e.conftest import System, params, running_fleet
from tests.e2e.test_proxy import openai_key
from tests.support.bao import BaoDevServer
from tests.support.http_front import front_url, mtls_client
from tests.support.stack import (
    CALLER,
    Identities,
    secure_channel,
)


async def flushed(system: System) -> None:
    """Every record the proxy holds, acknowledged by keyservice (the reporter's own flush, not a sleep)."""
    assert system.proxy.usage is not None
    assert await system.proxy.usage.flush()


async def total(system: System, org: str, **kw: Any) -> kpb.UsageRow:
    rows = (await system.admin.QueryUsage(kpb.QueryUsageRequest(org_id=org, grouping=kpb.USAGE_GROUPING_TOTAL,
                                                                **kw))).rows
    return rows[0] if rows else kpb.UsageRow()


async def tenant(system: System, org: str) -> kpb.Credential:
    key = openai_key()
    system.upstream.config.keys = {"openai": {key}}
    credential = await system.add_key(org, "openai", key)
    await system.bind(org)
    return credential


def chat_body(stream: bool) -> bytes:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}],
                            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


def sse_usage(text: str) -> dict[str, int]:
    """The usage of an OpenAI stream as the provider sent it (its last chunk that has one)."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("data: {"):
            usage = json.loads(line[6:]).get("usage")
            if usage:
                found = usage
    return found


async def test_every_surfaces_requests_reach_the_rollups_with_the_providers_counts(system: System) -> None:
    org = "metered"
    credential = await tenant(system, org)
    seen_in = seen_out = 0
    for _ in range(3):
        async for message in system.chat.StreamChat(pb.StreamChatRequest(parameters=params(org, "gpt-4o-mini"))):
            if message.HasField("usage"):
                usage = message.usage
        seen_in, seen_out = seen_in + usage.input_tokens, seen_out + usage.output_tokens
    reply = await system.chat.Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini", "a longer prompt here")))
    seen_in, seen_out = seen_in + reply.usage.input_tokens, seen_out + reply.usage.output_tokens
    embedded = await system.chat.Embed(pb.EmbedRequest(tenant=pb.Tenant(org_id=org), model="text-embedding-3-small",
                                                       inputs=[pb.EmbedInput(text="alpha"), pb.EmbedInput(text="b")]))
    seen_in += embedded.usage.input_tokens
    forwarded = [m async for m in system.chat.Forward(pb.ForwardRequest(
        tenant=pb.Tenant(org_id=org), provider="openai", method="POST", path="/chat/completions",
        body=chat_body(stream=False), headers=[pb.Header(name="content-type", value="application/json")]))]
    usage_json = json.loads(b"".join(m.body for m in forwarded[1:]))["usage"]
    seen_in, seen_out = seen_in + usage_json["prompt_tokens"], seen_out + usage_json["completion_tokens"]
    async with mtls_client(system.ids.caller, org) as http:
        passthrough = await http.post(front_url(system.proxy.http_port) + "/openai/chat/completions",
                                      content=chat_body(stream=True), headers={"content-type": "application/json"})
        unified = await http.post(front_url(system.proxy.http_port) + "/v1/chat/completions",
                                  content=chat_body(stream=False), headers={"content-type": "application/json"})
    assert passthrough.status_code == unified.status_code == 200
    streamed = sse_usage(passthrough.text)
    seen_in, seen_out = seen_in + streamed["prompt_tokens"], seen_out + streamed["completion_tokens"]
    seen_in, seen_out = seen_in + unified.json()["usage"]["prompt_tokens"], \
        seen_out + unified.json()["usage"]["completion_tokens"]
    await flushed(system)
    row = await total(system, org)
    served = len([r for r in system.upstream.requests if r.status == 200])
    assert row.requests == served == 8 and row.failed_requests == 0
    assert (row.input_tokens, row.output_tokens) == (seen_in, seen_out)
    assert row.spend_micros > 0 and row.unpriced_requests == 0
    by_surface = (await system.admin.QueryUsage(kpb.QueryUsageRequest(
        org_id=org, dimensions=[kpb.USAGE_DIMENSION_MODEL, kpb.USAGE_DIMENSION_CREDENTIAL,
                                kpb.USAGE_DIMENSION_KEY_SOURCE]))).rows
    assert {(r.model, r.credential_id, r.key_source) for r in by_surface} == {
        ("gpt-4o-mini", credential.credential_id, kpb.KEY_SOURCE_TENANT),
        ("text-embedding-3-small", credential.credential_id, kpb.KEY_SOURCE_TENANT)}
    got = (await system.admin.GetCredential(kpb.GetCredentialRequest(credential_id=credential.credential_id)))
    assert got.credential.HasField("last_use_time")


async def test_a_batch_whose_answer_was_lost_is_counted_once(system: System) -> None:
    org = "lossy"
    await tenant(system, org)
    reporter, keys = system.proxy.usage, system.proxy.keys
    assert reporter is not None
    sent: list[str] = []
    real = keys.report_usage

    async def answer_lost(batch: kpb.ReportUsageRequest) -> kpb.ReportUsageResponse:
        reply = await real(batch)  # keyservice counted it ...
        sent.append(batch.batch_id)
        if len(sent) == 1:
            raise errors.Unavailable("keyservice is unavailable")  # ... but the proxy never heard
        return reply

    reporter._send = answer_lost  # noqa: SLF001 - the test's hook on the wire
    for _ in range(4):
        await system.chat.Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini")))
    assert await reporter.flush() is False
    assert await reporter.flush() is True
    assert sent[0] == sent[1]
    assert (await total(system, org)).requests == 4


async def test_a_budget_trips_the_request_in_flight_finishes_and_the_next_is_refused(system: System) -> None:
    """Sequential requests, each reported before the next (the proxy's flush): the one that crosses the limit is
    the last served; a stream that was in flight when the budget tripped finishes. Overshoot: that stream and the
    crossing request's excess, i.e. at most the requests in flight plus one."""
    org = "capped"
    await tenant(system, org)
    await asyncio.wait_for(system.proxy.revocations_connected.wait(), 5)
    await system.chat.Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini", provider="openai")))
    await flushed(system)
    one = (await total(system, org)).spend_micros
    assert one > 0
    limit = 5 * one // 2
    reply = await system.admin.SetBudget(kpb.SetBudgetRequest(budget=kpb.Budget(
        scope=kpb.Scope(org_id=org), period=kpb.BUDGET_PERIOD_DAY, limit_micros=limit)))
    budget_id = reply.budget.budget_id
    revoked = asyncio.Event()
    revoke = system.proxy.cache.revoke

    def watched(event: kpb.WatchRevocationsResponse) -> int:
        if event.reason == kpb.REVOCATION_REASON_BUDGET_EXHAUSTED:
            revoked.set()
        return revoke(event)

    system.proxy.cache.revoke = watched  # type: ignore[method-assign]
    # In flight from before the trip to after it: the stand-in paces its 40 frames 50 ms apart.
    in_flight = system.chat.StreamChat(pb.StreamChatRequest(parameters=params(
        org, "gpt-4o-mini?delay=0.05&frames=40", provider="openai")))
    assert (await in_flight.read()).HasField("start")
    served = 1
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        while served < 10:
            await system.chat.Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini", provider="openai")))
            served += 1
            await flushed(system)
            if (await total(system, org)).spend_micros >= limit:
                await asyncio.wait_for(revoked.wait(), 5)  # every proxy drops the org's leases within a second
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (refused.value.details() or "").startswith(f"budget {budget_id} (org {org}, all keys, per day)")
    assert served == 3  # 3 × one crosses 2.5 × one
    before = (await total(system, org)).spend_micros
    rest = []
    while (message := await in_flight.read()) is not grpc.aio.EOF:
        rest.append(message)
    assert any(m.HasField("usage") for m in rest)  # finished, not cut
    await flushed(system)
    spent = (await total(system, org)).spend_micros
    overshoot, stream_spend = spent - limit, spent - before
    assert 0 < overshoot <= stream_spend + one
    assert (await total(system, org)).requests == served + 1  # the refused request was never sent
    print(f"\nbudget {limit} micro-dollars: spent {spent}; overshoot {overshoot} = the stream in flight "
          f"({stream_spend}) + the crossing request's excess ({before - limit}, of one request's {one})")


async def drained(proxy: ProxyApp) -> None:
    """Until the proxy's reporter has everything acknowledged (it reconnects to a restarted keyservice on its own)."""
    assert proxy.usage is not None
    while not await proxy.usage.flush():
        await asyncio.sleep(0.05)  # the channel's reconnect; a flush that fails keeps every record


async def test_three_proxies_a_keyservice_restart_and_a_killed_proxy(bao: BaoDevServer, ids: Identities,
                                                                     tmp_path: Path) -> None:
    """360 requests over three proxies; keyservice stops after the first 100 and the proxies serve the next 100 from
    their cached leases, holding the usage; keyservice comes back for 160 more; one proxy is then killed at once,
    without its flush. The rollups hold every request exactly once except the killed proxy's unsent records."""
    org, seen = "fleet", [0, 0]
    async with running_fleet(bao, ids, tmp_path, 3, usage_report_interval=0.05) as fleet:
        upstream, port, proxies, stubs = fleet.upstream, fleet.port, fleet.proxies, fleet.stubs
        async with secure_channel(port, ids.admin) as admin_channel:
            admin = kpb_grpc.KeyServiceStub(admin_channel)
            await admin.CreateCredential(kpb.CreateCredentialRequest(provider="openai", scope=kpb.Scope(org_id=org),
                                                                     name="main", api_key=openai_key()))
            await admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
                binding=kpb.CallerBinding(caller_identity=CALLER, org_id=org)))

        async def wave(n: int) -> None:
            async def one(i: int) -> None:
                reply = await stubs[i % 3].Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini", f"req {i}")))
                seen[0] += reply.usage.input_tokens
                seen[1] += reply.usage.output_tokens
            for start in range(0, n, 10):
                await asyncio.gather(*(one(i) for i in range(start, start + 10)))

        await wave(100)
        await fleet.keyservice.stop(grace=0)
        await wave(100)  # served from cached leases; usage held by the proxies
        held_while_down = sum(p.usage.held for p in proxies if p.usage)
        fleet.keyservice = await create_server(fleet.settings)
        await wave(100)
        for proxy in proxies:
            await drained(proxy)  # the held records reach the restarted keyservice
        await wave(60)  # in steady state, then a proxy dies at once
        killed = proxies.pop()
        assert killed.usage is not None
        task = killed.usage._task  # noqa: SLF001 - a SIGKILL: the sender stops where it is
        assert task is not None
        task.cancel()
        lost = killed.usage.held  # what the kill takes with it: not acknowledged (a batch in flight may have landed)
        killed.usage = None  # and no flush at stop
        await killed.stop(grace=0)
        for proxy in proxies:
            await drained(proxy)
        async with secure_channel(port, ids.admin) as admin_channel:
            admin = kpb_grpc.KeyServiceStub(admin_channel)
            row = (await admin.QueryUsage(kpb.QueryUsageRequest(org_id=org))).rows[0]
        served = len([r for r in upstream.requests if r.status == 200])
        assert served == 360 and held_while_down >= 100
        assert served - lost <= row.requests <= served  # never counted twice; lost at most what the killed one held
        if row.requests == served:
            assert (row.input_tokens, row.output_tokens) == tuple(seen)
        print(f"\n360 requests, 3 proxies, keyservice down for 100 of them ({held_while_down} records held): "
              f"{row.requests} counted, 0 counted twice; the proxy killed right after the last 60 held {lost}, of "
              f"which {served - row.requests} were lost (the rest was a batch in flight that landed)")

