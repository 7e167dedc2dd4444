"""The proxy's exceptions, each carrying the gRPC status it maps to and a message safe for callers.

Hierarchy::

    ProxyError                      INTERNAL (fixed text only)
    ├── InvalidArgument             INVALID_ARGUMENT   bad request; `field` names the culprit
    ├── PermissionDenied            PERMISSION_DENIED  caller not bound to the tenant
    ├── NotFound                    NOT_FOUND          no usable credential for the tenant
    ├── FailedPrecondition          FAILED_PRECONDITION the tenant's credential cannot be used as stored
    │   └── KeyRejected                                 the provider refused the tenant's key (after failover)
    ├── RateLimited                 RESOURCE_EXHAUSTED provider 429; `retry_after` passed on
    ├── DeadlineExceeded            DEADLINE_EXCEEDED  upstream timed out
    └── Unavailable                 UNAVAILABLE        keyservice down, provider 5xx or unreachable
        └── UpstreamProtocolError                      provider sent something unusable

Foreign exceptions are translated where they enter: httpx in `upstream.py`, keyservice's gRPC errors in
`keyclient.py`. `retry_after` travels to the caller as the `retry-after` trailing metadata.
"""

from __future__ import annotations

import grpc


class ProxyError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str = "internal error", *, retry_after: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def trailers(self) -> tuple[tuple[str, str], ...]:
        return (("retry-after", self.retry_after),) if self.retry_after else ()


class InvalidArgument(ProxyError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class PermissionDenied(ProxyError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(ProxyError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(ProxyError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class KeyRejected(FailedPrecondition):
    pass


class RateLimited(ProxyError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(ProxyError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(ProxyError):
    code = grpc.StatusCode.UNAVAILABLE


class UpstreamProtocolError(Unavailable):
    pass
