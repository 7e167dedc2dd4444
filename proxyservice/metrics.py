"""The proxy's Prometheus metrics (beside the shared per-RPC ones). Labels: provider names, status codes and
hit/miss only, never tenants, models chosen by callers, or keys."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from byokcommon.metrics import LATENCY_BUCKETS


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("byok_proxy_requests_total", "Chat and Embed requests, by provider and gRPC code.",
                                ["provider", "code"], registry=registry)
        self.ttfb = Histogram("byok_proxy_ttfb_seconds",
                              "Time to the provider's first body byte of a streamed response (StreamChat only).",
                              ["provider"],
                              buckets=LATENCY_BUCKETS, registry=registry)
        self.duration = Histogram("byok_proxy_request_duration_seconds", "Whole request time.", ["provider"],
                                  buckets=LATENCY_BUCKETS + (60, 120, 300), registry=registry)
        self.lease_lookups = Counter(
            "byok_proxy_lease_cache_lookups_total",
            "Lease cache lookups by result: hit, miss, negative (a cached refusal), limited (the caller's budget of "
            "keyservice calls spent); evicted counts entries dropped for room.",
            ["result"], registry=registry)
        self.upstream_status = Counter("byok_proxy_upstream_responses_total", "Provider HTTP status codes.",
                                       ["provider", "status"], registry=registry)
        self.native_requests = Counter(
            "byok_proxy_native_requests_total",
            "Requests of the providers' own APIs (surface: http or forward; outcome: the HTTP status the caller got, "
            "or the gRPC code of a Forward refused before any answer).",
            ["surface", "provider", "outcome"], registry=registry)
        self.revocations = Counter("byok_proxy_revocations_total", "Revocation events applied.",
                                   registry=registry)
