"""proxyservice settings: one frozen dataclass, loaded once in __main__ from the environment and injected."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from byokcommon.egress import EgressPolicy
from byokcommon.settings import SettingsError, env_addr, env_bool, env_choice, env_float, env_int, env_str
from byokcommon.tls import TlsFiles
from proxyservice.native.paths import PathAllowlist


@dataclass(frozen=True)
class ProxySettings:
    # mTLS gRPC listen address for internal callers (BYOK_GRPC_ADDR).
    grpc_addr: str
    # This service's certificate, key and the CA callers' certificates must chain to (BYOK_TLS_*); the same
    # certificate authenticates the proxy to keyservice.
    tls: TlsFiles
    # keyservice address (BYOK_KEYSERVICE_ADDR) and the TLS name to expect from it (BYOK_KEYSERVICE_SERVER_NAME).
    # HOST:PORT, or a gRPC target naming several replicas, balanced round robin: `dns:///keyservice-headless:8443`
    # (a headless Service: one address per replica) or `ipv4:10.0.0.1:8443,10.0.0.2:8443`.
    keyservice_addr: str
    keyservice_server_name: str = ""
    # The HTTP front (docs/http-front.md): HTTPS with the same mTLS as the gRPC port (BYOK_HTTP_ADDR; "" = off), the
    # largest request body it takes (BYOK_HTTP_MAX_BODY_BYTES; sized for images and PDFs), and per provider the
    # paths under its API root it relays (BYOK_HTTP_PATH_ALLOWLIST, `openai=/chat/completions,/responses*;…`;
    # a provider without an entry is unrestricted).
    http_addr: str = ""
    http_max_body_bytes: int = 32 << 20
    http_path_allowlist: PathAllowlist = field(default_factory=PathAllowlist)
    # Plaintext gRPC health port for kubelet (BYOK_HEALTH_ADDR); "" disables it.
    health_addr: str = ""
    # Prometheus /metrics listen address (BYOK_METRICS_ADDR); "" disables it.
    metrics_addr: str = ""
    # Upstream timeouts: connecting, and the longest silence between two reads (BYOK_UPSTREAM_*).
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 300.0
    # Upstream connection pool size per process (BYOK_UPSTREAM_MAX_CONNECTIONS).
    upstream_max_connections: int = 2048
    # Where provider calls may go (byokcommon/egress.py, the same rules as keyservice's): public addresses, plus
    # the non-public CIDRs in BYOK_API_BASE_ALLOWLIST; BYOK_DEV_LOOPBACK_HTTP=1 (development only) also allows
    # plain http to loopback, for the local provider stand-in.
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # Deadline of a keyservice call; past it requests without a live lease fail with UNAVAILABLE.
    keyservice_timeout: float = 3.0
    # Refresh a lease once this fraction of its life has passed (BYOK_LEASE_REFRESH_FRACTION).
    lease_refresh_fraction: float = 0.75
    # The lease cache's bounds (docs/security.md, lease cache): most entries (BYOK_LEASE_CACHE_MAX_ENTRIES, least
    # recently used evicted past it), seconds a keyservice refusal is remembered (BYOK_LEASE_NEGATIVE_TTL_SECONDS,
    # 0 = off), and keyservice calls each caller may cause per second and in a burst
    # (BYOK_LEASE_MISSES_PER_SECOND, 0 = unlimited; BYOK_LEASE_MISS_BURST); past them RESOURCE_EXHAUSTED.
    lease_cache_max_entries: int = 50_000
    lease_negative_ttl: float = 2.0
    lease_misses_per_second: float = 50.0
    lease_miss_burst: int = 200
    # Take a client certificate's subject CN as its identity when it has no URI SAN
    # (BYOK_IDENTITY_CN_FALLBACK), for CAs that cannot issue URI SANs. Off: only a canonical SPIFFE URI SAN
    # names a caller. Even on, a CN never yields a spiffe:// identity.
    identity_cn_fallback: bool = False
    # Most RPCs at once; more get RESOURCE_EXHAUSTED (BYOK_MAX_CONCURRENT_RPCS).
    max_concurrent_rpcs: int = 4096
    # Largest request accepted from callers, bytes (BYOK_MAX_REQUEST_BYTES).
    max_request_bytes: int = 4 << 20
    # Log level (BYOK_LOG_LEVEL).
    log_level: str = "info"
    # Worker processes sharing the port with SO_REUSEPORT (BYOK_WORKERS); 1 = this process serves.
    workers: int = 1
    # Callers' connections are closed (GOAWAY) after this many seconds so new replicas get traffic
    # (BYOK_MAX_CONNECTION_AGE_SECONDS, 0 = never); streams in flight then get the grace to finish
    # (BYOK_MAX_CONNECTION_AGE_GRACE_SECONDS).
    max_connection_age_seconds: float = 300.0
    max_connection_age_grace_seconds: float = 600.0
    # On SIGTERM: seconds to report NOT_SERVING while still serving (BYOK_SHUTDOWN_DRAIN_SECONDS), then
    # seconds streams in flight get to finish (BYOK_SHUTDOWN_GRACE_SECONDS).
    shutdown_drain_seconds: float = 0.0
    shutdown_grace_seconds: float = 10.0
    # Traces (docs/tracing.md): the OTLP/gRPC collector spans are exported to (BYOK_OTLP_ENDPOINT: `http://HOST:4317`
    # plaintext, `https://HOST:4317` TLS with the system CAs or OTEL_EXPORTER_OTLP_CERTIFICATE; "" = tracing off: no
    # exporter, no thread, no span); the gRPC metadata sent with every export, e.g. a collector's auth token
    # (`name=value,…`, values URL-encoded as in OTEL_EXPORTER_OTLP_HEADERS) from BYOK_OTLP_HEADERS or, kept out of
    # the environment, from the file BYOK_OTLP_HEADERS_FILE names (never logged, never in repr); and the share of
    # new traces recorded (BYOK_TRACE_SAMPLE_RATIO, 0-1; a caller's sampled flag in `traceparent` is followed).
    otlp_endpoint: str = ""
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    trace_sample_ratio: float = 1.0
    # Usage records (docs/usage.md, proxyservice/usage_reporter.py): sent to keyservice every this many seconds
    # (BYOK_USAGE_REPORT_INTERVAL_SECONDS), or as soon as a batch of BYOK_USAGE_BATCH_RECORDS is waiting; at most
    # BYOK_USAGE_BUFFER_RECORDS held while keyservice is away (newer ones are dropped past it, and counted; 0 turns
    # reporting off); on stop, sent for at most BYOK_USAGE_FLUSH_DEADLINE_SECONDS.
    usage_report_interval: float = 1.0
    usage_batch_records: int = 500
    usage_buffer_records: int = 100_000
    usage_flush_deadline: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxySettings:
        tls = TlsFiles(env_str(env, "BYOK_TLS_CERT"), env_str(env, "BYOK_TLS_KEY"), env_str(env, "BYOK_TLS_CA"))
        tls.check("BYOK_TLS")
        return cls(
            grpc_addr=env_addr(env, "BYOK_GRPC_ADDR", "127.0.0.1:50052"),
            tls=tls,
            keyservice_addr=_grpc_target(env, "BYOK_KEYSERVICE_ADDR", "localhost:50051"),
            keyservice_server_name=env_str(env, "BYOK_KEYSERVICE_SERVER_NAME"),
            http_addr=env_addr(env, "BYOK_HTTP_ADDR", "127.0.0.1:8443") if env.get("BYOK_HTTP_ADDR", "x") else "",
            http_max_body_bytes=env_int(env, "BYOK_HTTP_MAX_BODY_BYTES", 32 << 20, minimum=1024, maximum=1 << 30),
            http_path_allowlist=_path_allowlist(env),
            health_addr=env_str(env, "BYOK_HEALTH_ADDR", "127.0.0.1:8082"),
            metrics_addr=env_str(env, "BYOK_METRICS_ADDR", "127.0.0.1:9091"),
            upstream_connect_timeout=env_float(env, "BYOK_UPSTREAM_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.05,
                                               maximum=120),
            upstream_read_timeout=env_float(env, "BYOK_UPSTREAM_TIMEOUT_SECONDS", 300.0, minimum=0.05,
                                            maximum=3600),
            upstream_max_connections=env_int(env, "BYOK_UPSTREAM_MAX_CONNECTIONS", 2048, minimum=1,
                                             maximum=100_000),
            egress=EgressPolicy.from_env(env),
            keyservice_timeout=env_float(env, "BYOK_KEYSERVICE_TIMEOUT_SECONDS", 3.0, minimum=0.05, maximum=60),
            lease_refresh_fraction=env_float(env, "BYOK_LEASE_REFRESH_FRACTION", 0.75, minimum=0.1, maximum=0.95),
            lease_cache_max_entries=env_int(env, "BYOK_LEASE_CACHE_MAX_ENTRIES", 50_000, minimum=100,
                                            maximum=10_000_000),
            lease_negative_ttl=env_float(env, "BYOK_LEASE_NEGATIVE_TTL_SECONDS", 2.0, minimum=0, maximum=60),
            lease_misses_per_second=env_float(env, "BYOK_LEASE_MISSES_PER_SECOND", 50.0, minimum=0,
                                              maximum=100_000),
            lease_miss_burst=env_int(env, "BYOK_LEASE_MISS_BURST", 200, minimum=1, maximum=1_000_000),
            identity_cn_fallback=env_bool(env, "BYOK_IDENTITY_CN_FALLBACK", False),
            max_concurrent_rpcs=env_int(env, "BYOK_MAX_CONCURRENT_RPCS", 4096, minimum=1, maximum=1_000_000),
            max_request_bytes=env_int(env, "BYOK_MAX_REQUEST_BYTES", 4 << 20, minimum=1024, maximum=64 << 20),
            log_level=env_choice(env, "BYOK_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            workers=env_int(env, "BYOK_WORKERS", 1, minimum=1, maximum=64),
            max_connection_age_seconds=env_float(env, "BYOK_MAX_CONNECTION_AGE_SECONDS", 300.0, minimum=0,
                                                 maximum=86400),
            max_connection_age_grace_seconds=env_float(env, "BYOK_MAX_CONNECTION_AGE_GRACE_SECONDS", 600.0,
                                                       minimum=0, maximum=86400),
            shutdown_drain_seconds=env_float(env, "BYOK_SHUTDOWN_DRAIN_SECONDS", 0.0, minimum=0, maximum=300),
            shutdown_grace_seconds=env_float(env, "BYOK_SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0, maximum=3600),
            otlp_endpoint=_otlp_endpoint(env),
            otlp_headers=_otlp_headers(env),
            trace_sample_ratio=env_float(env, "BYOK_TRACE_SAMPLE_RATIO", 1.0, minimum=0.0, maximum=1.0),
            usage_report_interval=env_float(env, "BYOK_USAGE_REPORT_INTERVAL_SECONDS", 1.0, minimum=0.01,
                                            maximum=600),
            usage_batch_records=env_int(env, "BYOK_USAGE_BATCH_RECORDS", 500, minimum=1, maximum=5000),
            usage_buffer_records=env_int(env, "BYOK_USAGE_BUFFER_RECORDS", 100_000, minimum=0, maximum=10_000_000),
            usage_flush_deadline=env_float(env, "BYOK_USAGE_FLUSH_DEADLINE_SECONDS", 5.0, minimum=0, maximum=300),
        )


def _path_allowlist(env: Mapping[str, str]) -> PathAllowlist:
    try:
        return PathAllowlist.parse(env_str(env, "BYOK_HTTP_PATH_ALLOWLIST"))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _otlp_endpoint(env: Mapping[str, str]) -> str:
    """`http(s)://HOST:PORT`: the scheme says plaintext or TLS (the exporter would take a bare HOST:PORT as TLS, a
    surprise); credentials belong in BYOK_OTLP_HEADERS, not in a URL that the exporter's error lines print."""
    value = env_str(env, "BYOK_OTLP_ENDPOINT")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise SettingsError(f"BYOK_OTLP_ENDPOINT: expected http://HOST:PORT or https://HOST:PORT (OTLP/gRPC, "
                            f"usually port 4317), got {value[:120]!r}")
    if parts.username is not None or parts.password is not None:
        raise SettingsError("BYOK_OTLP_ENDPOINT: must not hold credentials; put them in BYOK_OTLP_HEADERS(_FILE)")
    return value.rstrip("/")


