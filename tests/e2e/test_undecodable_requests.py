"""Requests whose bytes are not a valid message (truncated, corrupt, non-UTF-8 strings) are the caller's fault:
both services answer INVALID_ARGUMENT, never grpc's UNKNOWN with protobuf's text, and still authorise first."""

from __future__ import annotations

import grpc
import pytest

from tests.e2e.conftest import System
from tests.support.stack import secure_channel

# A truncated length-delimited field, a string field holding invalid UTF-8, and bytes that are no wire format.
BAD = [b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\xff\xff\xff\xff"]
KEY_METHODS = ["/byok.keys.v1.KeyService/GetCredential", "/byok.keys.v1.KeyService/CreateCredential"]
PROXY_METHODS = ["/byok.proxy.v1.ChatService/Chat"]


async def _send(channel: grpc.aio.Channel, method: str, payload: bytes, *, stream: bool = False
                ) -> grpc.aio.AioRpcError:
    # Identity (de)serializers: the bytes go out exactly as given.
    if stream:
        call = channel.unary_stream(method)(payload, timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
    else:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary(method)(payload, timeout=5)
    return info.value


@pytest.mark.parametrize("payload", BAD)
async def test_undecodable_requests_are_invalid_argument(system: System, payload: bytes) -> None:
    async with secure_channel(system.keyservice.port, system.ids.admin) as admin, \
            secure_channel(system.keyservice.port, system.ids.proxyservice) as proxy, \
            secure_channel(system.proxy.port, system.ids.caller) as caller:
        for method in KEY_METHODS:
            err = await _send(admin, method, payload)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.code(), err.details())
            assert "DecodeError" not in (err.details() or "")
        err = await _send(proxy, "/byok.keys.v1.KeyService/IssueKeyLease", payload)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        # Authorisation still comes first: the wrong role is told so, whatever the bytes.
        err = await _send(admin, "/byok.keys.v1.KeyService/IssueKeyLease", payload)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        for method in PROXY_METHODS:
            err = await _send(caller, method, payload)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.code(), err.details())
        err = await _send(caller, "/byok.proxy.v1.ChatService/StreamChat", payload, stream=True)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
