"""Budgets: one per scope, key source and period; and the once-per-period announcement of their thresholds."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from keyservice.errors import NotFound
from keyservice.store._base import StoreBase
from keyservice.store.rows import AuditRow, BudgetRow, RevocationArg, utcnow
from keyservice.store.schema import budgets

_SCOPE = ("org_id", "project_id", "user_id", "key_source", "period")
_ANNOUNCED = {"soft": "soft_notified_period", "hard": "hard_notified_period"}


class BudgetStore(StoreBase):

    def set_budget(self, org_id: str, project_id: str, user_id: str, key_source: str, period: str,
                   limit_micros: int, soft_limit_micros: int, *, audit: AuditRow | None = None) -> BudgetRow:
        """Create the budget of this scope, key source and period, or replace its limits (keeping its id). Its
        announcements start over: the budget keeper evaluates the new limits at once and announces what they
        make true."""
        now = utcnow()
        scope = dict(zip(_SCOPE, (org_id, project_id, user_id, key_source, period), strict=True))
        limits = {"limit_micros": limit_micros, "soft_limit_micros": soft_limit_micros,
                  "soft_notified_period": "", "hard_notified_period": "", "updated_at": now}
        with self._write() as tx:
            stmt = self._upsert(budgets).values(budget_id="bud_" + uuid.uuid4().hex[:24], created_at=now, **scope,
                                                **limits)
            tx.conn.execute(stmt.on_conflict_do_update(index_elements=list(_SCOPE), set_=limits))
            tx.audit(audit)
            m = tx.conn.execute(budgets.select().where(*(budgets.c[k] == v for k, v in scope.items()))).mappings()
            return _budget(m.one())

    def get_budget(self, budget_id: str) -> BudgetRow:
        with self._tx() as conn:
            m = conn.execute(budgets.select().where(budgets.c.budget_id == budget_id)).mappings().first()
        if m is None:
            raise NotFound(f"budget {budget_id} not found")
        return _budget(m)

    def list_budgets(self, *, org_ids: Collection[str] = ()) -> list[BudgetRow]:
        """Budgets of these orgs (all when empty), by org, scope, key source and period."""
        b = budgets.c
        q = budgets.select().order_by(b.org_id, b.project_id, b.user_id, b.key_source, b.period)
        if org_ids:
            q = q.where(b.org_id.in_(sorted(org_ids)))
        with self._tx() as conn:
            return [_budget(m) for m in conn.execute(q).mappings()]

    def delete_budget(self, budget_id: str, *, audit: AuditRow | None = None,
                      revocation: RevocationArg = None) -> BudgetRow:
        """Remove a budget (NotFound if absent), with its audit event and revocation."""
        with self._write() as tx:
            m = tx.conn.execute(budgets.select().where(budgets.c.budget_id == budget_id)).mappings().first()
            if m is None:
                raise NotFound(f"budget {budget_id} not found")
            tx.conn.execute(budgets.delete().where(budgets.c.budget_id == budget_id))
            tx.audit(audit)
            tx.revoke(revocation, org_id=m["org_id"])
            return _budget(m)

    def announce_budget(self, budget_id: str, threshold: str, period: str, *, audit: AuditRow,
                        revocation: RevocationArg = None) -> bool:
        """Mark `threshold` ("soft" or "hard") announced for `period` and write its audit event and revocation,
        unless it was already announced for that period (by this replica or another): True if this call did."""
        column = budgets.c[_ANNOUNCED[threshold]]
        with self._write() as tx:
            marked = tx.conn.execute(budgets.update().where(budgets.c.budget_id == budget_id, column != period)
                                     .values({column: period})).rowcount
            if marked != 1:
                return False
            tx.audit(audit)
            tx.revoke(revocation, org_id=audit.org_id)
            return True

    def forget_announcement(self, budget_id: str, threshold: str) -> None:
        """The threshold is no longer reached (a limit was raised): a later crossing is announced again."""
        column = budgets.c[_ANNOUNCED[threshold]]
        with self._tx(write=True) as conn:
            conn.execute(budgets.update().where(budgets.c.budget_id == budget_id, column != "").values({column: ""}))


def _budget(m: Any) -> BudgetRow:
    return BudgetRow(
        budget_id=m["budget_id"], org_id=m["org_id"], project_id=m["project_id"], user_id=m["user_id"],
        key_source=m["key_source"], period=m["period"], limit_micros=int(m["limit_micros"]),
        soft_limit_micros=int(m["soft_limit_micros"]), soft_notified_period=m["soft_notified_period"],
        hard_notified_period=m["hard_notified_period"], created_at=m["created_at"], updated_at=m["updated_at"])

