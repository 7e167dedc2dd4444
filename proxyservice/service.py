"""The ChatService servicer: validate, lease (from cache), call the provider, relay its stream.

Per request: the caller is the mTLS identity; the tenant comes from the request but keyservice checks the
caller is bound to it when the lease is issued (leases are cached per caller). A provider 401/403 before any
byte went to the caller, with the provider's structured bad-key evidence, reports the key to keyservice (which
confirms it itself) and retries once with another credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field

import grpc
import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import peer_identity
from proxyservice import errors
from proxyservice.accumulate import coalesce
from proxyservice.adapters import adapter_for
from proxyservice.adapters.base import Adapter, AdapterError, RequestMappingError
from proxyservice.failover import KeyFailover
from proxyservice.keyclient import KeyServiceClient, LeaseKey
from proxyservice.leasecache import CachedLease, LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.native import NativeAnswer, NativeRelay, NativeRequest
from proxyservice.sse import SSEEventTooLarge
from proxyservice.upstream import Upstream, UpstreamFailure, UpstreamResponse
from proxyservice.validation import validate_parameters

_log = structlog.get_logger("byok.proxy")
_KEY_SOURCE = {kpb.KEY_SOURCE_TENANT: pb.KEY_SOURCE_TENANT, kpb.KEY_SOURCE_PLATFORM: pb.KEY_SOURCE_PLATFORM}


@dataclass
class _Outcome:
    """What the per-request log line and metrics say about one request."""

    request_id: str
    caller: str
    params: pb.ChatParameters
    started: float = field(default_factory=time.perf_counter)
    provider: str = ""
    credential_id: str = ""
    key_source: str = ""
    upstream_status: int = 0
    ttfb: float | None = None
    usage: pb.Usage | None = None


class ChatServicer(pb_grpc.ChatServiceServicer):
    def __init__(self, *, cache: LeaseCache, keys: KeyServiceClient, upstream: Upstream,
                 metrics: ProxyMetrics, native: NativeRelay | None = None) -> None:
        self.cache = cache
        self.keys = keys
        self.upstream = upstream
        self.metrics = metrics
        self.native = native or NativeRelay(failover=KeyFailover(cache=cache, keys=keys, metrics=metrics),
                                            upstream=upstream, metrics=metrics)
        self.failover = self.native.failover

    async def StreamChat(self, request: pb.StreamChatRequest, context: grpc.aio.ServicerContext
                         ) -> AsyncIterator[pb.StreamChatResponse]:
        async for message in self.stream_chat(request.parameters, peer_identity(context)):
            yield message

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> pb.ChatResponse:
        return await self.chat(request.parameters, peer_identity(context))

    async def Forward(self, request: pb.ForwardRequest, context: grpc.aio.ServicerContext
                      ) -> AsyncIterator[pb.ForwardResponse]:
        started = time.perf_counter()
        tenant = request.tenant
        native = NativeRequest(
            caller=peer_identity(context), org_id=tenant.org_id, project_id=tenant.project_id,
            user_id=tenant.user_id, credential_id=request.credential_id, provider=request.provider,
            method=request.method.upper(), path=request.path, query=request.query,
            request_id=self._request_id(request.request_id),
            headers=tuple((h.name.lower(), h.value) for h in request.headers), body=request.body)
        answer: NativeAnswer | None = None
        outcome = "CANCELLED"
        try:
            answer = await self.native.open(native, started)
            yield pb.ForwardResponse(start=pb.ForwardStart(
                request_id=native.request_id, provider=answer.provider, credential_id=answer.credential_id,
                key_source=pb.KEY_SOURCE_PLATFORM if answer.key_source == "platform" else pb.KEY_SOURCE_TENANT,
                status=answer.status, headers=[pb.Header(name=n, value=v) for n, v in answer.headers]))
            async for chunk in answer.chunks():
                yield pb.ForwardResponse(body=chunk)
            outcome = str(answer.status)
        except errors.ProxyError as exc:
            outcome = exc.code.name if answer is None else "upstream_dropped"
            raise
        finally:
            if answer is not None:
                await answer.aclose()
            self.native.record(native, "forward", outcome, started, answer)

    # -- the unified schema, for any surface (gRPC above, the HTTP front's OpenAI-shaped endpoint) ----------
    async def stream_chat(self, params: pb.ChatParameters, caller: str
                          ) -> AsyncGenerator[pb.StreamChatResponse, None]:
        """A streamed completion for `caller` (an authenticated identity): StreamStart first, then deltas."""
        outcome = self._begin(params, caller)
        with self._tracking(outcome):
            validate_parameters(params)
            entry, response, adapter = await self._open(params, outcome, stream=True)
            lease = entry.lease
            yield pb.StreamChatResponse(start=pb.StreamStart(
                request_id=outcome.request_id, provider=lease.provider,
                key_source=_KEY_SOURCE.get(lease.key_source, pb.KEY_SOURCE_UNSPECIFIED),
                credential_id=lease.credential_id, api_family=lease.api_family))
            decoder = adapter.stream_decoder()
            try:
                async for chunk in response.chunks():
                    if outcome.ttfb is None:
                        outcome.ttfb = time.perf_counter() - outcome.started
                    messages = decoder.feed(chunk)
                    if not messages:
                        continue
                    for message in messages if len(messages) == 1 else coalesce(messages):
                        if message.HasField("usage"):
                            outcome.usage = message.usage
                        yield message
                for message in coalesce(decoder.close()):
                    yield message
                if not decoder.complete:  # a clean end of the body before the provider's end of answer
                    raise errors.Unavailable(f"{lease.api_family} upstream ended the stream before it was complete")
            except AdapterError as exc:
                for message in exc.partial:
                    yield message
                raise errors.UpstreamProtocolError(str(exc)) from None
            except SSEEventTooLarge as exc:
                raise errors.UpstreamProtocolError(f"{lease.api_family} {exc}") from None
            finally:
                await response.aclose()  # on cancellation too: closes the upstream stream at once

    async def chat(self, params: pb.ChatParameters, caller: str) -> pb.ChatResponse:
        """A whole completion for `caller` (an authenticated identity)."""
        outcome = self._begin(params, caller)
        with self._tracking(outcome):
            validate_parameters(params)
            entry, response, adapter = await self._open(params, outcome, stream=False)
            # No TTFB here: a unary reply's first byte is its whole body, which duration already measures.
            body = await response.read()
            try:
                reply = adapter.parse_response(body)
            except AdapterError as exc:
                raise errors.UpstreamProtocolError(str(exc)) from None
            lease = entry.lease
            reply.request_id = outcome.request_id
            reply.provider = lease.provider
            reply.key_source = _KEY_SOURCE.get(lease.key_source, pb.KEY_SOURCE_UNSPECIFIED)
            reply.credential_id = lease.credential_id
            reply.api_family = lease.api_family
            if reply.HasField("usage"):
                outcome.usage = reply.usage
            return reply

    # -- the shared path ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tracking(self, outcome: _Outcome) -> Iterator[None]:
        """Metrics and the per-request log line, whatever way the request ends (a request refused by validation
        included). Codes agree with what the interceptor sends: a ProxyError's own, CANCELLED when the caller
        went away (task cancelled, generator closed), INTERNAL for anything else."""
        code = "OK"
        try:
            yield
        except errors.ProxyError as exc:
            code = exc.code.name
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except BaseException:
            code = "INTERNAL"
            raise
        finally:
            self._finish(outcome, code)

    def _begin(self, params: pb.ChatParameters, caller: str) -> _Outcome:
        """One request id per request: the caller's parameters.request_id when set, else the one the interceptor
        bound (x-request-id, or its fresh uuid). Rebinding it makes the interceptor's rpc line say the same."""
        return _Outcome(request_id=self._request_id(params.request_id), caller=caller, params=params)

    @staticmethod
    def _request_id(given: str) -> str:
        request_id = given[:128]
        if request_id:
            structlog.contextvars.bind_contextvars(request_id=request_id)
            return request_id
        return str(structlog.contextvars.get_contextvars().get("request_id") or uuid.uuid4().hex)

    async def _open(self, params: pb.ChatParameters, outcome: _Outcome, *, stream: bool
                    ) -> tuple[CachedLease, UpstreamResponse, Adapter]:
        tenant = params.tenant
        key = LeaseKey(caller=outcome.caller, org_id=tenant.org_id, project_id=tenant.project_id,
                       user_id=tenant.user_id, provider=params.provider,
                       model="" if params.provider else params.model, credential_id=params.credential_id)
        return await self.failover.run(key, lambda entry: self._send(params, entry, outcome, stream))

    async def _send(self, params: pb.ChatParameters, entry: CachedLease, outcome: _Outcome, stream: bool
                    ) -> tuple[CachedLease, UpstreamResponse, Adapter]:
        lease = entry.lease
        outcome.provider, outcome.credential_id = lease.provider, lease.credential_id
        outcome.key_source = "platform" if lease.key_source == kpb.KEY_SOURCE_PLATFORM else "tenant"
        adapter = adapter_for(lease.api_family)
        try:
            upstream_request = adapter.build_request(params, api_base=lease.api_base, api_key=lease.api_key,
                                                     model=params.model or lease.default_model, stream=stream,
                                                     provider=lease.provider)
        except RequestMappingError as exc:
            raise errors.InvalidArgument(exc.field, str(exc)) from None
        try:
            response = await self.upstream.open(upstream_request, lease.api_family, lease.provider)
        except UpstreamFailure as failure:
            outcome.upstream_status = failure.status
            self.metrics.upstream_status.labels(lease.provider, str(failure.status)).inc()
            raise
        outcome.upstream_status = response.status_code
        self.metrics.upstream_status.labels(lease.provider, str(response.status_code)).inc()
        return entry, response, adapter

    def _finish(self, outcome: _Outcome, code: str) -> None:
        elapsed = time.perf_counter() - outcome.started
        provider = outcome.provider or "unknown"
        self.metrics.requests.labels(provider, code).inc()
        self.metrics.duration.labels(provider).observe(elapsed)
        if outcome.ttfb is not None:
            self.metrics.ttfb.labels(provider).observe(outcome.ttfb)
        tenant = outcome.params.tenant
        _log.info("chat", request_id=outcome.request_id, caller=outcome.caller, org_id=tenant.org_id,
                  project_id=tenant.project_id or None, user_id=tenant.user_id or None, provider=provider,
                  model=outcome.params.model, credential_id=outcome.credential_id or None,
                  key_source=outcome.key_source or None, status=code, upstream_status=outcome.upstream_status,
                  ttfb_ms=round(outcome.ttfb * 1000, 3) if outcome.ttfb is not None else None,
                  duration_ms=round(elapsed * 1000, 3),
                  input_tokens=outcome.usage.input_tokens if outcome.usage else None,
                  output_tokens=outcome.usage.output_tokens if outcome.usage else None)
