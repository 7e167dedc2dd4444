"""Building audit events: who (the mTLS identity), what, when, on which credential and org. Details are
non-secret metadata only (names, versions, hints); callers of `event` must never pass key material."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from keyservice.store import AuditRow


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def event(actor: str, action: str, *, credential_id: str = "", org_id: str = "", outcome: str = "ok",
          **details: Any) -> AuditRow:
    return AuditRow(
        event_id="evt_" + uuid.uuid4().hex,
        time=now(),
        actor=actor,
        action=action,
        credential_id=credential_id,
        org_id=org_id,
        outcome=outcome,
        details_json=json.dumps(details, sort_keys=True, default=str) if details else "{}",
    )
