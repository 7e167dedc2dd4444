"""OpenTelemetry traces of the proxy's requests: one span per request, in the GenAI semantic conventions' terms,
saying whose key served it — and never a prompt, a completion, a key or a header value.

Which span: one for every request a surface serves (gRPC StreamChat, Chat, Embed, Forward; every request of the HTTP
front), of kind CLIENT and named `{gen_ai.operation.name} {gen_ai.request.model}`, as the conventions describe a call
to a model. It stands for the provider call with everything the proxy did for it (validation, the lease, a failover's
second attempt), so one span per request is the whole story and costs half of a server-plus-client pair. The caller's
own span is its parent.

Its life: the surface starts it (`grpc_span`, `start`) with the caller's W3C trace context (`traceparent`,
`tracestate` in gRPC metadata or HTTP headers, read by OpenTelemetry's propagator) and hands the caller back the
span's `traceparent` (gRPC initial metadata, the HTTP answer's header), so the caller can find the trace; the core
sets the attributes from the request's outcome (`record_request` from the servicer's `_finish`, `record_native`
from `NativeRelay.record`); the surface ends it. The caller's trace context is never sent on to a provider
(`native/headers.py` drops it): it would hand a third party the ids of the caller's internal traces.

What a span holds is listed in docs/tracing.md. What it never holds: message or part contents, tool arguments, stop
sequences, provider error bodies, any header value (the caller's or the provider's), a key, a URL's query. Errors
carry the ProxyError's own message, which is written for callers and never holds a key.

Off (no BYOK_OTLP_ENDPOINT): `Tracing()` has no provider, hence no exporter and no thread; surfaces test
`tracing.enabled` (or get `OFF`, a do-nothing context manager) and the core tests `span is not None`, so a request
pays for a couple of attribute reads. On: a TracerProvider with a parent-based ratio sampler and a
BatchSpanProcessor exporting over OTLP/gRPC from its own thread, flushed and shut down when the proxy stops.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from byok.proxy.v1 import chat_service_pb2 as pb

if TYPE_CHECKING:
    from proxyservice.settings import ProxySettings

# The W3C trace context headers (what the propagator reads); the same names in gRPC metadata and HTTP headers.
TRACE_CONTEXT_HEADERS = frozenset({"traceparent", "tracestate"})
_PROPAGATOR = TraceContextTextMapPropagator()
SERVICE = "byok-proxyservice"
RequestSpan = Span  # what surfaces and the core hold (opentelemetry is imported here only)
RPC_SERVICE = "byok.proxy.v1.ChatService"

# gen_ai.provider.name: the conventions' well-known value where one names the provider, else the catalog's name.
PROVIDER_NAMES = {"gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "mistral": "mistral_ai",
                  "bedrock": "aws.bedrock", "azure_openai": "azure.ai.openai", "xai": "x_ai"}
_FINISH_REASONS = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length",
                   pb.FINISH_REASON_TOOL_CALLS: "tool_calls", pb.FINISH_REASON_CONTENT_FILTER: "content_filter",
                   pb.FINISH_REASON_OTHER: "other"}
# A native request's operation, told by its path (the body is not parsed for it): the providers' own endpoints.
_NATIVE_OPERATIONS = (
    (re.compile(r"(^|/)chat/completions$|(^|/)responses$|(^|/)messages$"), "chat"),
    (re.compile(r":(stream)?generateContent$", re.IGNORECASE), "generate_content"),
    (re.compile(r"(^|/)embeddings$|:(batchEmbedContents|embedContent)$"), "embeddings"),
    (re.compile(r"(^|/)completions$"), "text_completion"),
)
# The model a Gemini or Vertex path names (`…/models/gemini-2.0-flash:generateContent`).
_PATH_MODEL = re.compile(r"/models/([A-Za-z0-9._-]{1,128}):")


class Tracing:
    """The proxy's tracer, or none (tracing off). Built apart from running (`from_settings`); `shutdown` flushes."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.provider = provider
        self.enabled = provider is not None
        self._tracer = provider.get_tracer("byok.proxy") if provider is not None else None

    @classmethod
    def from_settings(cls, settings: ProxySettings) -> Tracing:
        """Off without BYOK_OTLP_ENDPOINT; else spans exported there over OTLP/gRPC. Headers left unset in the proxy's
        settings fall back to the exporter's own OTEL_EXPORTER_OTLP_(TRACES_)HEADERS."""
        if not settings.otlp_endpoint:
            return cls()
        # Imported only when on: the exporter pulls in the OTLP protobufs.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, headers=settings.otlp_headers or None)
        return cls.exporting(exporter, settings.trace_sample_ratio)

    @classmethod
    def exporting(cls, exporter: SpanExporter, sample_ratio: float = 1.0) -> Tracing:
        """Spans batched to `exporter` (tests give the SDK's InMemorySpanExporter). A caller's sampled flag decides
        for its traces; `sample_ratio` of the others are recorded."""
        provider = TracerProvider(resource=_resource(), sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
                                  shutdown_on_exit=False)  # the proxy's stop shuts it down, flushing
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def start(self, name: str, carrier: Iterable[tuple[str, Any]], attributes: Mapping[str, Any]) -> Span:
        """A request's span (only when `enabled`), child of the caller's trace context in `carrier` (gRPC metadata or
        HTTP headers, as name/value pairs, names in any case; only the trace context headers are read)."""
        assert self._tracer is not None, "start() is only called when tracing is enabled"
        context = {key: value for name, value in carrier
                   if (key := name.lower()) in TRACE_CONTEXT_HEADERS and isinstance(value, str)}
        return self._tracer.start_span(name, context=_PROPAGATOR.extract(context) if context else None,
                                       kind=SpanKind.CLIENT, attributes=attributes)

    def grpc_span(self, context: grpc.aio.ServicerContext, method: str, operation: str = "", model: str = "", *,
                  native_path: str = "") -> _GrpcSpan | _Off:
        """`async with` around a gRPC request: its span (None when off), its `traceparent` sent back in the initial
        metadata as the call starts (so even a refused call tells the caller its trace), ended on the way out.
        Forward gives its `native_path`, which tells the operation and maybe the model."""
        if not self.enabled:
            return OFF
        if native_path:
            operation, model = native_operation(native_path), path_model(native_path)
        attributes: dict[str, Any] = {"rpc.system.name": "grpc", "rpc.method": f"{RPC_SERVICE}/{method}"}
        if operation:
            attributes["gen_ai.operation.name"] = operation
        if model:
            attributes["gen_ai.request.model"] = model
        return _GrpcSpan(self, context, span_name(operation, model, fallback=method), attributes)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export every ended span now (tests: instead of waiting for the batch delay)."""
        return self.provider.force_flush(timeout_millis) if self.provider is not None else True

    def shutdown(self) -> None:
        """Flush what is queued, stop the export thread (blocking: call it off the event loop)."""
        if self.provider is not None:
            self.provider.shutdown()


class _GrpcSpan:
    """The async context manager `Tracing.grpc_span` returns when tracing is on."""

    __slots__ = ("_attributes", "_context", "_name", "_span", "_tracing")

    def __init__(self, tracing: Tracing, context: grpc.aio.ServicerContext, name: str,
                 attributes: dict[str, Any]) -> None:
        self._tracing, self._context, self._name, self._attributes = tracing, context, name, attributes
        self._span: Span | None = None

    async def __aenter__(self) -> Span:
        span = self._span = self._tracing.start(self._name, self._context.invocation_metadata() or (),
                                                self._attributes)
        await self._context.send_initial_metadata((("traceparent", traceparent(span)),))
        return span

    async def __aexit__(self, *exc_info: object) -> None:
        if self._span is not None:
            self._span.end()


class _Off:
    """`Tracing.grpc_span` when tracing is off: yields None, does nothing."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


