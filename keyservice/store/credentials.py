"""Credential rows: insert (consuming a reservation), read, list, update with compare-and-set, delete,
lease candidates, and an org's emergency revoke."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc

from keyservice.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from keyservice.store._base import (
    _UPDATABLE,
    StoreBase,
    _credential,
    _credential_values,
    _decode_token,
    _encode_token,
    _name_conflict,
    _page_size,
    _path_conflict,
)
from keyservice.store.rows import (
    DEFAULT_PAGE_SIZE,
    HEALTH_VALUES,
    AuditRow,
    CredentialRow,
    NewRevocation,
    RevocationArg,
    utcnow,
)
from keyservice.store.schema import credentials, org_policies, secret_reservations
from keyservice.validation import canonical_vault_path


class CredentialStore(StoreBase):
    def insert_credential(
        self, row: CredentialRow, *, audit: AuditRow | None = None, revocation: RevocationArg = None,
        reserved: bool = False,
    ) -> CredentialRow:
        """Insert a credential; if it is primary, its siblings (same provider and scope) stop being.

        `reserved`: the row's path was reserved with `reserve_secret`; the reservation is consumed in this
        transaction, and if the reconciler reclaimed it meanwhile (the create outlived its deadline), nothing
        is inserted and Aborted is raised: the reconciler is deleting, or has deleted, the secret."""
        if canonical_vault_path(row.vault_path) != row.vault_path:
            # The uniqueness index compares spellings: only Vault's own spelling of a path may get in.
            raise InvalidArgument("vault_path", "must be canonical: no '.', '..' or empty segments")
        with self._write() as tx:
            if reserved:
                r = secret_reservations.c
                consumed = tx.conn.execute(secret_reservations.delete().where(
                    r.vault_mount == row.vault_mount, r.vault_path == row.vault_path,
                    r.credential_id == row.credential_id)).rowcount
                if not consumed:
                    raise Aborted("the create outlived its deadline (BYOK_CREATE_DEADLINE_SECONDS) and the "
                                  "reconciler reclaimed its secret; nothing was stored, retry")
            if row.health not in HEALTH_VALUES:
                raise InvalidArgument("health", f"must be one of {', '.join(HEALTH_VALUES)}")
            c = credentials.c
            clash = tx.conn.execute(sa.select(c.credential_id).where(
                sa.or_(c.credential_id == row.credential_id,
                       sa.and_(c.provider == row.provider, c.org_id == row.org_id,
                               c.project_id == row.project_id, c.user_id == row.user_id,
                               c.name == row.name)))).scalar()
            if clash == row.credential_id:
                raise AlreadyExists(f"credential {row.credential_id!r} already exists")
            if clash is not None:
                raise _name_conflict(row.name, row.provider)
            owner = tx.conn.execute(sa.select(c.credential_id).where(
                c.vault_mount == row.vault_mount, c.vault_path == row.vault_path)).scalar()
            if owner is not None:
                raise _path_conflict(row.vault_mount, row.vault_path, owner)
            if row.primary:
                tx.clear_primary(row)
            try:
                tx.conn.execute(credentials.insert().values(**_credential_values(row)))
            except sqlalchemy.exc.IntegrityError as exc:
                # A concurrent insert won the race (PostgreSQL); which constraint tells which conflict.
                # The driver's text is only inspected, never kept: it can quote the row's values.
                if "vault_path" in str(exc.orig):
                    raise _path_conflict(row.vault_mount, row.vault_path, "") from None
                raise _name_conflict(row.name, row.provider) from None
            tx.audit(audit)
            tx.revoke(revocation, credential_id=row.credential_id, org_id=row.org_id)
            return _credential(tx.get(row.credential_id))

    def get_credential(self, credential_id: str) -> CredentialRow:
        with self._tx() as conn:
            m = conn.execute(
                credentials.select().where(credentials.c.credential_id == credential_id)
            ).mappings().first()
        if m is None:
            raise NotFound(f"credential {credential_id!r} not found")
        return _credential(m)

    def list_credentials(
        self,
        *,
        org_id: str = "",
        project_id: str = "",
        user_id: str = "",
        provider: str = "",
        active: bool | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        page_token: str = "",
    ) -> tuple[list[CredentialRow], str]:
        """Credentials matching the filters (empty = any), oldest first, a page at a time."""
        size = _page_size(page_size)
        c = credentials.c
        q = credentials.select()
        for column, value in ((c.org_id, org_id), (c.project_id, project_id), (c.user_id, user_id),
                              (c.provider, provider)):
            if value:
                q = q.where(column == value)
        if active is not None:
            q = q.where(c.active == active)
        if page_token:
            pos = _decode_token(page_token, "c")
            q = q.where(sa.or_(c.created_at > pos["t"],
                               sa.and_(c.created_at == pos["t"], c.credential_id > pos["i"])))
        q = q.order_by(c.created_at, c.credential_id).limit(size + 1)
        with self._tx() as conn:
            rows = [_credential(m) for m in conn.execute(q).mappings()]
        if len(rows) <= size:
            return rows, ""
        last = rows[size - 1]
        return rows[:size], _encode_token({"k": "c", "t": last.created_at.isoformat(),
                                           "i": last.credential_id})

    def update_credential(
        self,
        credential_id: str,
        *,
        audit: AuditRow | None = None,
        revocation: RevocationArg = None,
        expected_version: int | None = None,
        **changes: Any,
    ) -> CredentialRow:
        """Change some of a credential's fields (see _UPDATABLE); updated_at is set. `expected_version`
        makes it a compare-and-set on secret_version (Aborted if another writer got there first).
        The audit event and revocation, if given, are written in the same transaction."""
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")
        if "health" in changes and changes["health"] not in HEALTH_VALUES:
            raise InvalidArgument("health", f"must be one of {', '.join(HEALTH_VALUES)}")
        with self._write() as tx:
            current = _credential(tx.get(credential_id, lock=True))
            if expected_version is not None and current.secret_version != expected_version:
                raise Aborted(
                    f"credential {credential_id!r} is at secret version {current.secret_version}, "
                    f"not {expected_version}"
                )
            values = {("is_primary" if k == "primary" else k): v for k, v in changes.items()}
            values["updated_at"] = utcnow()
            if changes.get("primary"):
                tx.clear_primary(current)
            try:
                tx.conn.execute(
                    credentials.update().where(credentials.c.credential_id == credential_id).values(values)
                )
            except sqlalchemy.exc.IntegrityError:
                raise _name_conflict(changes.get("name", current.name), current.provider) from None
            tx.audit(audit)
            tx.revoke(revocation, credential_id=credential_id, org_id=current.org_id)
            return _credential(tx.get(credential_id))

    def delete_credential(
        self, credential_id: str, *, audit: AuditRow | None = None, revocation: RevocationArg = None
    ) -> CredentialRow:
        """Delete a credential's row and return it (NotFound if absent)."""
        with self._write() as tx:
            current = _credential(tx.get(credential_id, lock=True))
            tx.conn.execute(credentials.delete().where(credentials.c.credential_id == credential_id))
            tx.audit(audit)
            tx.revoke(revocation, credential_id=credential_id, org_id=current.org_id)
            return current

    def lease_candidates(
        self, *, org_id: str, project_id: str, user_id: str, provider: str
    ) -> list[CredentialRow]:
        """Active, not-invalid credentials that may serve (org, project, user, provider), best first.

        Levels, most specific first: the user in this project; the user anywhere in the org (project
        ''); the project (user ''); the org ('', ''). Levels whose id is empty are skipped. Within a
        level: primary first, then oldest. An empty provider matches any provider (routing by model is
        the caller's business)."""
        c = credentials.c
        levels: list[tuple[Any, int]] = []
        if user_id and project_id:
            levels.append((sa.and_(c.project_id == project_id, c.user_id == user_id), 0))
        if user_id:
            levels.append((sa.and_(c.project_id == "", c.user_id == user_id), 1))
        if project_id:
            levels.append((sa.and_(c.project_id == project_id, c.user_id == ""), 2))
        levels.append((sa.and_(c.project_id == "", c.user_id == ""), 3))
        level = sa.case(*levels, else_=9)
        q = (
            credentials.select()
            .where(c.org_id == org_id, c.active.is_(True), c.health != "invalid")
            .where(sa.or_(*(cond for cond, _ in levels)))
            .order_by(level, c.is_primary.desc(), c.created_at, c.credential_id)
        )
        if provider:
            q = q.where(c.provider == provider)
        with self._tx() as conn:
            return [_credential(m) for m in conn.execute(q).mappings()]

    def deactivate_org(self, org_id: str, *, audit: AuditRow | None = None) -> list[CredentialRow]:
        """Cut an org off: deactivate every active credential (one 'deactivated' revocation each), turn its
        platform fallback off, and append one org-wide 'scope_changed' revocation (no credential id), on
        which proxies drop every cached lease of the org, platform leases included (they name no
        credential, so no per-credential event reaches them). Returns the credentials as they are now."""
        with self._write() as tx:
            ids = list(tx.conn.execute(
                sa.select(credentials.c.credential_id)
                .where(credentials.c.org_id == org_id, credentials.c.active.is_(True))
                .order_by(credentials.c.created_at, credentials.c.credential_id)
            ).scalars())
            if ids:
                tx.conn.execute(
                    credentials.update().where(credentials.c.credential_id.in_(ids))
                    .values(active=False, updated_at=utcnow())
                )
            now = utcnow()
            tx.conn.execute(self._upsert(org_policies)
                            .values(org_id=org_id, allow_platform_fallback=False, updated_at=now)
                            .on_conflict_do_update(index_elements=["org_id"],
                                                   set_={"allow_platform_fallback": False, "updated_at": now}))
            tx.audit(audit)
            for credential_id in ids:
                tx.revoke(NewRevocation("deactivated", credential_id=credential_id, org_id=org_id))
            tx.revoke(NewRevocation("scope_changed", org_id=org_id))
            return [_credential(tx.get(i)) for i in ids]
