"""Building audit events: who (the mTLS identity), what, when, on which credential and org. Details are
non-secret metadata only (names, versions, hints); callers of `event` must never pass key material."""

from __future__ import annotations

import datetime as dt
from typing import Any

from keyservice.store import AuditRow


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def event(actor: str, action: str, *, credential_id: str = "", org_id: str = "", outcome: str = "ok",
          **details: Any) -> AuditRow:
    return AuditRow.new(actor, action, credential_id=credential_id, org_id=org_id, outcome=outcome,
                        details={k: v if isinstance(v, str | int | float | bool | None | list) else str(v)
                                 for k, v in details.items()})
