"""The ChatService servicer: validate, lease (from cache), call the provider, relay its stream.

Per request: the caller is the mTLS identity; the tenant comes from the request but keyservice checks the
caller is bound to it when the lease is issued (leases are cached per caller). A provider 401/403 before any
byte went to the caller, with the provider's structured bad-key evidence, reports the key to keyservice (which
confirms it itself) and retries once with another credential.

Embed takes the same path with one lease for the whole batch: proxyservice/embeddings.py turns it into the
provider's calls (split to its batch limit), which go out at most `embeddings.MAX_CONCURRENT_CALLS` at a time; the
first failure cancels the others and fails the request (a refusal of the key fails the whole batch over).

Traces (proxyservice/tracing.py): each RPC method opens its request's span around the core, which records the
outcome on it in `_finish` (the HTTP front hands the core its own span the same way).

Usage (proxyservice/usage_reporter.py): `_finish` also appends the request's usage record to the reporter's buffer,
for every request served with a lease (a refusal before one names no key whose bill it could land on).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as pb
from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import peer_identity
from proxyservice import embeddings, errors, tracing
from proxyservice.accumulate import coalesce
from proxyservice.adapters import adapter_for
from proxyservice.adapters.base import Adapter, AdapterError, RequestMappingError, UpstreamRequest
from proxyservice.failover import KeyFailover
from proxyservice.keyclient import KeyServiceClient, LeaseKey
from proxyservice.leasecache import CachedLease, LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.native import NativeAnswer, NativeRelay, NativeRequest
from proxyservice.sse import SSEEventTooLarge
from proxyservice.tracing import RequestSpan, Tracing
from proxyservice.upstream import Upstream, UpstreamFailure, UpstreamResponse
from proxyservice.usage_reporter import UsageReporter
from proxyservice.validation import validate_parameters

_log = structlog.get_logger("byok.proxy")
_KEY_SOURCE = {kpb.KEY_SOURCE_TENANT: pb.KEY_SOURCE_TENANT, kpb.KEY_SOURCE_PLATFORM: pb.KEY_SOURCE_PLATFORM}
T = TypeVar("T")


@dataclass
class _Outcome:
    """What the per-request log line, metrics and span say about one request."""

    request_id: str
    caller: str
    params: pb.ChatParameters | pb.EmbedRequest  # both say the tenant and the model, all the log line reads
    event: str = "chat"  # the log line's name: "chat" or "embed"
    started: float = field(default_factory=time.perf_counter)
    provider: str = ""
    credential_id: str = ""
    key_source: str = ""
    upstream_status: int = 0
    ttfb: float | None = None
    usage: pb.Usage | None = None
    span: RequestSpan | None = None  # None when tracing is off
    stream: bool = False
    response_model: str = ""
    finish_reasons: list[str] = field(default_factory=list)


class ChatServicer(pb_grpc.ChatServiceServicer):
    def __init__(self, *, cache: LeaseCache, keys: KeyServiceClient, upstream: Upstream,
                 metrics: ProxyMetrics, native: NativeRelay | None = None, tracing: Tracing | None = None,
                 usage: UsageReporter | None = None) -> None:
        self.usage = usage
        self.cache = cache
        self.keys = keys
        self.upstream = upstream
        self.metrics = metrics
        self.native = native or NativeRelay(failover=KeyFailover(cache=cache, keys=keys, metrics=metrics),
                                            upstream=upstream, metrics=metrics)
        self.failover = self.native.failover
        self.tracing = tracing or Tracing()

    async def StreamChat(self, request: pb.StreamChatRequest, context: grpc.aio.ServicerContext
                         ) -> AsyncIterator[pb.StreamChatResponse]:
        params = request.parameters
        async with self.tracing.grpc_span(context, "StreamChat", "chat", params.model) as span:
            # aclosing: the core's outcome is on the span before the span ends, however the stream stops.
            async with contextlib.aclosing(self.stream_chat(params, peer_identity(context), span=span)) as messages:
                async for message in messages:
                    yield message

    async def Chat(self, request: pb.ChatRequest, context: grpc.aio.ServicerContext) -> pb.ChatResponse:
        async with self.tracing.grpc_span(context, "Chat", "chat", request.parameters.model) as span:
            return await self.chat(request.parameters, peer_identity(context), span=span)

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        async with self.tracing.grpc_span(context, "Embed", "embeddings", request.model) as span:
            return await self.embed(request, peer_identity(context), span=span)

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
        async with self.tracing.grpc_span(context, "Forward", native_path=native.path) as span:
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
                if span is not None:
                    tracing.fail(span, exc.code.name, exc.message)
                raise
            finally:
                if answer is not None:
                    await answer.aclose()
                self.native.record(native, "forward", outcome, started, answer, span=span)

    # -- the unified schema, for any surface (gRPC above, the HTTP front's OpenAI-shaped endpoint) ----------
    async def stream_chat(self, params: pb.ChatParameters, caller: str, *, span: RequestSpan | None = None
                          ) -> AsyncGenerator[pb.StreamChatResponse, None]:
        """A streamed completion for `caller` (an authenticated identity): StreamStart first, then deltas. `span`:
        the surface's span of the request, which the outcome is recorded on (None: tracing is off)."""
        outcome = self._begin(params, caller, span=span, stream=True)
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
                        if span is not None:
                            _answered(outcome, message)
                        elif message.model:  # the usage record's model as answered (sent when it changes)
                            outcome.response_model = message.model
                        yield message
                for message in coalesce(decoder.close()):
                    if span is not None:
                        _answered(outcome, message)
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

    async def chat(self, params: pb.ChatParameters, caller: str, *, span: RequestSpan | None = None
                   ) -> pb.ChatResponse:
        """A whole completion for `caller` (an authenticated identity); `span` as for `stream_chat`."""
        outcome = self._begin(params, caller, span=span)
        with self._tracking(outcome):
            validate_parameters(params)
            entry, response, adapter = await self._open(params, outcome, stream=False)
            # No TTFB here: a unary reply's first byte is its whole body, which duration already measures.
            body = await response.read()
            try:
                reply = adapter.parse_response(body)
            except AdapterError as exc:
                raise errors.UpstreamProtocolError(str(exc)) from None
            _served(reply, outcome, entry.lease)
            reply.api_family = entry.lease.api_family
            return reply

    async def embed(self, request: pb.EmbedRequest, caller: str, *, span: RequestSpan | None = None
                    ) -> pb.EmbedResponse:
        """One vector per input, in input order, for `caller` (an authenticated identity); see the module
        docstring for how a batch is split, sent and failed over. `span` as for `stream_chat`."""
        outcome = self._begin(request, caller, event="embed", span=span)
        with self._tracking(outcome):
            embeddings.validate_embed_request(request)
            return await self.failover.run(self._lease_key(request, outcome),
                                           lambda entry: self._embed(request, entry, outcome))

    # -- the shared path ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tracking(self, outcome: _Outcome) -> Iterator[None]:
        """Metrics and the per-request log line, whatever way the request ends (a request refused by validation
        included). Codes agree with what the interceptor sends: a ProxyError's own, CANCELLED when the caller
        went away (task cancelled, generator closed), INTERNAL for anything else."""
        code, message = "OK", ""
        try:
            yield
        except errors.ProxyError as exc:
            code, message = exc.code.name, exc.message
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code, message = "CANCELLED", "the caller went away"
            raise
        except BaseException:
            code, message = "INTERNAL", "internal error"  # what the interceptor tells the caller, no more
            raise
        finally:
            self._finish(outcome, code)
            if outcome.span is not None:
                tracing.record_request(outcome.span, outcome, code, message)

    def _begin(self, params: pb.ChatParameters | pb.EmbedRequest, caller: str, event: str = "chat", *,
               span: RequestSpan | None = None, stream: bool = False) -> _Outcome:
        """One request id per request: the caller's request_id when set, else the one the interceptor bound
        (x-request-id, or its fresh uuid). Rebinding it makes the interceptor's rpc line say the same."""
        return _Outcome(request_id=self._request_id(params.request_id), caller=caller, params=params, event=event,
                        span=span, stream=stream)

    @staticmethod
    def _request_id(given: str) -> str:
        request_id = given[:128]
        if request_id:
            structlog.contextvars.bind_contextvars(request_id=request_id)
            return request_id
        return str(structlog.contextvars.get_contextvars().get("request_id") or uuid.uuid4().hex)

    async def _open(self, params: pb.ChatParameters, outcome: _Outcome, *, stream: bool
                    ) -> tuple[CachedLease, UpstreamResponse, Adapter]:
        return await self.failover.run(self._lease_key(params, outcome),
                                       lambda entry: self._send(params, entry, outcome, stream))

    @staticmethod
    def _lease_key(params: pb.ChatParameters | pb.EmbedRequest, outcome: _Outcome) -> LeaseKey:
        """The lease a request needs: by provider when it names one (then the model does not route), else by model."""
        tenant = params.tenant
        return LeaseKey(caller=outcome.caller, org_id=tenant.org_id, project_id=tenant.project_id,
                        user_id=tenant.user_id, provider=params.provider,
                        model="" if params.provider else params.model, credential_id=params.credential_id)

    async def _send(self, params: pb.ChatParameters, entry: CachedLease, outcome: _Outcome, stream: bool
                    ) -> tuple[CachedLease, UpstreamResponse, Adapter]:
        lease = entry.lease
        _using(outcome, lease)
        adapter = adapter_for(lease.api_family)
        with _refusals():
            upstream_request = adapter.build_request(params, api_base=lease.api_base, api_key=lease.api_key,
                                                     model=params.model or lease.default_model, stream=stream,
                                                     provider=lease.provider, lease=lease)
        return entry, await self._call(upstream_request, lease, outcome), adapter

    async def _embed(self, request: pb.EmbedRequest, entry: CachedLease, outcome: _Outcome) -> pb.EmbedResponse:
        """One attempt with one lease: every call of the batch, or none (an UpstreamFailure of any call reaches the
        failover as it is, and the whole batch is sent again with the next credential)."""
        lease = entry.lease
        _using(outcome, lease)
        family = lease.api_family
        with _refusals():
            calls = embeddings.build_calls(request, embeddings.Target(
                family, lease.provider, lease.api_base, lease.api_key, request.model, lease))

        async def part(call: embeddings.EmbedCall) -> embeddings.EmbedPart:
            body = await (await self._call(call.request, lease, outcome)).read()
            return embeddings.parse_answer(family, body, call)  # here, so a bad answer cancels the other calls

        try:
            parts = await _all_or_none([functools.partial(part, c) for c in calls], embeddings.MAX_CONCURRENT_CALLS)
            reply = embeddings.join(request, calls, parts, family)
        except AdapterError as exc:
            raise errors.UpstreamProtocolError(str(exc)) from None
        _served(reply, outcome, lease)
        return reply

    async def _call(self, upstream_request: UpstreamRequest, lease: kpb.IssueKeyLeaseResponse, outcome: _Outcome
                    ) -> UpstreamResponse:
        """The provider's open 2xx answer, its status counted (a non-2xx one raises UpstreamFailure, counted too)."""
        try:
            response = await self.upstream.open(upstream_request, lease.api_family, lease.provider)
        except UpstreamFailure as failure:
            outcome.upstream_status = failure.status
            self.metrics.upstream_status.labels(lease.provider, str(failure.status)).inc()
            raise
        outcome.upstream_status = response.status_code
        self.metrics.upstream_status.labels(lease.provider, str(response.status_code)).inc()
        return response

    def _finish(self, outcome: _Outcome, code: str) -> None:
        elapsed = time.perf_counter() - outcome.started
        provider = outcome.provider or "unknown"
        self.metrics.requests.labels(provider, code).inc()
        self.metrics.duration.labels(provider).observe(elapsed)
        if outcome.ttfb is not None:
            self.metrics.ttfb.labels(provider).observe(outcome.ttfb)
        tenant = outcome.params.tenant
        _log.info(outcome.event, request_id=outcome.request_id, caller=outcome.caller, org_id=tenant.org_id,
                  project_id=tenant.project_id or None, user_id=tenant.user_id or None, provider=provider,
                  model=outcome.params.model, credential_id=outcome.credential_id or None,
                  key_source=outcome.key_source or None, status=code, upstream_status=outcome.upstream_status,
                  ttfb_ms=round(outcome.ttfb * 1000, 3) if outcome.ttfb is not None else None,
                  duration_ms=round(elapsed * 1000, 3),
                  input_tokens=outcome.usage.input_tokens if outcome.usage else None,
                  output_tokens=outcome.usage.output_tokens if outcome.usage else None)
        if self.usage is not None and outcome.key_source:
            # A Usage message shares its reply's memory (a unary reply's whole text or every vector; a stream chunk's
            # arena, ~1.4 kB): held in the buffer it would keep that alive. Its bytes (a dozen; ~0.3 µs) do not.
            usage = outcome.usage.SerializeToString() if outcome.usage is not None else None
            self.usage.add((time.time(), tenant.org_id, tenant.project_id, tenant.user_id, outcome.caller, provider,
                            outcome.response_model or outcome.params.model, outcome.credential_id, outcome.key_source,
                            code, elapsed, outcome.event, usage))


