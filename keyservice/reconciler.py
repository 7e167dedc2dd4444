"""Removes Vault entries that no DB row references (left by a crash between a create's Vault write and its DB
insert, or a delete whose Vault step failed). Runs at start and periodically.

Why it can never delete a secret that a committed row references, on any number of replicas:
- A create reserves its path in the DB (`secret_reservations`, committed) before it writes Vault, and swaps
  the reservation for its row in one transaction. So while a create is in flight its path is reserved, and
  once it has committed its path is referenced: never neither.
- The reconciler reads the DB *after* it saw the path in Vault and after it read the path's tag, in one
  statement (`Store.claimed_vault_paths`), and skips reserved or referenced paths. A create's reservation was
  committed before its Vault write, so a path the reconciler listed is already visible as reserved.
  RegisterCredential tags ops' secret only after its row committed, so a tag the reconciler saw means the row
  is visible too. New rows never appear on an unreserved, tagged path: creates use fresh ids, and register
  refuses tagged paths.
- Reservations older than the create deadline are reclaimed: deleted in the DB first (`reclaim_reservations`),
  then their secret in Vault. The create's final transaction consumes the same reservation, so one of the two
  wins: a create that outlived its deadline aborts (and cleans up) instead of committing a row whose secret is
  being removed. Clocks that disagree between replicas can only make a create abort early, never lose a
  secret.
- An unreserved, unreferenced entry is removed only if keyservice manages it (custom_metadata
  managed_by=byok-keyservice; ops' own imports under the prefix are not ours until registered) and it is older
  than the grace period (a create on a replica that predates reservations may be in flight during an upgrade).
  That includes metadata-only entries: a create tags the path before it writes the data.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from keyservice.errors import KeyServiceError
from keyservice.store import Store
from keyservice.validation import canonical_vault_path
from keyservice.vault import MANAGED_BY, VaultClient

_log = structlog.get_logger("byok.reconciler")


def reconcile_once(store: Store, vault: VaultClient, *, grace_seconds: float,
                   create_deadline_seconds: float) -> list[str]:
    """One pass; returns the paths removed."""
    now = dt.datetime.now(dt.UTC)
    mount = vault.settings.kv_mount
    removed = _reclaim_stalled_creates(store, vault, now - dt.timedelta(seconds=create_deadline_seconds))
    listed = vault.list_credential_paths()
    # Read after the listing, and a prefilter only (it saves a metadata read per referenced path); the
    # decision is the re-check below.
    claimed = _claimed(store, mount)
    cutoff = now - dt.timedelta(seconds=grace_seconds)
    for path in listed:
        if path in claimed or path in removed:
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
        # The decision: read after the tag, in one statement (see the module docstring).
        if path in _claimed(store, mount):
            continue
        vault.delete_secret(path)
        removed.append(path)
        _log.info("reconciler.removed_orphan", path=path, credential_id=custom.get("credential_id", ""))
    return removed


def _reclaim_stalled_creates(store: Store, vault: VaultClient, older_than: dt.datetime) -> list[str]:
    """Reclaim reservations of creates that outlived the deadline, then delete what they wrote."""
    removed = []
    for reservation in store.reclaim_reservations(older_than):
        # From the reclaim's commit on, the create can no longer commit: its secret is ours to remove.
        vault.delete_secret(reservation.vault_path)
        removed.append(reservation.vault_path)
        _log.info("reconciler.reclaimed_stalled_create", path=reservation.vault_path,
                  credential_id=reservation.credential_id)
    return removed


def _claimed(store: Store, mount: str) -> set[str]:
    """Paths reserved or referenced, as Vault spells them (rows written before paths had to be canonical may
    say `a/./b`)."""
    return {canonical_vault_path(p) for p in store.claimed_vault_paths(mount)}


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
                           interval: float, grace_seconds: float, create_deadline_seconds: float) -> None:
    """Reconcile now, then every `interval` seconds, until cancelled. Failures are logged and retried later."""
    while True:
        try:
            removed = await run_blocking(reconcile_once, store, vault, grace_seconds=grace_seconds,
                                         create_deadline_seconds=create_deadline_seconds)
            _log.info("reconciler.pass", removed=len(removed))
        except KeyServiceError as exc:
            _log.warning("reconciler.pass_failed", error=exc.message)
        except Exception as exc:  # noqa: BLE001 - a bug in one pass must not end reconciling for good
            _log.error("reconciler.pass_crashed", exc_type=type(exc).__name__)
        await asyncio.sleep(interval)
