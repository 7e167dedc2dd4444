"""The proxy's keyservice client: keyservice's gRPC codes become the proxy's own errors."""

from __future__ import annotations

import grpc
import pytest

from proxyservice import errors
from proxyservice.keyclient import _translate


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(("code", "expected", "proxy_code"), [
    (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (grpc.StatusCode.UNAUTHENTICATED, errors.ProxyError, grpc.StatusCode.INTERNAL),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
])
def test_keyservice_codes_map_to_proxy_errors(code: grpc.StatusCode, expected: type[errors.ProxyError],
                                              proxy_code: grpc.StatusCode) -> None:
    ours = _translate(rpc_error(code, "vault secret has no api_key field"))
    assert type(ours) is expected and ours.code == proxy_code


def test_failed_precondition_keeps_keyservices_safe_message() -> None:
    ours = _translate(rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "vault secret has no api_key field"))
    assert ours.message == "vault secret has no api_key field"
    assert "certificate" in _translate(rpc_error(grpc.StatusCode.UNAUTHENTICATED, "expired")).message
