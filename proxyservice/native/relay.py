"""The native passthrough's core: lease, build the provider request, send it, hand back the open answer.

Per request: the provider name and path are checked (`paths`), the lease comes from the cache through
`KeyFailover` (so a provider's 401/403 with bad-key evidence reports the key and retries once with the next
credential: the body is bounded, so it can be sent again), the caller's headers are filtered and the lease's key
set (`headers`), and the provider's answer comes back open, whatever its status: its errors are the provider's
own, in its own shape, so SDKs raise their usual exceptions. The answer's bytes pass through a `UsageTap` as they
are relayed; `record` writes the request's log line and metrics once it is over, the outcome on the request's span
when it is traced, and its usage record into the usage reporter's buffer when a lease served it. A key the
provider echoes never reaches the caller (`scrub`); the caller's trace context never reaches the provider
(`headers.to_provider` drops it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import structlog

from byok.keys.v1 import key_service_pb2 as kpb
from byokcommon.provider_answers import key_rejection
from proxyservice import errors, tracing
from proxyservice.adapters.base import UpstreamRequest, presentation
from proxyservice.failover import KeyFailover
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import CachedLease
from proxyservice.metrics import ProxyMetrics
from proxyservice.native import headers as native_headers
from proxyservice.native.paths import PROVIDER_NAME, PathAllowlist, check_path, native_root, upstream_url
from proxyservice.native.scrub import KeyInBody, KeyScrubber
from proxyservice.native.usage_tap import NativeUsage, UsageTap
from proxyservice.tracing import RequestSpan
from proxyservice.upstream import NativeResponse, Upstream, UpstreamFailure
from proxyservice.usage_reporter import UsageReporter

_log = structlog.get_logger("byok.proxy")
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """One request of a provider's own API, as a surface received it (header names lower-case)."""

    caller: str
    org_id: str
    provider: str
    method: str
    path: str
    request_id: str
    project_id: str = ""
    user_id: str = ""
    credential_id: str = ""
    query: str = ""
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    body: bytes = field(default=b"", repr=False)


