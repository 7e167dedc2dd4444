"""Undecodable requests become INVALID_ARGUMENT instead of grpc's UNKNOWN.

grpc.aio deserialises a request before any handler or interceptor code runs; when protobuf refuses the bytes
(truncated, corrupt wire format, a string field that is not UTF-8) grpc answers UNKNOWN with the exception's
class and text. A malformed request is the caller's fault, so `DecodeGuard` wraps each method's deserializer
to return a marker instead of raising, and its handler turns the marker into an exception carrying
INVALID_ARGUMENT. Installed innermost (after `RequestInterceptor` in the server's list), so that exception
goes through the request interceptor like any other: authorised first, counted, logged once, mapped to its
code. The protobuf error's text is dropped: it could quote the payload.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError


class UndecodableRequest(Exception):
    """The request's bytes are not a valid message of the method's request type."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, method: str) -> None:
        self.message = f"request: not a valid {method.rsplit('/', 1)[-1]} request message"
        super().__init__(self.message)


class _Undecodable:
    """What the guarded deserializer returns for bytes protobuf refuses."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


def _guard(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def guarded(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, UnicodeDecodeError, ValueError):
            return _UNDECODABLE

    return guarded


class DecodeGuard(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method: str = details.method
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if request is _UNDECODABLE:
                    raise UndecodableRequest(method)
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=_guard(handler.request_deserializer),
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream
            if not inspect.isasyncgenfunction(inner_us):
                # A handler that writes with `context.write` and returns None (grpc_health's Watch): wrapping it
                # in an async generator made `async for` over a coroutine, a TypeError answered UNKNOWN.
                async def unary_stream_writer(request: Any, context: grpc.aio.ServicerContext) -> None:
                    if request is _UNDECODABLE:
                        raise UndecodableRequest(method)
                    await inner_us(request, context)

                return grpc.unary_stream_rpc_method_handler(
                    unary_stream_writer, request_deserializer=_guard(handler.request_deserializer),
                    response_serializer=handler.response_serializer)

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if request is _UNDECODABLE:
                    raise UndecodableRequest(method)
                async for item in inner_us(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=_guard(handler.request_deserializer),
                response_serializer=handler.response_serializer)
        return handler  # client/bidi streaming: none of our services use them
