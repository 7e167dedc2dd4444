"""Every request's usage, sent to keyservice in batches, off the request path (ReportUsage; docs/usage.md).

The request path only appends a tuple (`add`: a length check and a list append; the request's end time, tenant,
caller, provider, model, credential, key source, outcome, duration, surface, and the usage the surface already
holds — a chat `Usage` as its serialized bytes (the message itself would keep its whole reply alive in the
buffer), or the native relay's `NativeUsage`). Everything else happens in one
background task: every `interval` seconds, or as soon as `batch_records` are waiting, it cuts the buffer into
batches, each with a fresh UUID and its records converted to `UsageRecord`s, and sends them in order. A batch
keyservice did not acknowledge (down, overloaded, deploying) is kept and sent again with the same id after a
capped, jittered backoff: keyservice counts a batch id once, so a retry whose first attempt did land changes
nothing. A batch keyservice refuses as malformed (INVALID_ARGUMENT) or not ours to send (PERMISSION_DENIED) would
be refused again: it is dropped and counted.

Bounded: at most `max_records` records are held (buffered and in unsent batches). Past that, new records are
dropped, not old ones (what is held is what keyservice missed first; ~210 bytes a record), each counted in
`byok_proxy_usage_records_dropped_total{reason="buffer_full"}`. On stop, `close(deadline)` sends what is held
until the deadline; what is still unsent then is counted with reason "stopped". A proxy killed outright loses what
it held: at most one interval's records plus those of unacknowledged batches (docs/usage.md has the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from byok.keys.v1 import key_service_pb2 as kpb
from byok.proxy.v1 import chat_service_pb2 as chat_pb
from proxyservice import errors

_log = structlog.get_logger("byok.proxy.usage")

# A record, as the request path builds it (a plain tuple: the cheapest thing to build and append):
# (end time (time.time()), org_id, project_id, user_id, caller, provider, model, credential_id, key_source,
#  status, duration in seconds, surface, usage: a chat Usage message, its bytes, a NativeUsage, or None)
Record = tuple[float, str, str, str, str, str, str, str, str, str, float, str, Any]
Send = Callable[[kpb.ReportUsageRequest], Awaitable[Any]]
Answered = Callable[[kpb.ReportUsageRequest, Any], None]
_KEY_SOURCE = {"tenant": kpb.KEY_SOURCE_TENANT, "platform": kpb.KEY_SOURCE_PLATFORM}
# Usage fields: the chat proto's name (proxyservice Usage), the native tap's, and the UsageRecord's.
_COUNTS = (("input_tokens", "input_tokens"), ("output_tokens", "output_tokens"),
           ("cached_input_tokens", "cached_input_tokens"), ("cache_creation_input_tokens", "cache_write_tokens"),
           ("reasoning_tokens", "reasoning_tokens"))
_PERMANENT = (errors.InvalidArgument, errors.PermissionDenied)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 30.0


class UsageReporter:
    def __init__(self, send: Send, *, interval: float = 1.0, batch_records: int = 500, max_records: int = 100_000,
                 registry: CollectorRegistry | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, answered: Answered | None = None) -> None:
        """`answered(batch, answer)` is told each acknowledged batch's answer (the rate limiter's counts)."""
        self._send = send
        self._answered = answered
        self._interval = interval
        self._batch_records = batch_records
        self._max_records = max_records
        self._sleep = sleep
        self._buffer: list[Record] = []
        self._unsent: deque[kpb.ReportUsageRequest] = deque()
        self._held = 0  # records in the buffer and in unsent batches
        self._wake = asyncio.Event()
        self._sending = asyncio.Lock()  # one flush at a time: the background task's, a stop's or a test's
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.sent_batches = 0
        registry = registry or CollectorRegistry()
        self._dropped = Counter("byok_proxy_usage_records_dropped_total", "Usage records never sent to keyservice, "
                                "by reason: buffer_full (the bound was reached while keyservice was away), stopped "
                                "(still unsent at the stop deadline), refused (keyservice refused the batch).",
                                ["reason"], registry=registry)
        self._batches = Counter("byok_proxy_usage_batches_total", "Usage batches sent to keyservice, by outcome: "
                                "sent (acknowledged), retry (to be sent again).", ["outcome"], registry=registry)
        Gauge("byok_proxy_usage_records_held", "Usage records held for keyservice (buffered and unsent batches).",
              registry=registry).set_function(lambda: self._held)

    @property
    def held(self) -> int:
        return self._held

    def add(self, record: Record) -> None:
        """The request path's whole cost: a bound check and an append (a wake-up once a batch is full)."""
        if self._held >= self._max_records:
            self.dropped += 1
            self._dropped.labels("buffer_full").inc()
            return
        self._buffer.append(record)
        self._held += 1
        if len(self._buffer) == self._batch_records:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="byok-usage-reporter")

    async def close(self, deadline: float) -> None:
        """Stop the background task, then send what is held for at most `deadline` seconds."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            async with asyncio.timeout(deadline):
                while self._buffer or self._unsent:
                    if not await self.flush():
                        await self._sleep(_BACKOFF_FIRST)
        except TimeoutError:
            pass
        if self._held:
            _log.warning("usage.unsent_at_stop", records=self._held)
            self.dropped += self._held
            self._dropped.labels("stopped").inc(self._held)
            self._held = 0
            self._buffer.clear()
            self._unsent.clear()

    async def flush(self) -> bool:
        """Cut the buffer into batches and send every unsent batch, in order; False when one was not acknowledged
        (it is kept, with the ones after it)."""
        async with self._sending:
            return await self._send_unsent()

    async def _send_unsent(self) -> bool:
        self._cut()
        while self._unsent:
            batch = self._unsent[0]
            try:
                answer = await self._send(batch)
            except _PERMANENT as exc:
                _log.error("usage.batch_refused", batch_id=batch.batch_id, records=len(batch.records),
                           error=exc.message)
                self._dropped.labels("refused").inc(len(batch.records))
                self.dropped += len(batch.records)
            except errors.ProxyError as exc:
                self._batches.labels("retry").inc()
                _log.warning("usage.batch_not_sent", batch_id=batch.batch_id, records=len(batch.records),
                             error=exc.message)
                return False
            else:
                self._batches.labels("sent").inc()
                self.sent_batches += 1
                if self._answered is not None and answer is not None:
                    self._answered(batch, answer)
            self._unsent.popleft()
            self._held -= len(batch.records)
        return True

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            self._wake.clear()
            if await self.flush():
                backoff = _BACKOFF_FIRST
                continue
            await self._sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _cut(self) -> None:
        records, self._buffer = self._buffer, []
        for start in range(0, len(records), self._batch_records):
            self._unsent.append(kpb.ReportUsageRequest(
                batch_id=str(uuid.uuid4()),
                records=[usage_record(r) for r in records[start:start + self._batch_records]]))


def usage_record(record: Record) -> kpb.UsageRecord:
    """A buffered record as keyservice takes it (counts the provider did not report stay unset)."""
    ended, org_id, project_id, user_id, caller, provider, model, credential_id, key_source, status, seconds, \
        surface, usage = record
    message = kpb.UsageRecord(
        scope=kpb.Scope(org_id=org_id, project_id=project_id, user_id=user_id), caller_identity=caller,
        provider=provider, model=model[:256], credential_id=credential_id,
        key_source=_KEY_SOURCE.get(key_source, kpb.KEY_SOURCE_UNSPECIFIED), status=status,
        duration_ms=round(seconds * 1000), surface=surface)
    message.time.FromNanoseconds(int(ended * 1e9))
    if isinstance(usage, bytes):
        usage = chat_pb.Usage.FromString(usage)
    if usage is not None:
        has = getattr(usage, "HasField", None)
        for ours, theirs in _COUNTS:
            value = getattr(usage, ours, None)
            # A proto Usage always has input and output (proto3 scalars); its optional counts say if reported.
            if value is not None and (has is None or ours in ("input_tokens", "output_tokens") or has(ours)):
                setattr(message, theirs, value)
    return message
