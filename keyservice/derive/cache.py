"""The derived credentials keyservice holds: per credential and secret version, until shortly before they expire,
with one derivation at a time per key (the others wait for its result) and hits and misses counted.

"Shortly before" is `refresh_before`: the lease lifetime plus five minutes (keyservice/derive/__init__.py), so a
cached credential always outlives a lease issued from it by at least five minutes, and a credential near its end is
replaced before a lease would have to be cut short. A rotation moves the row to a new secret version, so its
leases miss at once; the revocation feed also drops a credential's entries (rotated, deactivated, deleted,
invalid) on every replica so that no derived secret outlives its need in memory.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

CacheKey = tuple[str, int]  # (credential id, secret version)


@dataclass(frozen=True)
class AwsSession:
    """Temporary AWS credentials (STS); never the stored long-lived keys."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expires_at: dt.datetime


@dataclass(frozen=True)
class Derived:
    """A short-lived credential derived from a stored secret: a bearer token, or AWS session credentials."""

    kind: str  # the derivation it came from (keyservice/cloud_fields.py: aws_sts, entra_id, google_oauth2)
    expires_at: dt.datetime
    token: str = field(default="", repr=False)
    aws: AwsSession | None = None
    project: str = ""  # Google: the service account's project (a lease's default project setting)


class DerivedCache:
    """Thread-safe: leases are issued from keyservice's thread pool."""

    def __init__(self, *, refresh_before: dt.timedelta, max_entries: int = 10_000,
                 count: Callable[[str, str], None] | None = None,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.refresh_before = refresh_before
        self._max = max_entries
        self._count = count or (lambda cloud, outcome: None)
        self._now = now
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, Derived] = {}
        self._flights: dict[CacheKey, threading.Lock] = {}
        # Per credential, bumped by drop(): a derivation that raced a drop is not cached.
        self._generation: dict[str, int] = {}
        self.stats: dict[tuple[str, str], int] = {}

    def get(self, key: CacheKey, cloud: str, derive: Callable[[], Derived]) -> Derived:
        """The cached credential if it is fresh, else `derive()`'s (one call per key at a time; the others wait and
        take its result). Exceptions from `derive` reach every caller that ran it, and nothing is cached."""
        hit = self.peek(key)
        if hit is not None:
            return hit
        with self._flight(key):
            hit = self.peek(key)
            if hit is not None:  # derived by the flight we waited for
                return hit
            with self._lock:
                generation = self._generation.get(key[0], 0)
            try:
                value = derive()
            except Exception:
                self._counted(cloud, "error")
                raise
            self._counted(cloud, "miss")
            with self._lock:
                if self._generation.get(key[0], 0) == generation:
                    self._store(key, value)
            return value

    def peek(self, key: CacheKey) -> Derived | None:
        """The cached credential if it is fresh (counted as a hit), else None; derives nothing."""
        hit = self._fresh(key)
        if hit is not None:
            self._counted(hit.kind, "hit")
        return hit

    def drop(self, credential_id: str) -> int:
        """Forget every version of a credential (and any derivation of it in flight); returns how many went."""
        with self._lock:
            self._generation[credential_id] = self._generation.get(credential_id, 0) + 1
            doomed = [k for k in self._entries if k[0] == credential_id]
            for k in doomed:
                del self._entries[k]
            return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)

    def _fresh(self, key: CacheKey) -> Derived | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at - self.refresh_before > self._now():
                return entry
            del self._entries[key]  # near its end: derive anew rather than lease a credential about to expire
            return None

    def _flight(self, key: CacheKey) -> threading.Lock:
        with self._lock:
            lock = self._flights.get(key)
            if lock is None:
                lock = self._flights[key] = threading.Lock()
            return lock

    def _store(self, key: CacheKey, entry: Derived) -> None:
        """Called with the lock held. Past the bound, expired entries go first, then the oldest."""
        self._entries[key] = entry
        if len(self._entries) > self._max:
            now = self._now()
            for k in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[k]
            while len(self._entries) > self._max:
                del self._entries[next(iter(self._entries))]
        if len(self._flights) > 2 * self._max:
            self._flights = {k: v for k, v in self._flights.items() if k in self._entries or v.locked()}

    def _counted(self, cloud: str, outcome: str) -> None:
        with self._lock:
            self.stats[(cloud, outcome)] = self.stats.get((cloud, outcome), 0) + 1
        self._count(cloud, outcome)

