"""Removes Vault entries that no DB row references (left by a crash between a create's Vault write and its DB
insert, or a delete whose Vault step failed). Runs at start and periodically.

That includes metadata-only entries: a create tags the path (custom_metadata) before it writes the data, so a
crash between the two leaves a path that lists, carries managed_by and has no version. It is removed like any
other orphan (deleting metadata removes the path whether or not it has versions).

Only entries that keyservice itself manages (custom_metadata managed_by=byok-keyservice) and that are older
than the grace period are removed: a create in flight has written Vault but not yet the DB, and ops' own
imports under the prefix are not ours until registered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from keyservice.errors import KeyServiceError
from keyservice.store import Store
from keyservice.vault import MANAGED_BY, VaultClient

_log = structlog.get_logger("byok.reconciler")


def reconcile_once(store: Store, vault: VaultClient, *, grace_seconds: float) -> list[str]:
    """One pass; returns the paths removed."""
    referenced = store.all_vault_paths()
    removed: list[str] = []
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=grace_seconds)
    for path in vault.list_credential_paths():
        if path in referenced:
            continue
        try:
            meta = vault.read_metadata(path)
        except KeyServiceError:
            continue
        custom = meta.get("custom_metadata") or {}
        if custom.get("managed_by") != MANAGED_BY:
            continue
        if _parse_time(meta.get("updated_time") or meta.get("created_time")) > cutoff:
            continue
        # Re-check: a create may have inserted its row since we listed.
        if path in store.all_vault_paths():
            continue
        vault.delete_secret(path)
        removed.append(path)
        _log.info("reconciler.removed_orphan", path=path, credential_id=custom.get("credential_id", ""))
    return removed


def _parse_time(value: Any) -> dt.datetime:
    if not value:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    text = str(value).replace("Z", "+00:00")
    if "." in text:  # Vault gives nanoseconds; fromisoformat takes at most microseconds
        head, _, tail = text.partition(".")
        # Only the leading digits are the fraction: the zone ("+00:00") has digits too.
        frac = tail[:len(tail) - len(tail.lstrip("0123456789"))]
        zone = tail[len(frac):]
        text = f"{head}.{frac[:6]}{zone}"
    return dt.datetime.fromisoformat(text)


async def run_periodically(run_blocking: Callable[..., Awaitable[Any]], store: Store, vault: VaultClient, *,
                           interval: float, grace_seconds: float) -> None:
    """Reconcile now, then every `interval` seconds, until cancelled. Failures are logged and retried later."""
    while True:
        try:
            removed = await run_blocking(reconcile_once, store, vault, grace_seconds=grace_seconds)
            _log.info("reconciler.pass", removed=len(removed))
        except KeyServiceError as exc:
            _log.warning("reconciler.pass_failed", error=exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug in one pass must not end reconciling for good
            _log.error("reconciler.pass_crashed", exc_type=type(exc).__name__)
        await asyncio.sleep(interval)
