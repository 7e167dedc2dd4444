"""The proxy's typed client of keyservice (IssueKeyLease, WatchRevocations, ReportKeyFailure) over mTLS.

It rebuilds its channel when its certificate files change on disk, so a rotated client certificate is used
without a restart. keyservice's gRPC errors are translated here into the proxy's own errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokcommon.tls import TlsFiles, channel_credentials
from proxyservice import errors


@dataclass(frozen=True, slots=True)
class LeaseKey:
    """What a lease is cached under: who asks (the caller's identity), for which tenant and route."""

    caller: str
    org_id: str
    project_id: str
    user_id: str
    provider: str
    model: str  # only when provider is empty: keyservice routes the model to a provider
    credential_id: str


class KeyServiceClient:
    def __init__(self, addr: str, tls: TlsFiles, *, server_name: str = "", timeout: float = 3.0) -> None:
        self._addr = addr
        self._tls = tls
        self._server_name = server_name
        self._timeout = timeout
        self._stamp: tuple[float, ...] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: kpb_grpc.KeyServiceStub | None = None
        self._old_channels: list[grpc.aio.Channel] = []

    def _current(self) -> kpb_grpc.KeyServiceStub:
        try:
            stamp = self._tls.stamp()
        except OSError:
            stamp = self._stamp  # files mid-rotation: keep the channel we have
        if self._stub is None or stamp != self._stamp:
            options = [("grpc.ssl_target_name_override", self._server_name)] if self._server_name else []
            options += [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 5_000)]
            if self._channel is not None:
                self._old_channels.append(self._channel)  # open watch streams finish on it
            self._channel = grpc.aio.secure_channel(self._addr, channel_credentials(self._tls), options=options)
            self._stub = kpb_grpc.KeyServiceStub(self._channel)
            self._stamp = stamp
        return self._stub

    async def issue_lease(self, key: LeaseKey, exclude: tuple[str, ...] = ()) -> kpb.IssueKeyLeaseResponse:
        request = kpb.IssueKeyLeaseRequest(
            scope=kpb.Scope(org_id=key.org_id, project_id=key.project_id, user_id=key.user_id),
            provider=key.provider, model=key.model, credential_id=key.credential_id,
            caller_identity=key.caller, exclude_credential_ids=list(exclude))
        try:
            return await self._current().IssueKeyLease(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None

    async def report_failure(self, lease_id: str, credential_id: str, http_status: int) -> None:
        request = kpb.ReportKeyFailureRequest(lease_id=lease_id, credential_id=credential_id,
                                              http_status=http_status)
        try:
            await self._current().ReportKeyFailure(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None

    async def watch_revocations(self) -> AsyncIterator[kpb.WatchRevocationsResponse]:
        call = self._current().WatchRevocations(kpb.WatchRevocationsRequest())
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        for channel in [*self._old_channels, self._channel]:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()


_MAP = {
    grpc.StatusCode.INVALID_ARGUMENT: lambda d: errors.InvalidArgument(*(d.split(": ", 1) + [""])[:2]),
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
}


def _translate(exc: grpc.aio.AioRpcError) -> errors.ProxyError:
    """keyservice's messages are safe by construction (its own errors.py); transport failures are not passed."""
    code = exc.code()
    make = _MAP.get(code)
    if make is not None:
        return make(exc.details() or code.name.lower())
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return errors.Unavailable("keyservice is unavailable")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.Unavailable("keyservice is overloaded", retry_after="1")
    return errors.Unavailable(f"keyservice refused the lease ({code.name})")
