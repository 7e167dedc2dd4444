"""Keeps the lease cache honest: follows keyservice's WatchRevocations stream and drops revoked entries.

On every (re)connection keyservice first sends READY, and the cache is cleared then, because events may have
been missed while disconnected. While keyservice is unreachable, live leases keep serving until they expire
(they are bounded by their TTL); reconnection uses capped exponential backoff with jitter.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import structlog

from proxyservice.errors import ProxyError
from proxyservice.keyclient import KeyServiceClient
from proxyservice.leasecache import LeaseCache

_log = structlog.get_logger("byok.proxy.revocations")


async def follow_revocations(keys: KeyServiceClient, cache: LeaseCache, *,
                             on_event: Callable[[], None] | None = None,
                             connected: asyncio.Event | None = None) -> None:
    """Run until cancelled."""
    backoff = 0.1
    while True:
        try:
            async for event in keys.watch_revocations():
                dropped = cache.revoke(event)
                if event.ready:
                    backoff = 0.1
                    if connected is not None:
                        connected.set()
                    _log.info("revocations.connected", dropped=dropped)
                else:
                    if on_event:
                        on_event()
                    _log.info("revocations.applied", reason=event.reason, credential_id=event.credential_id,
                              org_id=event.org_id, dropped=dropped)
        except ProxyError as exc:
            _log.warning("revocations.disconnected", error=exc.message)
        if connected is not None:
            connected.clear()
        await asyncio.sleep(backoff * (0.5 + random.random()))
        backoff = min(backoff * 2, 5.0)
