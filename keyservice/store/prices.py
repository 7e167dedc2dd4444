"""Ops' price overrides (byokctl prices set): one row per provider, model and effective time."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from keyservice.store._base import StoreBase
from keyservice.store.rows import AuditRow, PriceRow, utcnow
from keyservice.store.schema import prices

_KEY = ("provider", "model", "effective_from")


class PriceStore(StoreBase):

    def set_price(self, row: PriceRow, *, audit: AuditRow | None = None) -> PriceRow:
        """Store (or replace, for the same provider, model and effective time) an override, with its audit event."""
        values = {k: v for k, v in asdict(row).items() if k != "source"}
        with self._write() as tx:
            stmt = self._upsert(prices).values(**values, updated_at=utcnow())
            tx.conn.execute(stmt.on_conflict_do_update(
                index_elements=list(_KEY), set_={k: stmt.excluded[k] for k in (*values, "updated_at")
                                                 if k not in _KEY}))
            tx.audit(audit)
        return row

    def list_prices(self, *, provider: str = "", model: str = "") -> list[PriceRow]:
        """The overrides, by provider, model and effective time."""
        p = prices.c
        q = prices.select().order_by(p.provider, p.model, p.effective_from)
        if provider:
            q = q.where(p.provider == provider)
        if model:
            q = q.where(p.model == model)
        with self._tx() as conn:
            return [_price(m) for m in conn.execute(q).mappings()]


def _price(m: Any) -> PriceRow:
    return PriceRow(provider=m["provider"], model=m["model"], effective_from=m["effective_from"],
                    input_micros=int(m["input_micros"]), output_micros=int(m["output_micros"]),
                    cached_input_micros=_maybe(m["cached_input_micros"]),
                    cache_write_micros=_maybe(m["cache_write_micros"]), reasoning_micros=_maybe(m["reasoning_micros"]))


def _maybe(value: Any) -> int | None:
    return None if value is None else int(value)