OFF = _Off()


def _resource() -> Resource:
    """service.name byok-proxyservice unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name one; the rest of
    OTEL_RESOURCE_ATTRIBUTES applies as the SDK reads it."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: SERVICE, "service.instance.id": _instance()}))
    return detected


def _instance() -> str:
    """Which process of which pod: the host name (the pod's name in Kubernetes) and the process id (each of
    BYOK_WORKERS exports on its own)."""
    return f"{os.uname().nodename}/{os.getpid()}"


def traceparent(span: Span) -> str:
    """The W3C `traceparent` of `span`, for the caller: version 00, as the propagator writes it (formatted here: a
    third of the propagator's cost, which builds a context and a carrier to get the same string)."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def end_http(span: Span, status: int) -> None:
    """End an HTTP-front request's span with the status the caller got (0: none, the caller went away first)."""
    if status:
        span.set_attribute("http.response.status_code", status)
    else:
        fail(span, "cancelled", "the caller went away")
    span.end()


def span_name(operation: str, model: str, fallback: str) -> str:
    """`{operation} {model}` as the conventions name a model call; `fallback` when the operation is not known."""
    if not operation:
        return fallback
    return f"{operation} {model}" if model else operation


def native_operation(path: str) -> str:
    """gen_ai.operation.name of a native request by its path ("" for an endpoint that calls no model)."""
    bare = path.partition("?")[0].rstrip("/")
    return next((operation for pattern, operation in _NATIVE_OPERATIONS if pattern.search(bare)), "")


def path_model(path: str) -> str:
    """The model a path names (Gemini's and Vertex's `models/{model}:method`), else ""."""
    found = _PATH_MODEL.search(path)
    return found.group(1) if found else ""


# -- what the core records -------------------------------------------------------------------------------------
class _Attribution(Protocol):
    """Who served a request: what both kinds of outcome say."""

    @property
    def provider(self) -> str: ...
    @property
    def credential_id(self) -> str: ...
    @property
    def key_source(self) -> str: ...
    @property
    def ttfb(self) -> float | None: ...


class RequestFacts(_Attribution, Protocol):
    """What `record_request` reads of a unified-schema request's outcome (the servicer's `_Outcome`)."""

    request_id: str
    caller: str
    params: pb.ChatParameters | pb.EmbedRequest
    stream: bool
    upstream_status: int
    usage: pb.Usage | None
    response_model: str
    finish_reasons: list[str]


def record_request(span: Span, outcome: RequestFacts, code: str, message: str) -> None:
    """A unified-schema request's attributes (StreamChat, Chat, Embed, /v1), and its status: ERROR with the gRPC
    code as error.type and the ProxyError's message when `code` is not OK."""
    if not span.is_recording():  # sampled out: nothing is kept, so nothing is computed
        return
    params = outcome.params
    embed = isinstance(params, pb.EmbedRequest)
    operation = "embeddings" if embed else "chat"
    tenant = params.tenant
    attributes = _scope(outcome.request_id, outcome.caller, tenant.org_id, tenant.project_id, tenant.user_id)
    attributes["gen_ai.operation.name"] = operation
    attributes["byok.status"] = code
    if params.model:
        attributes["gen_ai.request.model"] = params.model
    _served_by(attributes, outcome.provider, outcome.credential_id, outcome.key_source, outcome.upstream_status)
    if isinstance(params, pb.EmbedRequest):
        if params.HasField("dimensions"):
            attributes["gen_ai.embeddings.dimension.count"] = params.dimensions
    else:
        _request_controls(attributes, params, outcome.stream)
    if outcome.ttfb is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = round(outcome.ttfb, 6)
    if outcome.response_model:
        attributes["gen_ai.response.model"] = outcome.response_model
    if outcome.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = list(outcome.finish_reasons)
    usage = outcome.usage
    if usage is not None:
        _usage(attributes, usage.input_tokens, None if embed else usage.output_tokens,
               usage.cached_input_tokens if usage.HasField("cached_input_tokens") else None,
               usage.cache_creation_input_tokens if usage.HasField("cache_creation_input_tokens") else None,
               usage.reasoning_tokens if usage.HasField("reasoning_tokens") else None)
    span.set_attributes(attributes)
    span.update_name(span_name(operation, params.model or outcome.response_model, fallback=operation))
    if code != "OK":
        fail(span, code, message)


def finish_reasons(choices: Iterable[pb.ChoiceDelta | pb.Choice]) -> list[str]:
    """The provider's own finish reason of each choice that has one (the unified one when the provider's is not
    known), as gen_ai.response.finish_reasons takes them."""
    return [c.provider_finish_reason[:32] or _FINISH_REASONS.get(c.finish_reason, "")
            for c in choices if c.finish_reason or c.provider_finish_reason]


class NativeFacts(Protocol):
    """What `record_native` reads of a native request (`NativeRequest`, frozen: hence properties)."""

    @property
    def request_id(self) -> str: ...
    @property
    def caller(self) -> str: ...
    @property
    def org_id(self) -> str: ...
    @property
    def project_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def path(self) -> str: ...


class NativeUsageFacts(Protocol):
    """The counts the usage tap read (`NativeUsage`)."""

    model: str
    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    cache_creation_input_tokens: int | None
    reasoning_tokens: int | None


class NativeAnswerFacts(_Attribution, Protocol):
    """What `record_native` reads of the provider's answer (`NativeAnswer`)."""

    status: int

    @property
    def usage(self) -> NativeUsageFacts: ...


# What a native request's outcome is when the caller got less than the provider's whole answer.
_NATIVE_BROKEN = frozenset({"cancelled", "upstream_dropped", "CANCELLED"})


def record_native(span: Span, req: NativeFacts, answer: NativeAnswerFacts | None, outcome: str) -> None:
    """A native request's attributes (Forward, `/{provider}/…`). A provider's 4xx/5xx answer, relayed as it is, and
    an answer cut short make the span ERROR; a refusal before any answer is the surface's to record (`fail`)."""
    if not span.is_recording():
        return
    attributes = _scope(req.request_id, req.caller, req.org_id, req.project_id, req.user_id)
    attributes["byok.status"] = outcome
    operation, model = native_operation(req.path), path_model(req.path)
    if operation:
        attributes["gen_ai.operation.name"] = operation
    if model:
        attributes["gen_ai.request.model"] = model
    response_model = ""
    if answer is None:
        if req.provider:
            attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(req.provider, req.provider)
    else:
        _served_by(attributes, answer.provider, answer.credential_id, answer.key_source, answer.status)
        if answer.ttfb is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = round(answer.ttfb, 6)
        usage = answer.usage
        response_model = usage.model
        if response_model:
            attributes["gen_ai.response.model"] = response_model
        _usage(attributes, usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
               usage.cache_creation_input_tokens, usage.reasoning_tokens)
    span.set_attributes(attributes)
    if operation:
        span.update_name(span_name(operation, model or response_model, fallback=operation))
    if answer is not None and answer.status >= 400:
        fail(span, str(answer.status), f"{answer.provider} answered {answer.status}")
    elif outcome in _NATIVE_BROKEN:
        fail(span, outcome, "the caller went away" if outcome.lower() == "cancelled"
             else "the provider's answer was cut short")


def fail(span: Span, error_type: str, message: str) -> None:
    """Mark the span failed, unless it already is: the first to know why (the core, before a surface translates
    its error to HTTP) names the error."""
    status = getattr(span, "status", None)  # the SDK's recording span has one; the API's interface does not say so
    if not span.is_recording() or status is not None and not status.is_unset:
        return
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message[:500]))


