"""KV v2: the secrets themselves (one api_key, or a cloud credential's named fields), their metadata and versions,
and the per-credential layout."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions

from keyservice import errors
from keyservice.vault._call import log
from keyservice.vault.transit import TransitOps, _ciphertext_version

MANAGED_BY = "byok-keyservice"
API_KEY = "api_key"  # the one field of every provider's secret but the cloud ones'
_CIPHERTEXT = "ciphertext"
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


# Vault's limits on custom_metadata (KV v2).
_MAX_METADATA_KEYS, _MAX_METADATA_KEY_LEN, _MAX_METADATA_VALUE_LEN = 64, 128, 512


@dataclass(frozen=True)
class StoredSecret:
    """Reference to what was written: all the DB keeps about a secret (never the value)."""

    mount: str
    path: str
    version: int              # KV v2 version
    transit_key: str          # "" in plain mode
    transit_key_version: int  # transit key version of the ciphertext; 0 in plain mode


class KvOps(TransitOps):
    """The secrets: written with check-and-set, read at a version, tagged, listed, destroyed."""

    def credential_path(self, org_id: str, credential_id: str) -> str:
        """KV path of a credential's secret: `<kv_prefix>/<org_id>/<credential_id>`."""
        for name, value in (("org_id", org_id), ("credential_id", credential_id)):
            if not value or "/" in value or value in (".", ".."):
                raise errors.InvalidArgument(name, "must be a non-empty path segment")
        return f"{self._settings.kv_prefix.strip('/')}/{org_id}/{credential_id}"

    def write_secret(self, path: str, api_key: str, *, org_id: str, metadata: dict[str, str],
                     cas: int | None, over_unserved: bool = False) -> StoredSecret:
        """`write_fields` of a secret that is one api_key (every provider but the cloud ones)."""
        if not api_key:
            raise errors.InvalidArgument("api_key", "must not be empty")
        return self.write_fields(path, {API_KEY: api_key}, org_id=org_id, metadata=metadata, cas=cas,
                                 over_unserved=over_unserved)

    def write_fields(self, path: str, fields: dict[str, str], *, org_id: str, metadata: dict[str, str],
                     cas: int | None, over_unserved: bool = False) -> StoredSecret:
        """Tag the secret with custom_metadata, then write a new version of it holding `fields` (cas=0: must not
        exist yet; cas=N: N must be the current version; None: no check). CAS mismatch -> errors.Aborted. With
        `over_unserved`, `cas` is the version a credential's row serves and newer versions are written over
        (see `_kv_write_over`). In envelope mode each field is encrypted on its own (`ciphertext` for api_key,
        `ciphertext.<name>` for the others), so the KV value names the fields but holds none of them.

        The tag goes first: KV v2 accepts metadata on a path that has no data yet, so a crash between the
        two steps leaves a tagged, data-less entry that the reconciler recognises as ours and removes. The
        other order would leave an untagged secret, indistinguishable from ops' own, that is never removed."""
        s = self._settings
        _check_path(path)
        _check_fields(fields)
        custom = _custom_metadata({**metadata, "org": _check_org(org_id)})  # checked before any write
        if s.transit_key:
            ciphertexts = self._encrypt_fields(s.transit_key, fields, org_id)
            value: dict[str, str] = {_ciphertext_name(n): c for n, c in ciphertexts.items()}
            value["transit_key"] = s.transit_key
            key_version = min(_ciphertext_version(c) for c in ciphertexts.values())
        else:
            value, key_version = dict(fields), 0
        self._write_custom_metadata(path, custom)
        if over_unserved and cas:
            version = self._kv_write_over(path, value, cas)
        else:
            version = self._kv_write(path, value, cas)
        return StoredSecret(s.kv_mount, path, version, s.transit_key, key_version)

    def read_secret(self, path: str, version: int | None = None, *, org_id: str) -> str:
        """The plaintext key of `version` (None: current): the api_key field of `read_fields`.
        Missing -> errors.NotFound; no api_key field -> errors.FailedPrecondition."""
        api_key = self.read_fields(path, version, org_id=org_id).get(API_KEY)
        if not api_key:
            raise errors.FailedPrecondition("vault secret has no api_key field")
        return api_key

    def read_fields(self, path: str, version: int | None = None, *, org_id: str) -> dict[str, str]:
        """Every field of the secret at `version` (None: current), decrypted in envelope mode (one transit call).
        Also accepts a plain value (e.g. written by ops with `vault kv put … access_key_id=… secret_access_key=-`):
        then every string field is a field of the secret. Missing -> errors.NotFound."""
        _check_path(path)
        value, _ = self._kv_read(path, version)
        ciphertexts = {field: c for name, c in value.items() if (field := _field_of(name)) and isinstance(c, str)}
        if ciphertexts:
            key = value.get("transit_key") or self._settings.transit_key
            if not key:
                raise errors.FailedPrecondition("secret is transit-encrypted but names no transit key")
            return self._decrypt_fields(key, ciphertexts, _check_org(org_id))
        fields = {name: v for name, v in value.items() if isinstance(v, str) and v}
        if not fields:
            raise errors.FailedPrecondition("vault secret has no fields")
        return fields

    def read_metadata(self, path: str) -> dict[str, Any]:
        """`{"current_version": int, "created_time": str, "custom_metadata": {str: str},
        "versions": {int: {"created_time", "deletion_time", "destroyed"}}}`. Missing -> errors.NotFound."""
        _check_path(path)
        kv = self._client.secrets.kv.v2
        data = self._call("kv_metadata_read", lambda: kv.read_secret_metadata(
            path=path, mount_point=self._settings.kv_mount))["data"]
        return {
            "current_version": int(data.get("current_version") or 0),
            "created_time": data.get("created_time", ""),
            "custom_metadata": dict(data.get("custom_metadata") or {}),
            "versions": {int(v): dict(info) for v, info in (data.get("versions") or {}).items()},
        }

    def set_custom_metadata(self, path: str, metadata: dict[str, str]) -> None:
        """Replace the secret's custom_metadata with `metadata` (plus managed_by): pass the full set."""
        _check_path(path)
        self._write_custom_metadata(path, _custom_metadata(metadata))

    def delete_secret(self, path: str) -> None:
        """Permanently delete the secret: its metadata and every version. Already missing is fine."""
        _check_path(path)
        kv = self._client.secrets.kv.v2

        def delete() -> None:
            try:
                kv.delete_metadata_and_all_versions(path=path, mount_point=self._settings.kv_mount)
            except hvac.exceptions.InvalidPath:
                pass  # deleting is idempotent

        self._call("kv_delete", delete)

    def destroy_versions(self, path: str, versions: list[int]) -> None:
        """Permanently destroy the given versions' data (the metadata and other versions stay)."""
        _check_path(path)
        if not versions:
            return
        kv = self._client.secrets.kv.v2
        self._call("kv_destroy", lambda: kv.destroy_secret_versions(
            path=path, versions=list(versions), mount_point=self._settings.kv_mount))

    def list_credential_paths(self) -> list[str]:
        """Every secret path under kv_prefix (recursively), sorted; [] if there are none."""
        kv = self._client.secrets.kv.v2
        mount = self._settings.kv_mount

        def list_folder(folder: str) -> list[str]:
            try:
                return list(kv.list_secrets(path=folder, mount_point=mount)["data"]["keys"])
            except hvac.exceptions.InvalidPath:
                return []  # Vault answers 404 for an empty folder

        found: list[str] = []
        pending = [self._settings.kv_prefix.strip("/")]
        while pending:
            folder = pending.pop()
            for key in self._call("kv_list", functools.partial(list_folder, folder)):
                child = f"{folder}/{key}"
                if key.endswith("/"):
                    pending.append(child.rstrip("/"))
                else:
                    found.append(child)
        return sorted(found)

    def rewrap(self, path: str, *, org_id: str, version: int | None = None) -> StoredSecret | None:
        """Envelope mode: re-encrypt the ciphertext of KV `version` (None: the current one) under the transit
        key's latest version without ever seeing the plaintext (transit rewrap), and store it as a new KV
        version (check-and-set). None in plain mode, for a plain value, or when that ciphertext is already on
        the latest version.

        Pass the version a credential's row serves: the new KV version then holds the *same* key, written
        over any newer, never-served versions (`_kv_write_over`) rather than rewrapping a key the row never
        pointed at."""
        s = self._settings
        _check_path(path)
        if not s.transit_key:
            return None
        value, kv_version = self._kv_read(path, version)
        ciphertexts = {name: c for name, c in value.items() if _field_of(name) and isinstance(c, str)}
        if not ciphertexts:
            return None
        key = value.get("transit_key") or s.transit_key
        if min(_ciphertext_version(c) for c in ciphertexts.values()) >= self._key_info(key)["latest_version"]:
            return None
        rewrapped = self._rewrap_fields(key, ciphertexts, _check_org(org_id))
        new_value = {**value, **rewrapped, "transit_key": key}
        if version is None:
            new_version = self._kv_write(path, new_value, kv_version)
        else:
            new_version = self._kv_write_over(path, new_value, kv_version)
        return StoredSecret(s.kv_mount, path, new_version, key, min(_ciphertext_version(c) for c in rewrapped.values()))

    def envelope_ref(self, path: str, version: int) -> tuple[str, int] | None:
        """(transit key name, lowest transit key version) of the ciphertexts stored at KV `version`, read without
        decrypting; None for a plain value. Missing -> errors.NotFound."""
        _check_path(path)
        value, _ = self._kv_read(path, version)
        versions = [_ciphertext_version(c) for name, c in value.items() if _field_of(name) and isinstance(c, str)]
        if not versions:
            return None
        return str(value.get("transit_key") or self._settings.transit_key), min(versions)

    def _kv_read(self, path: str, version: int | None) -> tuple[dict[str, Any], int]:
        kv = self._client.secrets.kv.v2
        data = self._call("kv_read", lambda: kv.read_secret_version(
            path=path, version=version, mount_point=self._settings.kv_mount,
            raise_on_deleted_version=True))["data"]
        return dict(data.get("data") or {}), int(data["metadata"]["version"])

    def _kv_write(self, path: str, value: dict[str, str], cas: int | None) -> int:
        kv = self._client.secrets.kv.v2

        def write() -> Any:
            try:
                return kv.create_or_update_secret(path=path, secret=value, cas=cas,
                                                  mount_point=self._settings.kv_mount)
            except hvac.exceptions.InvalidRequest as exc:
                if _is_cas_mismatch(exc):
                    raise errors.Aborted("vault check-and-set failed: the secret's version changed") from None
                raise

        return int(self._call("kv_write", write)["data"]["version"])

    def _kv_write_over(self, path: str, value: dict[str, str], served: int) -> int:
        """Check-and-set on `served`, the version a credential's row serves. Vault ahead of it holds versions
        that were never served (a rotation crashed, or lost its DB compare-and-set, after writing Vault):
        write on top of them rather than wedge the credential. The caller's DB update is a compare-and-set on
        the row's version, so a concurrent writer still loses cleanly there."""
        try:
            return self._kv_write(path, value, served)
        except errors.Aborted:
            current = int(self.read_metadata(path).get("current_version") or 0)
            if current <= served:
                raise
            log.warning("vault_write_over_unserved_versions", path=path, version=served, current_version=current)
            return self._kv_write(path, value, current)

    def _write_custom_metadata(self, path: str, custom: dict[str, str]) -> None:
        kv = self._client.secrets.kv.v2
        self._call("kv_metadata_write", lambda: kv.update_metadata(
            path=path, custom_metadata=custom, mount_point=self._settings.kv_mount))