class NativeAnswer:
    """The provider's answer, open: status, the headers for the caller, and the body's bytes as they arrive."""

    def __init__(self, response: NativeResponse, lease: kpb.IssueKeyLeaseResponse, started: float,
                 prefetched: bytes | None = None) -> None:
        self._response = response
        self._prefetched = prefetched
        self._started = started
        self.status = response.status_code
        self.provider = lease.provider
        self.credential_id = lease.credential_id
        self.key_source = "platform" if lease.key_source == kpb.KEY_SOURCE_PLATFORM else "tenant"
        response_headers = response.headers
        # What a provider could echo: the key, or the session token a signed request carries.
        secret = lease.api_key or lease.aws_credentials.session_token
        self.headers = native_headers.to_caller(response_headers, secret)
        content_type = next((value for name, value in response_headers if name == "content-type"), "")
        self._tap = UsageTap(content_type.lower())
        self._scrubber = KeyScrubber(secret)
        self.ttfb: float | None = None

    @property
    def usage(self) -> NativeUsage:
        return self._tap.usage

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as it arrives, unchanged (but for an echoed key: `scrub`). A body that holds
        the key across two chunks ends there, as Unavailable."""
        tap, clean = self._tap, self._scrubber.clean
        try:
            if self._prefetched is not None:
                self.ttfb = time.perf_counter() - self._started
                chunk = clean(self._prefetched)
                tap.feed(chunk)
                if chunk:
                    yield chunk
            else:
                async for chunk in self._response.chunks():
                    if self.ttfb is None:
                        self.ttfb = time.perf_counter() - self._started
                    chunk = clean(chunk)
                    tap.feed(chunk)
                    yield chunk
        except KeyInBody:
            raise errors.Unavailable(f"{self.provider} sent the key back in its answer; the relay stopped") from None
        tap.close()

    async def aclose(self) -> None:
        """Close the upstream response (on cancellation too: the provider's stream stops at once)."""
        await self._response.aclose()


def require_org(org_id: str) -> None:
    """Every surface's tenant names its org (the HTTP front's `x-byok-org`, Forward's tenant)."""
    if not org_id:
        raise errors.InvalidArgument("x-byok-org", "is required: the org whose key to use")


class NativeRelay:
    def __init__(self, *, failover: KeyFailover, upstream: Upstream, metrics: ProxyMetrics,
                 allowlist: PathAllowlist | None = None, usage: UsageReporter | None = None) -> None:
        self.usage = usage
        self.failover = failover
        self.upstream = upstream
        self.metrics = metrics
        self.allowlist = allowlist or PathAllowlist()

    def check(self, req: NativeRequest) -> None:
        """Refuse what no lease could make right: a bad provider name, method or path, a path ops did not allow."""
        if not PROVIDER_NAME.fullmatch(req.provider):
            raise errors.NotFound(f"no provider {req.provider[:40]!r}: the path starts with a provider's name, "
                                  f"e.g. /openai, /anthropic, /gemini")
        require_org(req.org_id)
        if req.method not in METHODS:
            raise errors.InvalidArgument("method", f"{req.method[:16]} is not relayed (only "
                                                   f"{', '.join(sorted(METHODS))})")
        check_path(req.path)
        if not self.allowlist.allows(req.provider, req.path):
            raise errors.PermissionDenied(f"path {req.path[:200]} of {req.provider} is not in the proxy's path "
                                          f"allowlist (BYOK_HTTP_PATH_ALLOWLIST)")

    async def open(self, req: NativeRequest, started: float) -> NativeAnswer:
        """The provider's answer to `req`, open; ProxyError when there is none to relay (no key, refused, down)."""
        self.check(req)
        key = LeaseKey(caller=req.caller, org_id=req.org_id, project_id=req.project_id, user_id=req.user_id,
                       provider=req.provider, model="", credential_id=req.credential_id)
        return await self.failover.run(key, lambda entry: self._attempt(req, entry, started))

    async def _attempt(self, req: NativeRequest, entry: CachedLease, started: float) -> NativeAnswer:
        lease = entry.lease
        family = lease.api_family
        auth, sigv4 = presentation(lease, family=family, api_key=lease.api_key)
        upstream_request = UpstreamRequest(
            req.method, upstream_url(native_root(lease), req.path, req.query),
            native_headers.to_provider(req.headers, family, lease.api_key, auth),
            req.body, sigv4)
        response = await self.upstream.open_native(upstream_request, family)
        status = response.status_code
        self.metrics.upstream_status.labels(lease.provider, str(status)).inc()
        if status not in (401, 403):
            return NativeAnswer(response, lease, started)
        body = await response.read_bounded()
        reason = key_rejection(lease.provider, family, status, body)
        if reason:
            raise UpstreamFailure(status, errors.KeyRejected(f"{family} rejected the key ({reason})"), reason)
        return NativeAnswer(response, lease, started, prefetched=body)

    def record(self, req: NativeRequest, surface: str, outcome: str, started: float,
               answer: NativeAnswer | None, *, span: RequestSpan | None = None) -> None:
        """The request's log line, metrics and span (when traced); `outcome` is what the caller got (an HTTP status,
        or a gRPC code for a Forward refused before any answer)."""
        if span is not None:
            tracing.record_native(span, req, answer, outcome)
        elapsed = time.perf_counter() - started
        provider = answer.provider if answer else (req.provider if PROVIDER_NAME.fullmatch(req.provider)
                                                   else "unknown")
        self.metrics.native_requests.labels(surface, provider, outcome).inc()
        self.metrics.duration.labels(provider).observe(elapsed)
        ttfb = answer.ttfb if answer else None
        if ttfb is not None:
            self.metrics.ttfb.labels(provider).observe(ttfb)
        usage = answer.usage.fields() if answer else {}
        _log.info("native", surface=surface, request_id=req.request_id, caller=req.caller, org_id=req.org_id,
                  project_id=req.project_id or None, user_id=req.user_id or None, provider=provider,
                  method=req.method, path=req.path[:200], model=(answer.usage.model or None) if answer else None,
                  credential_id=(answer.credential_id or None) if answer else None,
                  key_source=answer.key_source if answer else None, status=outcome,
                  upstream_status=answer.status if answer else None,
                  ttfb_ms=round(ttfb * 1000, 3) if ttfb is not None else None,
                  duration_ms=round(elapsed * 1000, 3), **usage)
        if self.usage is not None and answer is not None:
            self.usage.add((time.time(), req.org_id, req.project_id, req.user_id, req.caller, answer.provider,
                            answer.usage.model, answer.credential_id, answer.key_source, outcome, elapsed, surface,
                            answer.usage))