def _scope(request_id: str, caller: str, org_id: str, project_id: str, user_id: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {"byok.request_id": request_id, "byok.org_id": org_id}
    if caller:
        attributes["byok.caller"] = caller
    if project_id:
        attributes["byok.project_id"] = project_id
    if user_id:
        attributes["byok.user_id"] = user_id
    return attributes


def _served_by(attributes: dict[str, Any], provider: str, credential_id: str, key_source: str,
               upstream_status: int) -> None:
    if provider:
        attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(provider, provider)
        if provider in PROVIDER_NAMES:  # the catalog's name, where the conventions spell it otherwise
            attributes["byok.provider"] = provider
    if credential_id:
        attributes["byok.credential_id"] = credential_id
    if key_source:
        attributes["byok.key_source"] = key_source
    if upstream_status:
        attributes["byok.upstream.status_code"] = upstream_status


def _request_controls(attributes: dict[str, Any], params: pb.ChatParameters, stream: bool) -> None:
    """The sampling controls the conventions name (numbers only: no stop sequence, no content)."""
    if params.HasField("max_tokens"):
        attributes["gen_ai.request.max_tokens"] = params.max_tokens
    if params.HasField("temperature"):
        attributes["gen_ai.request.temperature"] = params.temperature
    if params.HasField("top_p"):
        attributes["gen_ai.request.top_p"] = params.top_p
    if params.HasField("seed"):
        attributes["gen_ai.request.seed"] = params.seed
    if params.HasField("frequency_penalty"):
        attributes["gen_ai.request.frequency_penalty"] = params.frequency_penalty
    if params.HasField("presence_penalty"):
        attributes["gen_ai.request.presence_penalty"] = params.presence_penalty
    if params.response_format.schema_json:
        attributes["gen_ai.output.type"] = "json"
    if stream:
        attributes["gen_ai.request.stream"] = True


def _usage(attributes: dict[str, Any], input_tokens: int | None, output_tokens: int | None,
           cache_read: int | None, cache_write: int | None, reasoning: int | None) -> None:
    for name, value in (("gen_ai.usage.input_tokens", input_tokens), ("gen_ai.usage.output_tokens", output_tokens),
                        ("gen_ai.usage.cache_read.input_tokens", cache_read),
                        ("gen_ai.usage.cache_creation.input_tokens", cache_write),
                        ("gen_ai.usage.reasoning.output_tokens", reasoning)):
        if value is not None:
            attributes[name] = value
