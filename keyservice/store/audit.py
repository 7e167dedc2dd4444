"""The audit log: append (alone or in batches), list with filters and paging, lease lookups."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.exc

from keyservice.errors import InvalidArgument
from keyservice.store._base import StoreBase, _audit, _decode_token, _encode_token, _page_size
from keyservice.store.rows import DEFAULT_PAGE_SIZE, AuditRow
from keyservice.store.schema import audit_events


class AuditStore(StoreBase):

    def append_audit(self, row: AuditRow) -> None:
        with self._write() as tx:
            tx.audit(row)

    def append_audits(self, rows: list[AuditRow]) -> None:
        """Several events in one transaction (the lease path's batched audit)."""
        if not rows:
            return
        with self._write() as tx:
            for row in rows:
                tx.audit(row)

    def lease_was_issued(self, lease_id: str, *, credential_id: str, caller: str, since: datetime) -> bool:
        """Whether the audit log shows `lease_id` issued for `credential_id` to `caller` since `since` (the
        credential and time indexes keep this to a handful of rows)."""
        a = audit_events.c
        q = (sa.select(a.id).where(a.credential_id == credential_id, a.action == "lease.issue", a.actor == caller,
                                   a.time >= since, a.details_json.contains(f'"{lease_id}"', autoescape=True))
             .limit(1))
        with self._tx() as conn:
            return conn.execute(q).first() is not None

    def list_audit(
        self,
        *,
        org_id: str = "",
        project_id: str = "",
        user_id: str = "",
        credential_id: str = "",
        action: str = "",
        actor: str = "",
        since: datetime | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[AuditRow], str]:
        """Audit events matching the filters (empty = any; `since` inclusive), newest first, paged."""
        size = _page_size(page_size)
        a = audit_events.c
        q = audit_events.select()
        for column, value in ((a.org_id, org_id), (a.project_id, project_id), (a.user_id, user_id),
                              (a.credential_id, credential_id), (a.action, action), (a.actor, actor)):
            if value:
                q = q.where(column == value)
        if since is not None:
            q = q.where(a.time >= since)
        if page_token:
            pos = _decode_token(page_token, "a")
            if not isinstance(pos["i"], int):
                raise InvalidArgument("page_token", "malformed or foreign page token")
            q = q.where(sa.or_(a.time < pos["t"], sa.and_(a.time == pos["t"], a.id < pos["i"])))
        q = q.order_by(a.time.desc(), a.id.desc()).limit(size + 1)
        with self._tx() as conn:
            found = list(conn.execute(q).mappings())
        rows = [_audit(m) for m in found[:size]]
        if len(found) <= size:
            return rows, ""
        last = found[size - 1]
        return rows, _encode_token({"k": "a", "t": last["time"].isoformat(), "i": int(last["id"])})
