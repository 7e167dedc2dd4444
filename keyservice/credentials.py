"""Credential lifecycle across Vault and the DB, ordered so that a crash at any step leaves no DB row
pointing at a missing secret:

- create: a reservation of the path in the DB first, then Vault (the managed_by tag, then the data), then the
  DB row, swapped for the reservation in one transaction. A crash in between leaves a reservation and an
  orphaned, tagged Vault entry (metadata-only if the crash came before the data), which the reconciler
  removes once the reservation is older than the create deadline. A create that outlives the deadline aborts
  before its commit (and the reconciler may already be removing its secret): see keyservice/reconciler.py.
- register: the DB row first, then the managed_by tag (a tag without a row would mark ops' secret an orphan).
- rotate: new KV version (check-and-set) first, then the row's version (compare-and-set); the old version
  still exists, so a crash in between leaves the row on a readable secret. Old versions beyond the configured
  number are destroyed only after the row moved on.
- delete: the row first (the credential stops being visible and leasable at once), then every Vault version.
  If Vault fails after the row is gone, the reconciler finishes the job.

Every method is synchronous (hvac and the store are); the gRPC layer runs them in a thread pool.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

from byokcommon.egress import EgressPolicy
from byokcommon.redaction import redact_text
from keyservice import audit, cloud_fields, validation
from keyservice.cloud_fields import CheckedCredential
from keyservice.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, KeyServiceError, NotFound
from keyservice.providers import ProviderSpec, get_provider
from keyservice.store import CredentialRow, NewRevocation, Store
from keyservice.vault import MANAGED_BY, StoredSecret, VaultClient

_log = structlog.get_logger("byok.credentials")


def new_credential_id() -> str:
    return "cred_" + uuid.uuid4().hex[:24]


@dataclasses.dataclass(frozen=True)
class NewCredential:
    provider: str
    org_id: str
    project_id: str
    user_id: str
    name: str
    api_base: str
    default_model: str
    primary: bool
    # A cloud credential's non-secret settings (keyservice/cloud_fields.py), checked with its secret.
    settings: Mapping[str, str] = dataclasses.field(default_factory=dict)


# A new secret: one API key (as the api_key field of the RPCs), or a cloud credential's named fields.
Secret = str | Mapping[str, str]


class CredentialManager:
    def __init__(self, store: Store, vault: VaultClient, *, keep_secret_versions: int = 2,
                 create_deadline_seconds: float = 60.0, egress: EgressPolicy | None = None) -> None:
        self.store = store
        self.vault = vault
        self.keep_secret_versions = keep_secret_versions
        self.create_deadline_seconds = create_deadline_seconds
        self.egress = egress or EgressPolicy()  # where api_base may point (byokcommon/egress.py)

    # -- create -----------------------------------------------------------------------------------------
    def create(self, actor: str, new: NewCredential, secret: Secret) -> CredentialRow:
        spec = get_provider(new.provider)
        checked = self._check_secret(spec, secret, new.settings)
        self._check_api_base(spec, new.api_base)
        self._check_name_free(new)
        credential_id = new_credential_id()
        path = self.vault.credential_path(new.org_id, credential_id)
        mount = self.vault.settings.kv_mount
        started = time.monotonic()
        self.store.reserve_secret(mount, path, credential_id)
        try:
            stored = self.vault.write_fields(path, checked.secret, org_id=new.org_id, cas=0,
                                             metadata=self._metadata(new, credential_id))
            row = self._row(new, credential_id, stored, checked)
            if time.monotonic() - started > self.create_deadline_seconds:
                # Give up before the reconciler does; its reclaim would make the commit below abort anyway.
                raise Aborted("the create outlived its deadline (BYOK_CREATE_DEADLINE_SECONDS); nothing was "
                              "stored, retry")
            return self.store.insert_credential(
                row, reserved=True, revocation=NewRevocation("scope_changed", org_id=new.org_id),
                audit=audit.credential_event(actor, "credential.create", row, provider=new.provider,
                                             name=new.name, key_hint=row.key_hint, secret_version=stored.version,
                                             **_field_names(checked)))
        except KeyServiceError:
            # Compensate; the reconciler covers a crash right here (the reservation outlives us).
            self._forget_secret(path)
            self._release(mount, path, credential_id)
            raise

    def register(self, actor: str, new: NewCredential, vault_path: str) -> CredentialRow:
        """Adopt a secret ops wrote with `vault kv put <mount>/<path> api_key=-` (a cloud credential's fields:
        `access_key_id=… secret_access_key=-`); the secret never crossed our API."""
        spec = get_provider(new.provider)
        validation.vault_path(vault_path, managed_prefix=self.vault.settings.kv_prefix)
        self._check_api_base(spec, new.api_base)
        self._check_name_free(new)
        where = f"{self.vault.settings.kv_mount}/{redact_text(vault_path)}"
        try:
            fields = self.vault.read_fields(vault_path, org_id=new.org_id)
        except NotFound:
            # Echoed masked: a key pasted into the path must not come back in the error or the RPC log.
            raise NotFound(f"vault_path: no secret at {where}") from None
        if not spec.fields:  # a single key: its api_key field is the key, other fields are ops' notes
            if not fields.get("api_key"):
                raise FailedPrecondition("vault secret has no api_key field")
            fields = {"api_key": fields["api_key"]}
        checked = cloud_fields.check(spec, fields, new.settings, self.egress,
                                     label=lambda name: f"vault_path (its {name} field)", where="vault_path")
        meta = self.vault.read_metadata(vault_path)
        owner = meta.get("custom_metadata") or {}
        if owner.get("managed_by") == MANAGED_BY:
            # Already a credential's secret (created, or registered, by keyservice). A second credential on
            # it could lease that key to another org, and deleting either would destroy it under the other.
            # (A path referenced by a row whose tag was never written is refused by the store's check.)
            holder = f" (credential {redact_text(owner['credential_id'])})" if owner.get("credential_id") else ""
            raise AlreadyExists(f"vault_path: the secret at {where} is already managed by keyservice{holder}; "
                                "each Vault secret serves one credential")
        credential_id = new_credential_id()
        version = int(meta.get("current_version") or 1)
        stored = StoredSecret(mount=self.vault.settings.kv_mount, path=vault_path, version=version,
                              transit_key="", transit_key_version=0)
        row = self._row(new, credential_id, stored, checked)
        created = self.store.insert_credential(
            row, revocation=NewRevocation("scope_changed", org_id=new.org_id),
            audit=audit.credential_event(actor, "credential.register", row, provider=new.provider, name=new.name,
                                         vault_path=vault_path, **_field_names(checked)))
        # Tag the secret only once the row references it: a managed_by tag without a row marks an orphan,
        # and the reconciler would delete ops' own secret if we crashed (or the insert failed) in between.
        try:
            self.vault.set_custom_metadata(vault_path, self._metadata(new, credential_id))
        except KeyServiceError as exc:  # the tag is informational; the row already serves the secret
            _log.warning("credential.register_tag_failed", credential_id=credential_id, error=exc.message)
        return created

    # -- rotate -----------------------------------------------------------------------------------------
    def rotate(self, actor: str, credential_id: str, secret: Secret, expected_version: int = 0) -> CredentialRow:
        """A new secret (all its fields) for the credential; its settings stay, and the new secret must suit them."""
        row = self.store.get_credential(credential_id)
        spec = get_provider(row.provider)
        checked = self._check_secret(spec, secret, row.settings)
        if expected_version and expected_version != row.secret_version:
            raise Aborted(f"expected_version {expected_version} is stale: current version is {row.secret_version}")
        stored = self._write_rotated(row, checked.secret, strict=bool(expected_version))
        rotated = self.store.update_credential(
            credential_id, expected_version=row.secret_version,
            audit=audit.credential_event(actor, "credential.rotate", row, old_version=row.secret_version,
                                         new_version=stored.version, key_hint=checked.hint,
                                         **_field_names(checked)),
            revocation="rotated",
            # Both transit fields, from what was just written: a row without a transit key (an import, or a
            # credential created before envelope mode was switched on) now holds ciphertext, and rewrap and
            # the min_decryption_version check find a secret only by its row's transit key. (Switching
            # envelope mode off clears them the same way.)
            secret_version=stored.version, transit_key=stored.transit_key,
            transit_key_version=stored.transit_key_version,
            key_hint=checked.hint, fingerprint=checked.fingerprint, health="unverified",
            last_rotated_at=audit.now())
        self._destroy_old_versions(rotated)
        return rotated

    def _write_rotated(self, row: CredentialRow, fields: dict[str, str], *, strict: bool) -> StoredSecret:
        """Write the new KV version with check-and-set on the version the row serves.

        Vault ahead of the row means another rotation wrote Vault and has not (yet, or ever) updated the row:
        one in flight, or one that crashed or lost its DB compare-and-set. The two cannot be told apart here.
        `strict` (the caller gave expected_version) loses to it with ABORTED, so a winning compare-and-set
        rotation is always exactly version + 1. Otherwise the versions ahead were never served and are
        written over, so a crashed rotation never wedges the credential."""
        metadata = self._metadata(self._as_new(row), row.credential_id)
        try:
            return self.vault.write_fields(row.vault_path, fields, org_id=row.org_id, cas=row.secret_version,
                                           metadata=metadata, over_unserved=not strict)
        except Aborted:
            current = int(self.vault.read_metadata(row.vault_path).get("current_version") or 0)
            if strict and current > row.secret_version:
                raise Aborted(f"expected_version {row.secret_version}: another rotation wrote version {current} "
                              "and has not finished (or crashed); retry, or rotate without expected_version") from None
            raise

    def _destroy_old_versions(self, row: CredentialRow) -> None:
        # keep_secret_versions old versions stay (for leases issued just before the rotation); older go.
        newest_doomed = row.secret_version - self.keep_secret_versions - 1
        if newest_doomed < 1:
            return
        try:
            meta = self.vault.read_metadata(row.vault_path)
            doomed = [int(v) for v, info in (meta.get("versions") or {}).items()
                      if int(v) <= newest_doomed and not info.get("destroyed")]
            if doomed:
                self.vault.destroy_versions(row.vault_path, doomed)
        except KeyServiceError as exc:
            # Not fatal: the row already serves the new version; the next rotation retries.
            _log.warning("credential.destroy_old_versions_failed", credential_id=row.credential_id,
                         error=exc.message)

    # -- state changes --------------------------------------------------------------------------------
    def set_active(self, actor: str, credential_id: str, active: bool) -> CredentialRow:
        row = self.store.get_credential(credential_id)
        action = "credential.activate" if active else "credential.deactivate"
        return self.store.update_credential(
            credential_id, active=active,
            audit=audit.credential_event(actor, action, row),
            revocation="scope_changed" if active else "deactivated")  # activation can change resolution

    def update(self, actor: str, credential_id: str, changes: dict[str, Any]) -> CredentialRow:
        row = self.store.get_credential(credential_id)
        spec = get_provider(row.provider)
        if "api_base" in changes:
            self._check_api_base(spec, changes["api_base"])
        if "name" in changes and changes["name"] != row.name:
            self._check_name_free(dataclasses.replace(self._as_new(row), name=changes["name"]))
        if not changes:
            return row
        # The host is not secret, and a moved api_base is where the key goes next: both ends are audited.
        moved = ({"old_api_base": redact_text(row.api_base), "new_api_base": redact_text(changes["api_base"])}
                 if changes.get("api_base", row.api_base) != row.api_base else {})
        updated = self.store.update_credential(
            credential_id, audit=audit.credential_event(actor, "credential.update", row, fields=sorted(changes),
                                                        **moved),
            revocation="scope_changed", **changes)
        if "name" in changes:
            self.vault.set_custom_metadata(row.vault_path, self._metadata(self._as_new(updated), credential_id))
        return updated

    def delete(self, actor: str, credential_id: str) -> None:
        # The scope comes from the row (it never changes), so the event is found by org, project and user.
        scope = self.store.get_credential(credential_id)
        row = self.store.delete_credential(
            credential_id, audit=audit.credential_event(actor, "credential.delete", scope), revocation="deleted")
        self._forget_secret(row.vault_path)

    def record_health(self, actor: str, credential_id: str, health: str, *, action: str,
                      **details: Any) -> CredentialRow:
        row = self.store.get_credential(credential_id)
        stamps: dict[str, Any] = {"last_verified_at": audit.now()} if action == "credential.verify" else {}
        return self.store.update_credential(
            credential_id, health=health, **stamps,
            audit=audit.credential_event(actor, action, row, health=health, **details),
            revocation="invalid" if health == "invalid" else None)

    def rewrap_all(self, actor: str, org_id: str = "") -> tuple[int, int]:
        """Rewrap every envelope-mode secret to the latest transit key version; returns (count, min version)."""
        if not self.vault.settings.transit_key:
            raise FailedPrecondition("rewrap needs envelope mode (BYOK_VAULT_TRANSIT_KEY is not set)")
        count, lowest, token = 0, 0, ""
        while True:
            rows, token = self.store.list_credentials(org_id=org_id, page_size=500, page_token=token)
            for row in rows:
                if not row.transit_key:
                    row = self._record_envelope(row)
                    if not row.transit_key:
                        continue  # a plain value: nothing to rewrap, not affected by min_decryption_version
                try:
                    # The row's own version: rewrapping Vault's current one could move the row onto a key
                    # it never served (after a rotation that wrote Vault but not the row).
                    stored = self.vault.rewrap(row.vault_path, org_id=row.org_id, version=row.secret_version)
                    if stored is not None:
                        row = self.store.update_credential(
                            row.credential_id, expected_version=row.secret_version, secret_version=stored.version,
                            transit_key=stored.transit_key, transit_key_version=stored.transit_key_version)
                        count += 1
                except Aborted:
                    # A rotation (or another rewrap) got there first; count the row as it is now.
                    _log.warning("credential.rewrap_skipped_concurrent_change", credential_id=row.credential_id)
                    try:
                        row = self.store.get_credential(row.credential_id)
                    except NotFound:
                        continue
                    if not row.transit_key:
                        continue
                lowest = row.transit_key_version if not lowest else min(lowest, row.transit_key_version)
            if not token:
                break
        self.store.append_audit(audit.event(actor, "secrets.rewrap", org_id=org_id, rewrapped=count,
                                            min_transit_key_version=lowest))
        return count, lowest

    def _record_envelope(self, row: CredentialRow) -> CredentialRow:
        """A row without a transit key whose secret is nevertheless transit ciphertext (rotated in envelope
        mode before rotations recorded the key): record the key and version on the row, so that rewrap and
        the min_decryption_version check see it. Unchanged for a plain value."""
        ref = self.vault.envelope_ref(row.vault_path, row.secret_version)
        if ref is None:
            return row
        _log.info("credential.transit_ref_recorded", credential_id=row.credential_id, transit_key=ref[0],
                  transit_key_version=ref[1])
        try:
            return self.store.update_credential(row.credential_id, expected_version=row.secret_version,
                                                transit_key=ref[0], transit_key_version=ref[1])
        except Aborted:  # rotated meanwhile: the rotation recorded its own transit fields
            return self.store.get_credential(row.credential_id)

    # -- helpers --------------------------------------------------------------------------------------
    def _check_name_free(self, new: NewCredential) -> None:
        rows, _ = self.store.list_credentials(org_id=new.org_id, project_id=new.project_id or "",
                                              user_id=new.user_id or "", provider=new.provider, page_size=500)
        if any(r.name == new.name and r.project_id == new.project_id and r.user_id == new.user_id for r in rows):
            raise AlreadyExists(f"name: a {new.provider} credential named {new.name!r} already exists in this scope")

    def _check_api_base(self, spec: ProviderSpec, api_base: str) -> None:
        validation.api_base(api_base)
        spec.check_api_base(api_base, self.egress)
        if spec.api_base_required and not api_base:
            raise InvalidArgument("api_base", "is required for provider openai_compatible")

    def _check_secret(self, spec: ProviderSpec, secret: Secret, settings: Mapping[str, str]) -> CheckedCredential:
        """The new secret checked with the settings it will serve under. A lone key (the RPCs' api_key field) is
        the api_key field, and errors about it name `api_key`; named fields are `secret_fields.<name>`."""
        if isinstance(secret, str):
            return cloud_fields.check(spec, {"api_key": secret} if secret else {}, settings, self.egress,
                                      label=lambda name: name, where="api_key")
        return cloud_fields.check(spec, secret, settings, self.egress)

    def _metadata(self, new: NewCredential, credential_id: str) -> dict[str, str]:
        fields = {"org_id": new.org_id, "project_id": new.project_id, "user_id": new.user_id,
                  "provider": new.provider, "name": new.name, "credential_id": credential_id}
        return {k: v for k, v in fields.items() if v}  # Vault refuses empty custom_metadata values

    @staticmethod
    def _as_new(row: CredentialRow) -> NewCredential:
        return NewCredential(provider=row.provider, org_id=row.org_id, project_id=row.project_id,
                             user_id=row.user_id, name=row.name, api_base=row.api_base,
                             default_model=row.default_model, primary=row.primary, settings=row.settings)

    def _row(self, new: NewCredential, credential_id: str, stored: StoredSecret,
             checked: CheckedCredential) -> CredentialRow:
        now = audit.now()
        return CredentialRow(
            credential_id=credential_id, provider=new.provider, org_id=new.org_id, project_id=new.project_id,
            user_id=new.user_id, name=new.name, api_base=new.api_base, default_model=new.default_model,
            active=True, primary=new.primary, health="unverified", key_hint=checked.hint,
            fingerprint=checked.fingerprint, vault_mount=stored.mount, vault_path=stored.path,
            secret_version=stored.version, transit_key=stored.transit_key,
            transit_key_version=stored.transit_key_version, created_at=now, updated_at=now, last_verified_at=None,
            last_rotated_at=None, settings=checked.settings)

    def _release(self, mount: str, path: str, credential_id: str) -> None:
        try:
            self.store.release_reservation(mount, path, credential_id)
        except KeyServiceError as exc:  # the reconciler reclaims it after the deadline
            _log.warning("credential.reservation_release_deferred", credential_id=credential_id,
                         error=exc.message)

    def _forget_secret(self, path: str) -> None:
        try:
            self.vault.delete_secret(path)
        except KeyServiceError as exc:
            _log.warning("credential.vault_delete_deferred", path=path, error=exc.message)


def _field_names(checked: CheckedCredential) -> dict[str, Any]:
    """For the audit event of a write: which secret fields and settings it had (names only: the settings' values
    are on the credential, the secret's nowhere outside Vault). Nothing for a lone api_key."""
    if set(checked.secret) == {"api_key"} and not checked.settings:
        return {}
    return {"secret_fields": sorted(checked.secret), "settings": sorted(checked.settings)}
