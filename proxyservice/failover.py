"""One request's key: the lease from the cache, and the one retry a provider's refusal of the key earns.

Every surface of the proxy (StreamChat and Chat, the HTTP front, Forward) sends through `KeyFailover.run`: it
looks the lease up, hands it to the surface's `attempt`, and when the attempt fails before any byte reached the
caller with the provider's structured bad-key evidence (`UpstreamFailure.key_reason`), reports the key to
keyservice (which confirms it itself) and runs the attempt once more with the next credential. A request for an
explicit credential, or served by the platform's key, is not failed over: there is no other key it may use.
A tenant's rate limits are admitted here, once the lease (which carries them) is known (proxyservice/ratelimit.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from proxyservice import errors
from proxyservice.keyclient import KeyServiceClient, LeaseKey
from proxyservice.leasecache import CachedLease, LeaseCache
from proxyservice.metrics import ProxyMetrics
from proxyservice.ratelimit import RateLimiter
from proxyservice.upstream import UpstreamFailure

T = TypeVar("T")


class KeyFailover:
    def __init__(self, *, cache: LeaseCache, keys: KeyServiceClient, metrics: ProxyMetrics,
                 limiter: RateLimiter | None = None) -> None:
        self.cache = cache
        self.keys = keys
        self.metrics = metrics
        self.limiter = limiter

    async def run(self, key: LeaseKey, attempt: Callable[[CachedLease], Awaitable[T]]) -> T:
        """`attempt(entry)` with the cached lease, and once more with another credential after a refusal of the
        key (see the module docstring); an UpstreamFailure ends as its `error`."""
        entry, hit = await self.cache.lookup(key)
        self.metrics.lease_lookups.labels("hit" if hit else "miss").inc()
        if self.limiter is not None:
            self.limiter.admit(key.org_id, key.project_id, key.user_id)
        try:
            return await attempt(entry)
        except UpstreamFailure as failure:
            if not failure.key_reason or not entry.lease.credential_id or key.credential_id:
                raise failure.error from None
            reason, status = failure.key_reason, failure.status
        failed = entry.lease
        try:
            await self.keys.report_failure(failed.lease_id, failed.credential_id, status, reason)
        except errors.ProxyError:
            pass  # keyservice will learn on the next report; the retry below excludes the key anyway
        try:
            entry = await self.cache.replace(key, (failed.credential_id,))
        except errors.NotFound:
            raise errors.KeyRejected(f"{failed.provider} rejected the key and no other credential is active") \
                from None
        try:
            return await attempt(entry)
        except UpstreamFailure as failure:
            raise failure.error from None