def _ciphertext_name(field: str) -> str:
    """Where a field's ciphertext goes in an envelope value: `ciphertext` for api_key (as envelope values have
    always been written), `ciphertext.<name>` for a structured secret's other fields."""
    return _CIPHERTEXT if field == API_KEY else f"{_CIPHERTEXT}.{field}"


def _field_of(name: str) -> str:
    """The field an envelope value's entry holds the ciphertext of; "" for entries that are not ciphertexts."""
    if name == _CIPHERTEXT:
        return API_KEY
    return name[len(_CIPHERTEXT) + 1:] if name.startswith(_CIPHERTEXT + ".") else ""


def _check_fields(fields: dict[str, str]) -> None:
    if not fields:
        raise errors.InvalidArgument("secret", "must have at least one field")
    for name, value in fields.items():
        if not _FIELD_NAME.fullmatch(name) or name == "transit_key":
            raise errors.InvalidArgument("secret", "field names must be 1-64 lower-case letters, digits or '_'")
        if not isinstance(value, str) or not value:
            raise errors.InvalidArgument(name, "must not be empty")


def _check_path(path: str) -> None:
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise errors.InvalidArgument("path", "must be a relative KV path without '..'")


def _check_org(org_id: str) -> str:
    if not org_id:
        raise errors.InvalidArgument("org_id", "must not be empty")
    return org_id


def _custom_metadata(metadata: dict[str, str]) -> dict[str, str]:
    custom = {**metadata, "managed_by": MANAGED_BY}
    if len(custom) > _MAX_METADATA_KEYS:
        raise errors.InvalidArgument("metadata", f"at most {_MAX_METADATA_KEYS - 1} entries")
    for key, value in custom.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key \
                or len(key) > _MAX_METADATA_KEY_LEN or len(value) > _MAX_METADATA_VALUE_LEN:
            raise errors.InvalidArgument(
                "metadata", f"keys (1-{_MAX_METADATA_KEY_LEN} chars) and values (<= {_MAX_METADATA_VALUE_LEN} "
                "chars) must be strings")
    return custom


def _is_cas_mismatch(exc: hvac.exceptions.InvalidRequest) -> bool:
    # Vault's own fixed wording; inspected here, never kept or logged.
    return any("check-and-set" in str(message) for message in (exc.errors or []))
