"""The key service's database: credential references, audit events, org policies, caller bindings, Vault path
reservations and the durable revocation log, on SQLite (embedded default) or PostgreSQL, with SQLAlchemy Core.

This package is the only place that imports SQLAlchemy. It holds references and metadata only: never a key,
never ciphertext. Every call is synchronous (the gRPC service runs it in a thread pool) and every foreign
exception leaves here translated.

One module per feature, each adding its operations to `Store`: `credentials`, `reservations`, `audit`,
`policies`, `bindings`, `revocations`, and for usage, spend and budgets `usage`, `prices`, `budgets`; `_base`
holds the engines, transactions and the write transaction's helpers, `rows` the dataclasses callers get, `schema`
the tables, `migrations` the alembic revisions.

Revocations are written in the same transaction as the change that causes them. Writers that append one
serialise on a lock (PostgreSQL advisory lock, SQLite's database write lock) so that sequence numbers
become visible in commit order: a reader that has seen sequence N never later finds a new row below N.
On PostgreSQL the transaction also NOTIFYs `byok_revocations`, which `RevocationFeed` LISTENs to; in this
process the store calls its revocation listeners after the commit.
"""

from __future__ import annotations

from keyservice.store._base import normalize_url
from keyservice.store.audit import AuditStore
from keyservice.store.bindings import BindingStore
from keyservice.store.budgets import BudgetStore
from keyservice.store.credentials import CredentialStore
from keyservice.store.policies import PolicyStore
from keyservice.store.prices import PriceStore
from keyservice.store.ratelimits import RateLimitStore
from keyservice.store.reservations import ReservationStore
from keyservice.store.revocations import RevocationStore
from keyservice.store.rows import (
    DEFAULT_PAGE_SIZE,
    HEALTH_VALUES,
    MAX_PAGE_SIZE,
    NOTIFY_CHANNEL,
    REVOCATION_REASONS,
    USAGE_COUNTS,
    USAGE_DIMENSIONS,
    AuditRow,
    BindingRow,
    BudgetRow,
    CredentialRow,
    NewRevocation,
    PriceRow,
    RateLimitRow,
    Reservation,
    RevocationArg,
    RevocationRow,
    RollupKey,
    UsageCounts,
    UsageFilter,
    UsageGroup,
    utcnow,
)
from keyservice.store.schema import metadata
from keyservice.store.usage import RepricedDay, UsageStore

__all__ = [
    "DEFAULT_PAGE_SIZE", "HEALTH_VALUES", "MAX_PAGE_SIZE", "NOTIFY_CHANNEL", "REVOCATION_REASONS", "AuditRow",
    "BindingRow", "CredentialRow", "NewRevocation", "Reservation", "RevocationArg", "RevocationRow", "Store",
    "metadata", "normalize_url", "utcnow",
    "USAGE_COUNTS", "USAGE_DIMENSIONS", "BudgetRow", "PriceRow", "RollupKey", "UsageCounts", "UsageFilter",
    "UsageGroup", "RateLimitRow", "RepricedDay",
]


class Store(CredentialStore, ReservationStore, AuditStore, PolicyStore, BindingStore, RevocationStore, UsageStore,
            PriceStore, BudgetStore, RateLimitStore):
    """Synchronous access to the key service's tables. Thread-safe; one per process."""
