"""Rows the store returns and takes: plain frozen dataclasses, no SQLAlchemy (callers never see it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HEALTH_VALUES = ("unverified", "active", "invalid", "rate_limited", "unreachable")
# Lower-case names of the proto's RevocationReason values (without the REVOCATION_REASON_ prefix).
REVOCATION_REASONS = frozenset(
    {"deactivated", "rotated", "deleted", "caller_unbound", "invalid", "scope_changed", "budget_exhausted"}
)
NOTIFY_CHANNEL = "byok_revocations"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)



@dataclass(frozen=True, slots=True)
class CredentialRow:
    """A credential's reference and metadata (no secret)."""

    credential_id: str
    provider: str
    org_id: str
    project_id: str
    user_id: str
    name: str
    api_base: str
    default_model: str
    active: bool
    primary: bool
    health: str
    key_hint: str
    fingerprint: str
    vault_mount: str
    vault_path: str
    secret_version: int
    transit_key: str
    transit_key_version: int
    created_at: datetime
    updated_at: datetime
    last_verified_at: datetime | None = None
    last_rotated_at: datetime | None = None
    # Non-secret settings of a cloud credential (keyservice/cloud_fields.py); empty for single-key providers.
    settings: Mapping[str, str] = field(default_factory=dict)
    # The end of the last request proxies reported it served (ReportUsage); None if never used.
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One audit event. `details_json` is a JSON object as text; it must never hold key material."""

    event_id: str
    time: datetime
    actor: str
    action: str
    credential_id: str = ""
    org_id: str = ""
    outcome: str = "success"
    details_json: str = "{}"
    project_id: str = ""
    user_id: str = ""

    @classmethod
    def new(
        cls,
        actor: str,
        action: str,
        *,
        credential_id: str = "",
        org_id: str = "",
        project_id: str = "",
        user_id: str = "",
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> AuditRow:
        """An event with a fresh id, stamped now."""
        return cls(
            event_id=uuid.uuid4().hex,
            time=utcnow(),
            actor=actor,
            action=action,
            credential_id=credential_id,
            org_id=org_id,
            project_id=project_id,
            user_id=user_id,
            outcome=outcome,
            details_json=json.dumps(dict(details or {}), sort_keys=True, separators=(",", ":")),
        )


@dataclass(frozen=True, slots=True)
class RevocationRow:
    """One entry of the durable revocation log."""

    sequence: int
    reason: str
    credential_id: str
    org_id: str
    caller_identity: str
    time: datetime


@dataclass(frozen=True, slots=True)
class NewRevocation:
    """A revocation to append along with a change. Empty ids are filled from the changed record."""

    reason: str
    credential_id: str = ""
    org_id: str = ""
    caller_identity: str = ""


RevocationArg = str | NewRevocation | None


@dataclass(frozen=True, slots=True)
class BindingRow:
    """A caller identity allowed to act for an org (project_id '' = the whole org) or one project."""

    caller_identity: str
    org_id: str
    project_id: str
    created_at: datetime

@dataclass(frozen=True)
class Reservation:
    vault_mount: str
    vault_path: str
    credential_id: str
    reserved_at: datetime


# Usage, spend and budgets (keyservice/store/usage.py, prices.py, budgets.py; keyservice/usage/).
USAGE_COUNTS = ("requests", "failed_requests", "unpriced_requests", "input_tokens", "output_tokens",
                "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "spend_micros", "duration_ms")
USAGE_DIMENSIONS = ("org_id", "project_id", "user_id", "credential_id", "provider", "model", "key_source")


@dataclass(frozen=True, slots=True)
class RollupKey:
    """One rollup row's key: an hour or day bucket (its start, UTC) and the request's dimensions."""

    granularity: str  # "hour" | "day"
    bucket_start: datetime
    org_id: str
    project_id: str
    user_id: str
    credential_id: str
    provider: str
    model: str
    key_source: str


@dataclass(frozen=True, slots=True)
class UsageCounts:
    """Sums over requests: added to a rollup row at ingest, and what a query returns per group."""

    requests: int = 0
    failed_requests: int = 0
    unpriced_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    spend_micros: int = 0
    duration_ms: int = 0


@dataclass(frozen=True, slots=True)
class UsageGroup:
    """One group of a usage query: its bucket (None for the whole range), the dimensions it is broken down by
    (the others are ''), and its sums."""

    bucket_start: datetime | None
    dimensions: Mapping[str, str]
    counts: UsageCounts


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """What a usage query or a budget counts: '' matches any value."""

    org_id: str = ""
    project_id: str = ""
    user_id: str = ""
    credential_id: str = ""
    provider: str = ""
    model: str = ""
    key_source: str = ""


@dataclass(frozen=True, slots=True)
class PriceRow:
    """Prices per million tokens, in micro-dollars, for a provider and model from `effective_from` on. None: the
    field falls back (cached input and cache writes to input, reasoning to output)."""

    provider: str
    model: str
    effective_from: datetime
    input_micros: int
    output_micros: int
    cached_input_micros: int | None = None
    cache_write_micros: int | None = None
    reasoning_micros: int | None = None
    source: str = "override"  # "builtin" | "file" | "override" (the database)


@dataclass(frozen=True, slots=True)
class BudgetRow:
    """A cap on a scope's spend per period ('' project/user: any; '' key_source: every source)."""

    budget_id: str
    org_id: str
    project_id: str
    user_id: str
    key_source: str
    period: str  # "day" | "month"
    limit_micros: int
    soft_limit_micros: int
    soft_notified_period: str
    hard_notified_period: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RateLimitRow:
    """Per-minute caps on a scope's requests and tokens ('' project/user: any; 0: no such cap)."""

    rate_limit_id: str
    org_id: str
    project_id: str
    user_id: str
    requests_per_minute: int
    tokens_per_minute: int
    created_at: datetime
    updated_at: datetime
