"""A real OTLP/gRPC trace receiver for tests: opentelemetry-proto's TraceService `Export`, served on a loopback port,
so the proxy's own OTLP exporter sends its spans over the wire exactly as it would to a collector.

It runs on gRPC's threaded server, not on the test's event loop: the exporter's thread blocks on `Export` while the
test, on the loop, calls the proxy's `force_flush` (which returns once the receiver has answered) — no waiting.
`spans()` decodes what arrived into plain values; `metadata` holds the headers each export came with.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass
class ReceivedSpan:
    """One exported span, decoded: ids as hex, attributes as Python values."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # trace_pb2.Span.SpanKind
    attributes: dict[str, Any]
    status_code: int  # trace_pb2.Status.StatusCode
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.status_code == trace_pb2.Status.STATUS_CODE_ERROR


def _value(any_value: common_pb2.AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
               ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._receiver._received(request, dict(context.invocation_metadata()))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """`start()` binds 127.0.0.1:0; `endpoint` is what BYOK_OTLP_ENDPOINT takes (plaintext gRPC)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, Any]] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def _received(self, request: trace_service_pb2.ExportTraceServiceRequest, metadata: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(request)
            self.metadata.append(metadata)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self.metadata.clear()

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, in arrival order."""
        with self._lock:
            requests = list(self._requests)
        found = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(ReceivedSpan(
                            name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(), kind=span.kind,
                            attributes=_attributes(span.attributes), status_code=span.status.code,
                            status_message=span.status.message,
                            events=[(e.name, _attributes(e.attributes)) for e in span.events], resource=resource))
        return found

    def raw(self) -> bytes:
        """Every export request as received, serialized (a leak canary searches it whole)."""
        with self._lock:
            return b"".join(r.SerializeToString() for r in self._requests)
