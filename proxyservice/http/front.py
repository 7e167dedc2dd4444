"""The HTTP front's server: HTTPS with mutual TLS on BYOK_HTTP_ADDR, built apart from running (aiohttp).

Routes: `/{provider}/…` is the provider's own API (native passthrough, `proxyservice/native/`), `/v1/chat/completions`
and `/v1/models` the OpenAI-shaped unified endpoint (`unified`). Every request: the caller is the identity of its
client certificate (checked current on every request, as on the gRPC port), the tenant comes in `x-byok-org`,
`x-byok-project`, `x-byok-user` and optionally `x-byok-credential`, the body is bounded (413 past
BYOK_HTTP_MAX_BODY_BYTES), and at most `max_concurrent` requests run at once (429 past it). A caller that goes
away cancels its handler (aiohttp's handler cancellation), which closes the provider's stream at once.

aiohttp's access log is off: its line would carry the query string, where an SDK may have put a key (`?key=`);
the proxy writes its own line per request (`NativeRelay.record`), without the query.

Traced (proxyservice/tracing.py), every request has a span, child of the caller's `traceparent`; every answer carries
the span's own `traceparent` header (set as its headers go out, streamed answers included), and the core that
serves the request records its outcome on the span.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import uuid
from dataclasses import replace
from typing import Protocol

import structlog
from aiohttp import web

from byokcommon.tls import TlsFiles, identity_from_der, reload_ssl_context, server_ssl_context, validity_from_der
from proxyservice import errors, tracing
from proxyservice.http.error_shapes import error_body, shape_for, status_of
from proxyservice.native import NativeAnswer, NativeRelay, NativeRequest
from proxyservice.tracing import RequestSpan, Tracing

_log = structlog.get_logger("byok.proxy")
TENANT_HEADERS = ("x-byok-org", "x-byok-project", "x-byok-user", "x-byok-credential")
# How often the certificate files are checked for a rotation (new handshakes then use the new ones).
TLS_RELOAD_INTERVAL = 5.0
# The unified endpoints by path (a span's http.route); any other /v1 path is "/v1/{path}".
UNIFIED_ROUTES = frozenset({"/chat/completions", "/embeddings", "/models"})
# Where a traced request keeps its span and the `traceparent` its answer carries (aiohttp's per-request mapping).
_TRACEPARENT = web.RequestKey("byok_traceparent", str)


class UnifiedEndpoint(Protocol):
    """The OpenAI-shaped `/v1/…` endpoints (`proxyservice/http/unified.py`)."""

    async def handle(self, request: web.Request, caller: str, request_id: str, path: str,
                     span: RequestSpan | None) -> web.StreamResponse: ...


class Refused(Exception):
    """A request the front answers itself (before or instead of any provider answer)."""

    def __init__(self, status: int, message: str, *, retry_after: str = "", param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.param = param

    @classmethod
    def of(cls, exc: errors.ProxyError) -> Refused:
        status = status_of(exc)
        retry_after = exc.retry_after or ("1" if status in (429, 503) else "")
        return cls(status, exc.message, retry_after=retry_after, param=getattr(exc, "field", None))


def refusal_response(shape: str, refused: Refused, request_id: str) -> web.Response:
    headers = {"content-type": "application/json", "x-byok-request-id": request_id}
    if refused.retry_after:
        headers["retry-after"] = refused.retry_after
    return web.Response(status=refused.status, body=error_body(shape, refused.status, refused.message,
                                                               refused.param), headers=headers)


class HttpFront:
    """The aiohttp application and its listener. `await start(addr)`, `port`, `await stop()`."""

    def __init__(self, *, relay: NativeRelay, tls: TlsFiles, max_body_bytes: int, max_concurrent: int,
                 unified: UnifiedEndpoint | None = None, tracing: Tracing | None = None) -> None:
        self.relay = relay
        self.tls = tls
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.unified = unified
        self.tracing = tracing or Tracing()
        self.in_flight = 0
        self.port = 0
        self._ssl = server_ssl_context(tls)
        self._tls_stamp = tls.stamp()
        self._runner: web.AppRunner | None = None
        self._reloader: asyncio.Task[None] | None = None
        # client_max_size past our own limit: the handler refuses big bodies itself, in the provider's shape.
        self.app = web.Application(client_max_size=max_body_bytes + 1)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)
        if self.tracing.enabled:
            self.app.on_response_prepare.append(_traceparent_header)

    async def start(self, addr: str, *, reuse_port: bool = False) -> None:
        host, _, port = addr.rpartition(":")
        host = host.strip("[]")
        # Our own listening socket (port 0 in tests: the bound port is read from it; SO_REUSEPORT for workers).
        sock = socket.create_server((host, int(port)), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=4096, reuse_port=reuse_port)
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True, shutdown_timeout=0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=self._ssl).start()
        self._reloader = asyncio.create_task(self._watch_tls())

    async def stop(self) -> None:
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reload_tls(self) -> bool:
        """Load rotated certificate files (True when they changed); new handshakes use them."""
        try:
            stamp = self.tls.stamp()
            if stamp == self._tls_stamp:
                return False
            reload_ssl_context(self._ssl, self.tls)
        except (OSError, ssl.SSLError, ValueError):
            return False  # mid-rotation: keep serving with what we have, try again on the next check
        self._tls_stamp = stamp
        _log.info("tls.reloaded", port="http")
        return True

    async def _watch_tls(self) -> None:
        while True:
            await asyncio.sleep(TLS_RELOAD_INTERVAL)
            self.reload_tls()

    # -- one request ----------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = (request.headers.get("x-request-id") or "")[:128] or uuid.uuid4().hex
        raw_path, _, query = request.raw_path.partition("?")
        first, _, rest = raw_path[1:].partition("/")
        unified = first == "v1" and self.unified is not None
        if not self.tracing.enabled:
            return await self._answer(request, request_id, started, unified, first, "/" + rest, query, None)
        route = (f"/v1/{rest}" if "/" + rest in UNIFIED_ROUTES else "/v1/{path}") if unified else "/{provider}/{path}"
        span = self.tracing.start(f"{request.method} {route}", request.headers.items(), {
            "http.request.method": request.method, "http.route": route, "byok.request_id": request_id})
        request[_TRACEPARENT] = tracing.traceparent(span)
        status = 0
        try:
            response = await self._answer(request, request_id, started, unified, first, "/" + rest, query, span)
            status = response.status
            return response
        finally:
            tracing.end_http(span, status)

    async def _answer(self, request: web.Request, request_id: str, started: float, unified: bool, first: str,
                      path: str, query: str, span: RequestSpan | None) -> web.StreamResponse:
        provider = "" if unified else first
        shape = "openai" if unified else shape_for(provider)
        if self.in_flight >= self.max_concurrent:
            refused = Refused(429, "the proxy is at its concurrency limit; retry shortly", retry_after="1")
            if span is not None:
                tracing.fail(span, "429", refused.message)
            return refusal_response(shape, refused, request_id)
        self.in_flight += 1
        try:
            caller = self._caller(request)
            if unified:
                assert self.unified is not None
                return await self.unified.handle(request, caller, request_id, path, span)
            return await self._native(request, caller, request_id, provider, path, query, started, span)
        except Refused as refused:
            if not unified:
                self._record_refusal(request, request_id, provider, path, refused, started, span)
            if span is not None:
                tracing.fail(span, str(refused.status), refused.message)
            return refusal_response(shape, refused, request_id)
        finally:
            self.in_flight -= 1

    def _caller(self, request: web.Request) -> str:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise Refused(401, "a client certificate is required")
        identity = identity_from_der(der)
        if not identity:
            raise Refused(401, "the client certificate names no identity (a SPIFFE URI SAN is required)")
        not_before, not_after = validity_from_der(der)
        if not not_before <= time.time() <= not_after:
            raise Refused(401, "the client certificate has expired")
        return identity

    async def read_body(self, request: web.Request) -> bytes:
        """The request body, refused with 413 past the limit (before reading it when its length says so)."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise Refused(413, f"the request body is larger than the proxy's limit of {self.max_body_bytes} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"the request body is larger than the proxy's limit of {self.max_body_bytes} "
                               f"bytes") from None
        if len(body) > self.max_body_bytes:
            raise Refused(413, f"the request body is larger than the proxy's limit of {self.max_body_bytes} bytes")
        return body

    async def _native(self, request: web.Request, caller: str, request_id: str, provider: str, path: str,
                      query: str, started: float, span: RequestSpan | None) -> web.StreamResponse:
        headers = request.headers
        native = NativeRequest(
            caller=caller, org_id=headers.get("x-byok-org", ""), project_id=headers.get("x-byok-project", ""),
            user_id=headers.get("x-byok-user", ""), credential_id=headers.get("x-byok-credential", ""),
            provider=provider, method=request.method, path=path, query=query, request_id=request_id,
            headers=tuple((name.lower(), value) for name, value in headers.items()))
        try:
            self.relay.check(native)  # before reading a body that would be refused anyway
            native = replace(native, body=await self.read_body(request))
            answer = await self.relay.open(native, started)
        except errors.ProxyError as exc:
            raise Refused.of(exc) from None
        outcome = "cancelled"
        try:
            response = await self._relay(request, answer, request_id)
            outcome = str(answer.status)
            return response
        except (ConnectionError, errors.ProxyError):
            outcome = "upstream_dropped"  # the caller got part of the body and a cut connection
            raise
        finally:
            await answer.aclose()
            self.relay.record(native, "http", outcome, started, answer, span=span)

    @staticmethod
    async def _relay(request: web.Request, answer: NativeAnswer, request_id: str) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status)
        for name, value in answer.headers:
            response.headers.add(name, value)
        response.headers["x-byok-request-id"] = request_id
        response.headers["x-byok-key-source"] = answer.key_source
        response.headers["x-byok-credential-id"] = answer.credential_id
        await response.prepare(request)
        async for chunk in answer.chunks():
            await response.write(chunk)  # written to the socket at once: each SSE event reaches the caller as sent
        await response.write_eof()
        return response

    def _record_refusal(self, request: web.Request, request_id: str, provider: str, path: str, refused: Refused,
                        started: float, span: RequestSpan | None) -> None:
        headers = request.headers
        native = NativeRequest(caller="", org_id=headers.get("x-byok-org", ""), provider=provider,
                               method=request.method, path=path, request_id=request_id)
        self.relay.record(native, "http", str(refused.status), started, None, span=span)


async def _traceparent_header(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer of a traced request names its span (replacing any `traceparent` a provider sent)."""
    value = request.get(_TRACEPARENT)
    if value:
        response.headers["traceparent"] = value

