"""Per-org policies (platform-key fallback)."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.exc

from keyservice.store._base import StoreBase
from keyservice.store.rows import AuditRow, RevocationArg, utcnow
from keyservice.store.schema import org_policies


class PolicyStore(StoreBase):

    def get_org_policy(self, org_id: str) -> bool:
        """allow_platform_fallback for the org (False when never set)."""
        with self._tx() as conn:
            value = conn.execute(
                sa.select(org_policies.c.allow_platform_fallback).where(org_policies.c.org_id == org_id)
            ).scalar()
        return bool(value)

    def set_org_policy(
        self,
        org_id: str,
        allow_platform_fallback: bool,
        *,
        audit: AuditRow | None = None,
        revocation: RevocationArg = None,
    ) -> None:
        with self._write() as tx:
            values = {"org_id": org_id, "allow_platform_fallback": allow_platform_fallback,
                      "updated_at": utcnow()}
            stmt = self._upsert(org_policies).values(**values)
            tx.conn.execute(stmt.on_conflict_do_update(
                index_elements=["org_id"],
                set_={"allow_platform_fallback": allow_platform_fallback, "updated_at": values["updated_at"]},
            ))
            tx.audit(audit)
            tx.revoke(revocation, org_id=org_id)
