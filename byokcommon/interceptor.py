"""The server interceptor both services install: request id, peer identity, authorisation, admission
control, metrics, one log line per RPC, and the mapping of exceptions to gRPC status codes.

Handlers raise exceptions carrying `code` (a grpc.StatusCode) and a safe `message` (each service's
errors.py); anything else becomes INTERNAL with a fixed text, and only its type is logged, because foreign
exception text can carry secrets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from byokcommon.metrics import RpcMetrics
from byokcommon.tls import peer_certificate_current, peer_identity

Authorize = Callable[[str, str], None]
"""authorize(method, identity) raises a coded exception (PERMISSION_DENIED…) to refuse the call."""

_log = structlog.get_logger("byok.rpc")


def _coded(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    code = getattr(exc, "code", None)
    if isinstance(code, grpc.StatusCode):
        return code, str(getattr(exc, "message", "") or code.name.lower())
    return None


class _CertificateNotCurrent(Exception):
    """The caller's certificate expired (or is not yet valid) since its connection was opened."""

    code = grpc.StatusCode.UNAUTHENTICATED
    message = "the client certificate is outside its validity period"


class RequestInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler of a grpc.aio server. `max_concurrent` bounds RPCs in flight (streams included);
    past it calls fail at once with RESOURCE_EXHAUSTED instead of queueing."""

    def __init__(self, *, authorize: Authorize, metrics: RpcMetrics, max_concurrent: int,
                 exempt_prefixes: tuple[str, ...] = ("/grpc.health.v1.", "/grpc.reflection."),
                 log_success: bool = True) -> None:
        # A service that writes its own richer line per request (the proxy) turns the generic one off
        # for successes; failures are always logged here.
        self._log_success = log_success
        self._authorize = authorize
        self._metrics = metrics
        self._max = max_concurrent
        self._active = 0
        self._exempt = exempt_prefixes

    @property
    def active(self) -> int:
        return self._active

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(self._exempt):
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        request_id = metadata.get("x-request-id", "")[:128] or uuid.uuid4().hex
        short = method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                async with _Call(self, short, request_id, context) as call:
                    return await call.run(inner_uu(request, context))
                return None  # unreachable: _Call aborts on error

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async with _Call(self, short, request_id, context) as call:
                    async for item in inner_us(request, context):
                        call.messages += 1
                        yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler  # client/bidi streaming: none of our services use them


class _Call:
    """One RPC's bookkeeping; an async context manager so unary and streaming share it."""

    def __init__(self, owner: RequestInterceptor, method: str, request_id: str,
                 context: grpc.aio.ServicerContext) -> None:
        self.owner, self.method, self.request_id, self.context = owner, method, request_id, context
        self.messages = 0
        self.identity = ""
        self.admitted = False

    async def run(self, awaitable: Awaitable[Any]) -> Any:
        return await awaitable

    async def __aenter__(self) -> _Call:
        self.start = time.perf_counter()
        self.identity = peer_identity(self.context)
        structlog.contextvars.bind_contextvars(request_id=self.request_id, method=self.method, peer=self.identity)
        owner = self.owner
        if owner._active >= owner._max:
            owner._metrics.rejected.inc()
            self._finish(grpc.StatusCode.RESOURCE_EXHAUSTED)
            await self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "server is at its concurrency limit")
        owner._active += 1
        self.admitted = True
        owner._metrics.in_flight.inc()
        try:
            if not peer_certificate_current(self.context):
                raise _CertificateNotCurrent()
            owner._authorize(self.method, self.identity)
        except Exception as exc:  # noqa: BLE001 - mapped below
            await self._fail(exc)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> bool:
        if exc is None:
            self._finish(grpc.StatusCode.OK)
            return False
        if isinstance(exc, grpc.aio.AbortError):
            self._finish(self.context.code() or grpc.StatusCode.UNKNOWN)
            return False
        if isinstance(exc, GeneratorExit | KeyboardInterrupt | SystemExit):
            self._finish(grpc.StatusCode.CANCELLED)
            return False
        import asyncio

        if isinstance(exc, asyncio.CancelledError):
            self._finish(grpc.StatusCode.CANCELLED)
            return False
        await self._fail(exc)
        return False  # pragma: no cover - _fail always raises

    async def _fail(self, exc: BaseException) -> None:
        coded = _coded(exc)
        if coded is None:
            _log.error("rpc.unhandled_exception", exc_type=type(exc).__name__)
            coded = (grpc.StatusCode.INTERNAL, "internal error")
        self._finish(coded[0])
        trailers = getattr(exc, "trailers", ())
        await self.context.abort(coded[0], coded[1], tuple(trailers))

    def _finish(self, code: Any) -> None:
        if getattr(self, "_done", False):
            return
        self._done = True
        owner = self.owner
        if self.admitted:
            owner._active -= 1
            owner._metrics.in_flight.dec()
        elapsed = time.perf_counter() - self.start
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        owner._metrics.requests.labels(self.method, name).inc()
        owner._metrics.duration.labels(self.method).observe(elapsed)
        if name == "OK" and not owner._log_success:
            pass
        else:
            log = _log.info if name in ("OK", "NOT_FOUND", "CANCELLED") else _log.warning
            log("rpc", code=name, duration_ms=round(elapsed * 1000, 3), messages=self.messages or None)
        structlog.contextvars.unbind_contextvars("request_id", "method", "peer")