def _using(outcome: _Outcome, lease: kpb.IssueKeyLeaseResponse) -> None:
    """What the log line says of the lease the request is being sent with."""
    outcome.provider, outcome.credential_id = lease.provider, lease.credential_id
    outcome.key_source = "platform" if lease.key_source == kpb.KEY_SOURCE_PLATFORM else "tenant"


def _served(reply: pb.ChatResponse | pb.EmbedResponse, outcome: _Outcome, lease: kpb.IssueKeyLeaseResponse) -> None:
    """Stamp a unary reply with the request id and who served it; its usage goes to the log line."""
    reply.request_id = outcome.request_id
    reply.provider = lease.provider
    reply.key_source = _KEY_SOURCE.get(lease.key_source, pb.KEY_SOURCE_UNSPECIFIED)
    reply.credential_id = lease.credential_id
    if reply.HasField("usage"):
        outcome.usage = reply.usage
    if outcome.span is not None:
        _answered(outcome, reply)
    elif reply.model:
        outcome.response_model = reply.model


def _answered(outcome: _Outcome, message: pb.StreamChatResponse | pb.ChatResponse | pb.EmbedResponse) -> None:
    """What the span says the provider answered: the model that served, and why each choice ended (traced
    requests only: this is read off every streamed message)."""
    if message.model:
        outcome.response_model = message.model[:128]
    if not isinstance(message, pb.EmbedResponse) and message.choices and len(outcome.finish_reasons) < 16:
        outcome.finish_reasons += tracing.finish_reasons(message.choices)


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """An adapter's refusal of the caller's request (RequestMappingError) as INVALID_ARGUMENT naming the field."""
    try:
        yield
    except RequestMappingError as exc:
        raise errors.InvalidArgument(exc.field, str(exc)) from None


async def _all_or_none(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Every job's result, in order, at most `limit` of them running at once. The first failure cancels the others
    and is raised as it is (an UpstreamFailure must reach the failover unwrapped), and the caller's cancellation
    cancels them all: no call is left running, none still queued starts, no answer is half-used."""
    if len(jobs) == 1:
        return [await jobs[0]()]
    gate = asyncio.Semaphore(limit)
    failed = False

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        nonlocal failed
        async with gate:
            if failed:  # a job failed as this one got its turn, before the failure cancelled it
                raise asyncio.CancelledError
            try:
                return await job()
            except BaseException:
                failed = True
                raise

    tasks = [asyncio.ensure_future(run(job)) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            failure = task.exception() if task.done() and not task.cancelled() else None
            if failure is not None:
                raise failure
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
