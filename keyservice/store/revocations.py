"""The durable revocation log: append, read after a sequence, and LISTEN for other replicas' commits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc

from keyservice.store._base import StoreBase, _revocation
from keyservice.store.rows import NOTIFY_CHANNEL, NewRevocation, RevocationRow
from keyservice.store.schema import revocations


class RevocationStore(StoreBase):

    def append_revocation(
        self, reason: str, *, credential_id: str = "", org_id: str = "", caller_identity: str = ""
    ) -> int:
        """Append one revocation on its own; returns its sequence."""
        with self._write() as tx:
            return tx.revoke(NewRevocation(reason, credential_id, org_id, caller_identity))

    def revocations_since(self, sequence: int, limit: int = 1000) -> list[RevocationRow]:
        """Revocations after `sequence`, in sequence order, at most `limit`."""
        r = revocations.c
        q = revocations.select().where(r.sequence > sequence).order_by(r.sequence).limit(max(1, limit))
        with self._tx() as conn:
            return [_revocation(m) for m in conn.execute(q).mappings()]

    def last_revocation_sequence(self) -> int:
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.max(revocations.c.sequence))).scalar() or 0)

    def listen_revocations(
        self, on_notify: Callable[[], None], stop: threading.Event, *, max_backoff: float = 5.0
    ) -> None:
        """Block until `stop` is set, calling `on_notify()` whenever another process (or this one)
        commits revocations. PostgreSQL only: LISTENs on a dedicated connection and reconnects with
        backoff when it drops; on_notify() also runs after each (re)connect, since notifications sent
        while disconnected are lost. Run it in a thread."""
        if self.dialect != "postgresql":
            raise RuntimeError("listen_revocations needs PostgreSQL")
        backoff = 0.1
        while not stop.is_set():
            try:
                conn = self._listen_connection()
            except Exception:  # noqa: BLE001 - database down: wait and retry
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            try:
                backoff = 0.1
                on_notify()
                while not stop.is_set():
                    # Wakes at least twice a second to notice `stop`.
                    for _ in conn.notifies(timeout=0.5):
                        on_notify()
            except Exception:  # noqa: BLE001 - connection lost: reconnect
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
            finally:
                try:
                    conn.close()
                except Exception:  # noqa: BLE001, S110 - already broken
                    pass

    def _listen_connection(self) -> Any:
        """A psycopg connection of its own (detached from the pool), autocommit, LISTENing."""
        raw = self._engine.raw_connection()
        conn = raw.driver_connection  # read before detach(), which forgets it
        raw.detach()
        if conn is None:  # pragma: no cover - the pool always hands out a live connection
            raise RuntimeError("no driver connection")
        conn.rollback()
        conn.autocommit = True
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn
