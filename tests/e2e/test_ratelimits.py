"""Rate limits end to end: one keyservice (SQLite, OpenBao), THREE proxies, the local upstream. Requests are driven
in rounds over a per-minute request limit: each round every proxy serves `PER_ROUND` requests at once, then every
proxy reports (its reporter's own flush: the barrier that stands for a report interval; no sleeps). Time is a fake
source shared by keyservice and the proxies, so the minute cannot roll mid-test. Measured: how many requests were
admitted beyond the limit, against the documented bound (N − 1) × requests a proxy serves per report interval;
refusals are RESOURCE_EXHAUSTED naming the limit with retry-after = the rest of the minute, HTTP 429 on the front."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import types
from pathlib import Path

import grpc
import pytest

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from keyservice.usage import ratelimits
from proxyservice import service as proxy_service
from tests.e2e.conftest import params, running_fleet
from tests.e2e.test_proxy import openai_key
from tests.e2e.test_usage import chat_body, drained
from tests.support.bao import BaoDevServer
from tests.support.http_front import front_url, mtls_client
from tests.support.stack import (
    CALLER,
    Identities,
    secure_channel,
)

PROXIES, LIMIT, PER_ROUND, ROUNDS = 3, 30, 4, 6  # 72 requests offered against 30 a minute
NOW = float(int(time.time()) // 60 * 60 + 1)  # one second into the current minute: 59 s of retry-after


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """keyservice's minute and the proxies' record stamps read one fixed instant."""
    monkeypatch.setattr(ratelimits, "clock_now", lambda: dt.datetime.fromtimestamp(NOW, dt.UTC))
    monkeypatch.setattr(proxy_service, "time", types.SimpleNamespace(time=lambda: NOW,
                                                                     perf_counter=time.perf_counter))


@pytest.mark.usefixtures("fake_time")
async def test_three_proxies_hold_a_per_minute_limit_within_the_bound(bao: BaoDevServer, ids: Identities,
                                                                      tmp_path: Path) -> None:
    # Reports only at the barrier: the background sender's interval is longer than the test.
    async with running_fleet(bao, ids, tmp_path, PROXIES, usage_report_interval=3600.0) as fleet:
        upstream, port, proxies, stubs = fleet.upstream, fleet.port, fleet.proxies, fleet.stubs
        for proxy in proxies:
            assert proxy.limiter is not None
            proxy.limiter.clock = lambda: NOW
        org = "limited"
        outcomes: list[grpc.StatusCode] = []
        refusals: list[grpc.aio.AioRpcError] = []
        async with secure_channel(port, ids.admin) as admin_channel:
            admin = kpb_grpc.KeyServiceStub(admin_channel)
            key = openai_key()
            upstream.config.keys = {"openai": {key}}
            await admin.CreateCredential(kpb.CreateCredentialRequest(provider="openai", scope=kpb.Scope(org_id=org),
                                                                     name="main", api_key=key))
            await admin.CreateCallerBinding(kpb.CreateCallerBindingRequest(
                binding=kpb.CallerBinding(caller_identity=CALLER, org_id=org)))
            limit = (await admin.SetRateLimit(kpb.SetRateLimitRequest(limit=kpb.RateLimit(
                scope=kpb.Scope(org_id=org), requests_per_minute=LIMIT)))).limit

            async def one(stub: pb_grpc.ChatServiceStub, i: int) -> None:
                try:
                    await stub.Chat(pb.ChatRequest(parameters=params(org, "gpt-4o-mini", f"req {i}")))
                    outcomes.append(grpc.StatusCode.OK)
                except grpc.aio.AioRpcError as exc:
                    outcomes.append(exc.code())
                    refusals.append(exc)

            for round_ in range(ROUNDS):
                await asyncio.gather(*(one(stubs[p], round_ * 100 + p * 10 + i)
                                       for p in range(PROXIES) for i in range(PER_ROUND)))
                for proxy in proxies:  # the barrier: every proxy reports and hears the counts
                    await drained(proxy)
            counted = (await admin.ListRateLimits(kpb.ListRateLimitsRequest(org_id=org))).limits[0]
            async with mtls_client(ids.caller, org) as http:
                front = await http.post(front_url(proxies[0].http_port) + "/openai/chat/completions",
                                        content=chat_body(stream=False), headers={"content-type": "application/json"})
        admitted = outcomes.count(grpc.StatusCode.OK)
        bound = (PROXIES - 1) * PER_ROUND
        assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert len(outcomes) == PROXIES * PER_ROUND * ROUNDS
        assert admitted == len([r for r in upstream.requests if r.status == 200]) == counted.requests
        assert LIMIT <= admitted <= LIMIT + bound
        refusal = refusals[0]
        assert limit.rate_limit_id in (refusal.details() or "")
        assert dict(refusal.trailing_metadata() or ()).get("retry-after") == "59"
        assert front.status_code == 429 and front.headers.get("retry-after") == "59"
        print(f"\n{len(outcomes)} requests over {PROXIES} proxies, {PER_ROUND} per proxy between reports, limit "
              f"{LIMIT}/min: {admitted} admitted, {admitted - LIMIT} beyond the limit (bound {bound})")