# A gRPC metadata name (lower case: the exporter sends these as metadata) and a value without control characters.
_HEADER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")


def _otlp_headers(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """BYOK_OTLP_HEADERS, else the contents of BYOK_OTLP_HEADERS_FILE, as (name, value) pairs. Errors name the
    variable and the entry's position, never its text: a value is usually a token."""
    name, text = "BYOK_OTLP_HEADERS", env_str(env, "BYOK_OTLP_HEADERS")
    if not text and (path := env_str(env, "BYOK_OTLP_HEADERS_FILE")):
        name = "BYOK_OTLP_HEADERS_FILE"
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read().strip()
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {path} ({exc.strerror})") from None
    pairs = []
    for position, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), start=1):
        key, eq, value = entry.partition("=")
        key, value = unquote(key).strip().lower(), unquote(value).strip()
        if not eq or not _HEADER_NAME.fullmatch(key) or not _HEADER_VALUE.fullmatch(value):
            raise SettingsError(f"{name}: entry {position} is not name=value (a lower-case metadata name, a "
                                f"printable value; URL-encode ',' and '=')")
        pairs.append((key, value))
    return tuple(pairs)


# gRPC name-resolver schemes a keyservice target may use (grpc/doc/naming.md).
_TARGET_SCHEMES = ("dns", "ipv4", "ipv6")


def _grpc_target(env: Mapping[str, str], name: str, default: str) -> str:
    """HOST:PORT, `dns:[//authority/]HOST:PORT`, or `ipv4:`/`ipv6:` with comma-separated addresses and ports."""
    value = env_str(env, name, default) or default
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in _TARGET_SCHEMES:
        return env_addr(env, name, default)
    entries = [rest.rsplit("/", 1)[-1]] if scheme == "dns" else rest.split(",")
    for entry in entries:
        host, colon, port = entry.strip().rpartition(":")
        if not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) <= 65535:
            raise SettingsError(f"{name}: expected HOST:PORT or a dns:///HOST:PORT, ipv4:HOST:PORT,... target, "
                                f"got {value[:120]!r}")
    return value
