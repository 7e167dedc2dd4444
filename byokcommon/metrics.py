"""Prometheus metrics shared by both services: one registry per server (no process globals, so tests can run
several servers in one process), RPC counters and latency histograms, and the HTTP exporter."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class RpcMetrics:
    """Per-RPC metrics every gRPC server of ours exports. Labels are method names and status codes only:
    never a tenant, a key or anything a caller chose freely."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("byok_rpc_requests_total", "RPCs handled, by method and gRPC status code.",
                                ["method", "code"], registry=self.registry)
        self.duration = Histogram("byok_rpc_duration_seconds", "RPC handling time, by method.", ["method"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("byok_rpc_in_flight", "RPCs being handled now.", registry=self.registry,
                               multiprocess_mode="livesum")
        self.rejected = Counter("byok_rpc_rejected_total", "RPCs refused because the concurrency limit was hit.",
                                registry=self.registry)


def start_metrics_server(registry: CollectorRegistry, addr: str) -> tuple[WSGIServer, threading.Thread, int]:
    """Serve /metrics for `registry` on addr (HOST:PORT, port 0 for a free one)."""
    host, _, port = addr.rpartition(":")
    server, thread = start_http_server(int(port), addr=host, registry=registry)
    return server, thread, int(server.server_port)
