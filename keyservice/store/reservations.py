"""Reservations of Vault paths by creates in flight (see keyservice/reconciler.py for why)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlalchemy.exc

from keyservice.store._base import StoreBase, _path_conflict
from keyservice.store.rows import Reservation, utcnow
from keyservice.store.schema import credentials, secret_reservations


class ReservationStore(StoreBase):
    def reserve_secret(self, vault_mount: str, vault_path: str, credential_id: str) -> None:
        """Claim a Vault path for a create before it writes the secret (see `insert_credential`'s
        `reserved`). AlreadyExists if the path is reserved or referenced already."""
        c = credentials.c
        with self._write() as tx:
            owner = tx.conn.execute(sa.select(c.credential_id).where(
                c.vault_mount == vault_mount, c.vault_path == vault_path)).scalar()
            if owner is not None:
                raise _path_conflict(vault_mount, vault_path, owner)
            try:
                tx.conn.execute(secret_reservations.insert().values(
                    vault_mount=vault_mount, vault_path=vault_path, credential_id=credential_id,
                    reserved_at=utcnow()))
            except sqlalchemy.exc.IntegrityError:
                raise _path_conflict(vault_mount, vault_path, "") from None

    def release_reservation(self, vault_mount: str, vault_path: str, credential_id: str) -> None:
        """Drop a create's reservation (the create gave up); nothing if it is gone."""
        r = secret_reservations.c
        with self._write() as tx:
            tx.conn.execute(secret_reservations.delete().where(
                r.vault_mount == vault_mount, r.vault_path == vault_path, r.credential_id == credential_id))

    def reclaim_reservations(self, older_than: datetime) -> list[Reservation]:
        """Delete and return the reservations taken before `older_than`: their creates outlived the deadline,
        and from this commit on they can no longer commit (their `insert_credential(reserved=True)` finds the
        reservation gone and aborts). Of two reconcilers reclaiming at once, each reservation goes to one."""
        r = secret_reservations.c
        with self._write() as tx:
            gone = tx.conn.execute(
                secret_reservations.delete().where(r.reserved_at < older_than)
                .returning(r.vault_mount, r.vault_path, r.credential_id, r.reserved_at)).all()
        return [Reservation(m, p, cid, at if at.tzinfo else at.replace(tzinfo=UTC)) for m, p, cid, at in gone]

    def claimed_vault_paths(self, vault_mount: str) -> set[str]:
        """Every path in `vault_mount` that a credential references or a create has reserved, read in one
        statement (one snapshot): a create's reservation and its row are swapped in one transaction, so a path
        is never in neither while its create is in flight."""
        c, r = credentials.c, secret_reservations.c
        q = sa.union(sa.select(c.vault_path).where(c.vault_mount == vault_mount),
                     sa.select(r.vault_path).where(r.vault_mount == vault_mount))
        with self._tx() as conn:
            return set(conn.execute(q).scalars())
