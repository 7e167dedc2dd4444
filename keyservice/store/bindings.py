"""Caller bindings: which caller identity may act for which org (and project)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc

from keyservice.errors import NotFound
from keyservice.store._base import StoreBase, _binding
from keyservice.store.rows import AuditRow, BindingRow, RevocationArg, utcnow
from keyservice.store.schema import caller_bindings


class BindingStore(StoreBase):
    def create_binding(
        self, caller_identity: str, org_id: str, project_id: str = "", *, audit: AuditRow | None = None,
        revocation: RevocationArg = None,
    ) -> BindingRow:
        """Bind a caller to an org ('' project) or a project. Idempotent: returns the existing binding.
        `revocation` (the servicer passes an org-wide scope_changed) makes proxies forget the refusals they
        cached for the org, so the new binding takes effect at once."""
        with self._write() as tx:
            tx.conn.execute(
                self._upsert(caller_bindings)
                .values(caller_identity=caller_identity, org_id=org_id, project_id=project_id,
                        created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["caller_identity", "org_id", "project_id"])
            )
            tx.audit(audit)
            tx.revoke(revocation, org_id=org_id)
            m = tx.conn.execute(caller_bindings.select().where(*self._binding_key(
                caller_identity, org_id, project_id))).mappings().one()
            return _binding(m)

    def delete_binding(
        self,
        caller_identity: str,
        org_id: str,
        project_id: str = "",
        *,
        audit: AuditRow | None = None,
        revocation: RevocationArg = None,
    ) -> None:
        """Remove a binding (NotFound if absent)."""
        with self._write() as tx:
            deleted = tx.conn.execute(
                caller_bindings.delete().where(*self._binding_key(caller_identity, org_id, project_id))
            ).rowcount
            if not deleted:
                raise NotFound("binding not found")
            tx.audit(audit)
            tx.revoke(revocation, org_id=org_id, caller_identity=caller_identity)

    def list_bindings(self, *, caller_identity: str = "", org_id: str = "") -> list[BindingRow]:
        b = caller_bindings.c
        q = caller_bindings.select().order_by(b.caller_identity, b.org_id, b.project_id)
        if caller_identity:
            q = q.where(b.caller_identity == caller_identity)
        if org_id:
            q = q.where(b.org_id == org_id)
        with self._tx() as conn:
            return [_binding(m) for m in conn.execute(q).mappings()]

    def is_bound(self, caller_identity: str, org_id: str, project_id: str) -> bool:
        """True if the caller is bound to the whole org or to this project of it."""
        b = caller_bindings.c
        projects = ["", project_id] if project_id else [""]
        q = sa.select(sa.literal(1)).where(
            b.caller_identity == caller_identity, b.org_id == org_id, b.project_id.in_(projects)
        ).limit(1)
        with self._tx() as conn:
            return conn.execute(q).first() is not None

    @staticmethod
    def _binding_key(caller_identity: str, org_id: str, project_id: str) -> tuple[Any, ...]:
        b = caller_bindings.c
        return (b.caller_identity == caller_identity, b.org_id == org_id, b.project_id == project_id)
