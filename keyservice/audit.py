"""Building audit events: who (the mTLS identity), what, when, on which credential and org. Details are
non-secret metadata only (names, versions, hints); callers of `event` must never pass key material."""

from __future__ import annotations

import datetime as dt
from typing import Any

from keyservice.store import AuditRow, CredentialRow


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def event(actor: str, action: str, *, credential_id: str = "", org_id: str = "", project_id: str = "",
          user_id: str = "", outcome: str = "ok", **details: Any) -> AuditRow:
    """An event on a tenant scope (org, project, user: all that the action touched)."""
    return AuditRow.new(actor, action, credential_id=credential_id, org_id=org_id, project_id=project_id,
                        user_id=user_id, outcome=outcome,
                        details={k: v if isinstance(v, str | int | float | bool | None | list) else str(v)
                                 for k, v in details.items()})


def credential_event(actor: str, action: str, row: CredentialRow, **details: Any) -> AuditRow:
    """An event on one credential, carrying the credential's full scope."""
    return event(actor, action, credential_id=row.credential_id, org_id=row.org_id, project_id=row.project_id,
                 user_id=row.user_id, **details)
