"""Batched audit writes for the lease path: one transaction per batch instead of one per lease.

Management changes write their audit event in the same transaction as the change (the store does that);
lease events are the high-rate ones, so they are queued and written by one thread every `interval` seconds
or every `batch` events, whichever comes first. `close()` flushes what is queued. If the database is down
the batch is retried until it is back (events are kept, up to `max_pending`; beyond that the oldest are
dropped, because a lease must not wait on an audit backlog). Drops are never silent: each one increments
`byok_audit_events_dropped_total` (when a metrics registry is given) and a warning is logged, at most once
every `_DROP_LOG_INTERVAL` seconds with the count since the last one, so a backlog does not flood the log.

`flush()` is read-your-writes: when it returns, every event added before it was called is committed (or, with
the database down, still queued). Flushes take turns, so a flush that finds the queue empty because the
writer thread has just taken the last batch waits for that batch's commit instead of returning before it
(ListAuditEvents flushes first; without the turn it missed a batch in flight).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry, Counter

from keyservice.errors import KeyServiceError
from keyservice.store import AuditRow, Store

_log = structlog.get_logger("byok.audit")

_DROP_LOG_INTERVAL = 10.0  # seconds between two "audit events dropped" warnings


class AuditWriter:
    def __init__(self, store: Store, *, interval: float = 0.05, batch: int = 500,
                 max_pending: int = 100_000, registry: CollectorRegistry | None = None,
                 on_flush_wait: Callable[[], None] | None = None) -> None:
        self._store = store
        self._interval = interval
        self._batch = batch
        self._pending: deque[AuditRow] = deque()
        self._max_pending = max_pending
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._flush_turn = threading.Lock()  # held by one flush at a time, across its commit
        self._on_flush_wait = on_flush_wait  # called when a flush must wait for another one's commit
        self.dropped = 0
        self._dropped_unlogged = 0
        self._last_drop_log = float("-inf")
        self._dropped_counter = Counter(
            "byok_audit_events_dropped_total",
            "Lease audit events dropped because the database stayed down longer than the queue could hold.",
            registry=registry) if registry is not None else None
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def add(self, row: AuditRow) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self._pending.popleft()
                self._dropped()
            self._pending.append(row)
            if len(self._pending) >= self._batch:
                self._wake.set()

    def _dropped(self) -> None:
        """Count one dropped event (with the lock held) and warn, at most every _DROP_LOG_INTERVAL seconds."""
        self.dropped += 1
        self._dropped_unlogged += 1
        if self._dropped_counter is not None:
            self._dropped_counter.inc()
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            _log.warning("audit.events_dropped", dropped=self._dropped_unlogged, dropped_total=self.dropped,
                         max_pending=self._max_pending)
            self._last_drop_log = now
            self._dropped_unlogged = 0

    def flush(self) -> None:
        """Write everything queued now (from the calling thread), after any flush already committing."""
        if not self._flush_turn.acquire(blocking=False):
            if self._on_flush_wait is not None:
                self._on_flush_wait()
            self._flush_turn.acquire()
        try:
            self._flush_queued()
        finally:
            self._flush_turn.release()

    def _flush_queued(self) -> None:
        while True:
            with self._lock:
                rows = [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]
            if not rows:
                return
            try:
                self._store.append_audits(rows)
            except KeyServiceError as exc:
                with self._lock:
                    self._pending.extendleft(reversed(rows))
                _log.warning("audit.flush_failed", error=exc.message, pending=len(self._pending))
                return

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
