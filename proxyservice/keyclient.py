"""The proxy's typed client of keyservice (IssueKeyLease, WatchRevocations, ReportKeyFailure, ReportUsage) over mTLS.

It rebuilds its channel when its certificate files change on disk, so a rotated client certificate is used
without a restart. A replaced channel is closed once nothing runs on it any more (in-flight unary calls get
the call timeout as grace; a revocation stream keeps its channel until the stream ends), so rotations do not
accumulate idle connections. keyservice's gRPC errors are translated here into the proxy's own errors.

Several keyservice replicas: the address is a gRPC target (`dns:///keyservice-headless:8443`, resolving to every
replica, or `ipv4:10.0.0.1:8443,10.0.0.2:8443`) and the channel balances calls over every address that resolves
(`round_robin`, in the service config); a replica that dies leaves the pick at once, and a unary call caught on it
(UNAVAILABLE before any answer) is retried on another replica by gRPC's own retry policy, within the call's
deadline. A revocation stream cut by a dying replica ends, and the proxy's watcher reopens it on a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokcommon.grpcserver import KEEPALIVE_CLIENT_PING_MS
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


# Balance over every resolved address; retry idempotent unary calls that failed UNAVAILABLE (a replica dying or
# refusing connections) on another replica. gRPC retries only calls the server has not answered yet.
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "byok.keys.v1.KeyService", "method": "IssueKeyLease"},
                 {"service": "byok.keys.v1.KeyService", "method": "ReportKeyFailure"},
                 # Idempotent by batch id: a retried batch is not counted twice.
                 {"service": "byok.keys.v1.KeyService", "method": "ReportUsage"}],
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
})


class KeyServiceClient:
    def __init__(self, addr: str, tls: TlsFiles, *, server_name: str = "", timeout: float = 3.0) -> None:
        self._addr = addr
        self._tls = tls
        self._server_name = server_name
        self._timeout = timeout
        self._stamp: tuple[float, ...] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: kpb_grpc.KeyServiceStub | None = None
        self._old_channels: list[grpc.aio.Channel] = []  # replaced, still carrying a revocation stream
        self._streams: dict[int, int] = {}  # id(channel) -> open WatchRevocations streams on it
        self._closing: set[asyncio.Task[None]] = set()

    def _current(self) -> kpb_grpc.KeyServiceStub:
        stamp: tuple[float, ...] | None
        try:
            stamp = self._tls.stamp()
        except OSError:
            stamp = self._stamp  # files mid-rotation: keep the channel we have
        if self._stub is None or stamp != self._stamp:
            options: list[tuple[str, str | int]] = (
                [("grpc.ssl_target_name_override", self._server_name)] if self._server_name else [])
            options += [("grpc.keepalive_time_ms", KEEPALIVE_CLIENT_PING_MS), ("grpc.keepalive_timeout_ms", 5_000),
                        ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
                        ("grpc.service_config", SERVICE_CONFIG), ("grpc.enable_retries", 1)]
            if self._channel is not None:
                self._retire(self._channel)
            self._channel = grpc.aio.secure_channel(self._addr, channel_credentials(self._tls), options=options)
            self._stub = kpb_grpc.KeyServiceStub(self._channel)
            self._stamp = stamp
        return self._stub

    def _retire(self, channel: grpc.aio.Channel) -> None:
        """A replaced channel: close it now if no stream runs on it, else when its last stream ends."""
        if self._streams.get(id(channel)):
            self._old_channels.append(channel)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a stream finalised outside the loop: close() takes care of it
            self._old_channels.append(channel)
            return
        # Unary calls already on it (a lease request) get the call timeout to finish.
        task = loop.create_task(channel.close(grace=self._timeout))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def issue_lease(self, key: LeaseKey, exclude: tuple[str, ...] = ()) -> kpb.IssueKeyLeaseResponse:
        request = kpb.IssueKeyLeaseRequest(
            scope=kpb.Scope(org_id=key.org_id, project_id=key.project_id, user_id=key.user_id),
            provider=key.provider, model=key.model, credential_id=key.credential_id,
            caller_identity=key.caller, exclude_credential_ids=list(exclude))
        try:
            return await self._current().IssueKeyLease(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None

    async def list_models(self, caller: str, org_id: str, project_id: str, user_id: str
                          ) -> list[kpb.TenantModel]:
        """The models the tenant can reach and which key would serve each (for the HTTP front's /v1/models)."""
        request = kpb.ListTenantModelsRequest(
            scope=kpb.Scope(org_id=org_id, project_id=project_id, user_id=user_id), caller_identity=caller)
        try:
            return list((await self._current().ListTenantModels(request, timeout=self._timeout)).models)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None

    async def report_failure(self, lease_id: str, credential_id: str, http_status: int, reason: str = "") -> None:
        """Report a provider's refusal of a leased key with its structured evidence (`reason`)."""
        request = kpb.ReportKeyFailureRequest(lease_id=lease_id, credential_id=credential_id,
                                              http_status=http_status, provider_reason=reason)
        try:
            await self._current().ReportKeyFailure(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None

    async def report_usage(self, batch: kpb.ReportUsageRequest) -> kpb.ReportUsageResponse:
        """Send one batch of usage records (proxyservice/usage_reporter.py); the same batch id on every retry."""
        try:
            return await self._current().ReportUsage(batch, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None

    async def watch_revocations(self) -> AsyncIterator[kpb.WatchRevocationsResponse]:
        stub = self._current()
        channel = self._channel
        assert channel is not None
        self._streams[id(channel)] = self._streams.get(id(channel), 0) + 1
        call = stub.WatchRevocations(kpb.WatchRevocationsRequest())
        try:
            async for event in call:
                yield event
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc) from None
        finally:
            call.cancel()
            self._streams[id(channel)] -= 1
            if not self._streams[id(channel)]:
                del self._streams[id(channel)]
                if channel in self._old_channels:
                    self._old_channels.remove(channel)
                    self._retire(channel)

    async def close(self) -> None:
        for channel in [*self._old_channels, self._channel]:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task


_MAP: dict[grpc.StatusCode, Callable[[str], errors.ProxyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: lambda d: errors.InvalidArgument(*(d.split(": ", 1) + [""])[:2]),
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
}


def _translate(exc: grpc.aio.AioRpcError) -> errors.ProxyError:
    """keyservice's messages are safe by construction (its own errors.py); transport failures are not passed.

    FAILED_PRECONDITION (the credential's stored secret cannot be used, e.g. no api_key field, or a transit
    secret without its key) stays FAILED_PRECONDITION: retrying will not help until an admin fixes it.
    UNAUTHENTICATED means keyservice refused the proxy's own client certificate (expired, wrong CA): nothing
    the caller did, nor something a retry fixes, so it is INTERNAL with a fixed text for the operators.
    RESOURCE_EXHAUSTED is keyservice at its concurrency limit (UNAVAILABLE, retry), unless its message names a
    budget at its hard limit: that is the tenant's, passed on as RESOURCE_EXHAUSTED with the message.
    """
    code = exc.code()
    make = _MAP.get(code)
    if make is not None:
        return make(exc.details() or code.name.lower())
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return errors.ProxyError("keyservice did not accept the proxy's client certificate")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return errors.Unavailable("keyservice is unavailable")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        details = exc.details() or ""
        if details.startswith("budget "):  # a budget at its hard limit (keyservice/usage/budgets.py): the caller's
            return errors.RateLimited(details)
        return errors.Unavailable("keyservice is overloaded", retry_after="1")
    return errors.Unavailable(f"keyservice refused the lease ({code.name})")
