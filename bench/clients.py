"""The load generator's clients, one per kind of contender, all with the same interface.

- `GrpcTarget`: the proxy or the floor (ChatService over mTLS), spread over several HTTP/2 connections.
- `HttpTarget`: OpenAI chat completions over HTTP/1.1 SSE, the same client for every HTTP contender: the local
  upstream directly, LiteLLM, and over HTTPS with the caller's client certificate the proxy's HTTP front
  (`/openai/chat/completions`, native passthrough, the tenant in `x-byok-org`) and the HTTP floor.

`stream(model, org)` returns a `StreamResult` with the time to the first *text* frame (so the proxy's
StreamStart and OpenAI's role-only first chunk do not count as content), the time to its first message of any
kind (the proxy's StreamStart; an HTTP answer's head), the total time and the arrival time of every text frame.
Every call is bounded by a timeout. Errors are returned, not raised, so a load step counts them instead of
stopping.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import ssl
import time
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import httpx

from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import TlsFiles, channel_credentials
from proxyservice.transport import Http1Transport

_TEXT = re.compile(r'"content":\s?"[^"]')  # a chunk whose delta carries text (not the role-only first chunk)
_MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass(slots=True)
class StreamResult:
    ok: bool
    ttfb: float = 0.0  # seconds to the first text frame
    total: float = 0.0  # seconds to the end of the stream
    arrivals: list[float] = field(default_factory=list)  # perf_counter() of each text frame
    error: str = ""
    first: float = 0.0  # seconds to the first message of any kind: the proxy's StreamStart, an HTTP answer's head

    @property
    def frames(self) -> int:
        return len(self.arrivals)

    def gaps(self) -> list[float]:
        a = self.arrivals
        return [a[i] - a[i - 1] for i in range(1, len(a))]


def _completed(t0: float, end: float, arrivals: list[float], first: float) -> StreamResult:
    """A stream that ended without error: OK with its TTFB and total, unless no text ever arrived."""
    if not arrivals:
        return StreamResult(False, total=end - t0, error="NO_TEXT")
    return StreamResult(True, arrivals[0] - t0, end - t0, arrivals, first=first - t0)


class Target(Protocol):
    name: str

    async def stream(self, model: str, org: str, timeout: float) -> StreamResult: ...

    async def unary(self, model: str, org: str, timeout: float) -> float: ...

    async def close(self) -> None: ...


class GrpcTarget:
    """ChatService client. Several channels, each its own TCP connection (a local subchannel pool), because
    real callers are many processes and one HTTP/2 connection would serialise everything on one socket."""

    def __init__(self, name: str, port: int, tls: TlsFiles, connections: int = 4) -> None:
        self.name = name
        creds = channel_credentials(tls)
        opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 16 << 20)]
        self._channels = [grpc.aio.secure_channel(f"localhost:{port}", creds, options=opts)
                          for _ in range(connections)]
        self._stubs = itertools.cycle([pb_grpc.ChatServiceStub(c) for c in self._channels])

    @staticmethod
    def _params(model: str, org: str) -> pb.ChatParameters:
        return pb.ChatParameters(tenant=pb.Tenant(org_id=org), model=model, provider="openai",
                                 messages=[pb.Message(role=pb.ROLE_USER, content="hi")])

    async def stream(self, model: str, org: str, timeout: float) -> StreamResult:
        clock = time.perf_counter
        t0 = clock()
        arrivals: list[float] = []
        first = 0.0
        try:
            call = next(self._stubs).StreamChat(pb.StreamChatRequest(parameters=self._params(model, org)),
                                                timeout=timeout)
            async for message in call:
                if not first:
                    first = clock()
                if message.choices and message.choices[0].text:
                    arrivals.append(clock())
        except grpc.aio.AioRpcError as exc:
            return StreamResult(False, arrivals=arrivals, error=exc.code().name)
        except TimeoutError:
            return StreamResult(False, arrivals=arrivals, error="TIMEOUT")
        return _completed(t0, clock(), arrivals, first)

    async def unary(self, model: str, org: str, timeout: float) -> float:
        t0 = time.perf_counter()
        reply = await next(self._stubs).Chat(pb.ChatRequest(parameters=self._params(model, org)), timeout=timeout)
        if not reply.choices or not reply.choices[0].text:
            raise RuntimeError("empty completion")
        return time.perf_counter() - t0

    async def wait_ready(self, timeout: float = 20.0) -> None:
        for channel in self._channels:
            await asyncio.wait_for(channel.channel_ready(), timeout)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


def mtls_context(tls: TlsFiles) -> ssl.SSLContext:
    """A client context presenting the caller's certificate and trusting the bench CA (as an SDK's http_client)."""
    context = ssl.create_default_context(cafile=tls.ca)
    context.load_cert_chain(tls.cert, tls.key)
    return context


class HttpTarget:
    """OpenAI chat completions over HTTP/1.1 (keep-alive pool as large as the highest concurrency).

    The transport is the proxy's own (`proxyservice.transport.Http1Transport`): httpcore's pool re-checks every
    pooled connection at each request's start and end, quadratically once many are idle, and after the
    1,024-stream scenario that made this load generator, not the contender, the bottleneck; the proxy's costs
    the same with any number of idle connections, and less per chunk (docs/benchmarks.md, "The upstream client").
    With `tls` the connections are HTTPS presenting that client certificate; with `tenant` each request names
    its org in `x-byok-org` (the proxy's HTTP front). Nothing else differs between HTTP contenders."""

    def __init__(self, name: str, base_url: str, api_key: str, max_connections: int = 2048, *,
                 tls: TlsFiles | None = None, tenant: bool = False) -> None:
        self.name = name
        self._tenant = tenant
        transport = Http1Transport(max_connections=max_connections,
                                   verify=mtls_context(tls) if tls is not None else True)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(120, connect=30), trust_env=False,
                                         headers={"authorization": f"Bearer {api_key}"}, transport=transport)

    def _headers(self, org: str) -> dict[str, str] | None:
        return {"x-byok-org": org} if self._tenant else None

    async def stream(self, model: str, org: str, timeout: float) -> StreamResult:
        clock = time.perf_counter
        t0 = clock()
        arrivals: list[float] = []
        body = {"model": model, "messages": _MESSAGES, "stream": True}
        try:
            async with asyncio.timeout(timeout):
                async with self._client.stream("POST", "/chat/completions", json=body,
                                               headers=self._headers(org)) as response:
                    first = clock()
                    if response.status_code != 200:
                        return StreamResult(False, error=f"HTTP_{response.status_code}")
                    async for line in response.aiter_lines():
                        if line.startswith("data:") and _TEXT.search(line):
                            arrivals.append(clock())
        except (httpx.HTTPError, TimeoutError) as exc:
            return StreamResult(False, arrivals=arrivals, error=type(exc).__name__)
        return _completed(t0, clock(), arrivals, first)

    async def unary(self, model: str, org: str, timeout: float) -> float:
        t0 = time.perf_counter()
        response = await self._client.post("/chat/completions", json={"model": model, "messages": _MESSAGES},
                                           headers=self._headers(org), timeout=timeout)
        if response.status_code != 200 or not response.json()["choices"][0]["message"]["content"]:
            raise RuntimeError(f"HTTP {response.status_code}")
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self._client.aclose()
