"""keyservice's Vault adapter: the only module (with its helper `vault_auth`) that imports hvac.

It stores each provider API key as a KV v2 secret at `<kv_prefix>/<org_id>/<credential_id>` in `kv_mount`:
- plain mode (`transit_key == ""`): the KV value is `{"api_key": ...}`;
- envelope mode: the KV value is `{"ciphertext": "vault:vN:...", "transit_key": name}`, the key encrypted by
  a *derived* transit key with the tenant's org id as context, so the KV value alone reveals nothing and one
  tenant's ciphertext cannot be decrypted under another tenant's context.
Writes use KV check-and-set; the secret's custom_metadata names its owner so that operators can find it with
`vault kv metadata get`.

Every call is synchronous (hvac is) and thread-safe: the service shares one `VaultClient` across its thread
pool. Each Vault call is retried with jittered exponential backoff on 5xx, sealed and connection errors only,
never on 4xx; a refused call whose token turned out to be invalid is retried once after a fresh login.
With several Vault addresses (`VaultSettings.addr` as a comma-separated list: the nodes of an HA cluster),
the client uses one at a time and moves to the next when it cannot connect or the node answers sealed; the
other nodes are tried at once, before any backoff.
Every hvac/requests exception leaves this module translated by `errors.translate_foreign()`: hvac puts whole
response bodies (which can hold decrypted keys) into its messages, so only class names are ever logged.
"""

from __future__ import annotations

import base64
import binascii
import functools
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests
import requests.adapters
import structlog

from keyservice import errors
from keyservice.vault_auth import TokenKeeper

log = structlog.get_logger(__name__)

T = TypeVar("T")

MANAGED_BY = "byok-keyservice"
AUTH_MODES = ("token", "approle", "kubernetes")

# Backoff between retries: exponential from 50 ms, capped at 1 s, with jitter so that the threads of a
# service (and the replicas of a deployment) do not hammer a recovering Vault in lockstep.
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0
# Connections kept open to Vault; above requests' default of 10 because the service's thread pool is larger.
_POOL_SIZE = 32
# What is worth retrying: Vault's 5xx (503 = sealed or standby) and failures to talk to it at all.
_RETRYABLE: tuple[type[BaseException], ...] = (
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
    hvac.exceptions.VaultDown,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)
# What makes the client move to the next of several Vault addresses: the node cannot be reached, or it is
# sealed (hvac's VaultDown, a 503 from a sealed node or a standby that has lost its active node).
_FAIL_OVER: tuple[type[BaseException], ...] = (requests.exceptions.ConnectionError, hvac.exceptions.VaultDown)
_CIPHERTEXT_VERSION = re.compile(r"^vault:v(\d+):")
# Vault's limits on custom_metadata (KV v2).
_MAX_METADATA_KEYS, _MAX_METADATA_KEY_LEN, _MAX_METADATA_VALUE_LEN = 64, 128, 512


@dataclass(frozen=True)
class VaultSettings:
    """Where Vault is, how to log in, and where the keys live. Secrets are kept out of repr()."""

    # BYOK_VAULT_ADDR or VAULT_ADDR, e.g. https://vault.example:8200; or a comma-separated list of a cluster's
    # nodes (https://vault-0:8200,https://vault-1:8200,...), used in order, failing over (see `addrs`)
    addr: str
    ca_cert: str | None = None                 # PEM bundle to verify Vault's certificate (None: system CAs)
    auth: str = "token"                        # token | approle | kubernetes
    token: str | None = field(default=None, repr=False)       # auth=token
    role_id: str | None = None                                 # auth=approle
    secret_id: str | None = field(default=None, repr=False)   # auth=approle
    k8s_role: str | None = None                                # auth=kubernetes: the Vault role
    k8s_mount: str = "kubernetes"
    k8s_jwt_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    approle_mount: str = "approle"
    kv_mount: str = "secret"                   # a KV v2 mount
    kv_prefix: str = "byok"                    # keys live at <kv_prefix>/<org_id>/<credential_id>
    transit_mount: str = "transit"
    transit_key: str = ""                      # "" = plain KV mode; set = envelope mode with this derived key
    timeout_seconds: float = 5.0               # connect and read timeout of each HTTP request
    max_retries: int = 3                       # extra attempts on 5xx/sealed/connection errors

    @property
    def addrs(self) -> tuple[str, ...]:
        """The Vault addresses in `addr`, in order (one, or a cluster's nodes)."""
        return tuple(a.strip().rstrip("/") for a in self.addr.split(",") if a.strip())

    def validate(self) -> None:
        """Raise InvalidArgument naming the first bad setting (called when the client is built)."""
        if not self.addrs or not all(a.startswith(("http://", "https://")) for a in self.addrs):
            raise errors.InvalidArgument("vault.addr", "must be an http:// or https:// URL, or a comma-separated "
                                         "list of them")
        if self.auth not in AUTH_MODES:
            raise errors.InvalidArgument("vault.auth", f"must be one of {', '.join(AUTH_MODES)}")
        required = {"token": ("token",), "approle": ("role_id", "secret_id"), "kubernetes": ("k8s_role",)}
        for name in required[self.auth]:
            if not getattr(self, name):
                raise errors.InvalidArgument(f"vault.{name}", f"is required when vault.auth={self.auth}")
        if not self.kv_mount or not self.kv_prefix.strip("/"):
            raise errors.InvalidArgument("vault.kv_prefix", "kv_mount and kv_prefix must not be empty")
        if self.timeout_seconds <= 0:
            raise errors.InvalidArgument("vault.timeout_seconds", "must be positive")
        if self.max_retries < 0:
            raise errors.InvalidArgument("vault.max_retries", "must not be negative")


@dataclass(frozen=True)
class StoredSecret:
    """Reference to what was written: all the DB keeps about a secret (never the value)."""

    mount: str
    path: str
    version: int              # KV v2 version
    transit_key: str          # "" in plain mode
    transit_key_version: int  # transit key version of the ciphertext; 0 in plain mode


class VaultClient:
    """Synchronous, thread-safe access to the keys in Vault. See the module docstring."""

    def __init__(self, settings: VaultSettings, *,
                 observe: Callable[[str, float, str], None] | None = None) -> None:
        settings.validate()
        self._settings = settings
        self._observe = observe
        session = requests.Session()
        # Retries are ours (bounded, jittered, 5xx/connection only): keep urllib3's off.
        pool = requests.adapters.HTTPAdapter(pool_maxsize=_POOL_SIZE, max_retries=0)
        session.mount("http://", pool)
        session.mount("https://", pool)
        verify: str | bool = settings.ca_cert or True
        session.verify = verify
        # No proxy/netrc lookups from the environment on every call: Vault is addressed directly, and the
        # lookups cost more than the request itself on the lease path.
        session.trust_env = False
        self._addrs = settings.addrs
        self._addr_index = 0  # the address in use; moved on by _fail_over()
        self._addr_lock = threading.Lock()
        self._client = hvac.Client(
            url=self._addrs[0],
            token=settings.token if settings.auth == "token" else None,
            verify=verify,
            timeout=settings.timeout_seconds,  # type: ignore[arg-type]  # requests takes a float; the stub says int
            session=session,
        )
        self._auth = TokenKeeper(self._client, settings)

    @property
    def settings(self) -> VaultSettings:
        return self._settings

    @property
    def addr(self) -> str:
        """The Vault address in use (one of `settings.addrs`)."""
        return self._addrs[self._addr_index]

    # -- layout ---------------------------------------------------------------------------------------

    def credential_path(self, org_id: str, credential_id: str) -> str:
        """KV path of a credential's secret: `<kv_prefix>/<org_id>/<credential_id>`."""
        for name, value in (("org_id", org_id), ("credential_id", credential_id)):
            if not value or "/" in value or value in (".", ".."):
                raise errors.InvalidArgument(name, "must be a non-empty path segment")
        return f"{self._settings.kv_prefix.strip('/')}/{org_id}/{credential_id}"

    # -- secrets --------------------------------------------------------------------------------------

    def write_secret(self, path: str, api_key: str, *, org_id: str, metadata: dict[str, str],
                     cas: int | None, over_unserved: bool = False) -> StoredSecret:
        """Tag the secret with custom_metadata, then write a new version of it (cas=0: must not exist yet;
        cas=N: N must be the current version; None: no check). CAS mismatch -> errors.Aborted. With
        `over_unserved`, `cas` is the version a credential's row serves and newer versions are written over
        (see `_kv_write_over`).

        The tag goes first: KV v2 accepts metadata on a path that has no data yet, so a crash between the
        two steps leaves a tagged, data-less entry that the reconciler recognises as ours and removes. The
        other order would leave an untagged secret, indistinguishable from ops' own, that is never removed."""
        s = self._settings
        _check_path(path)
        if not api_key:
            raise errors.InvalidArgument("api_key", "must not be empty")
        custom = _custom_metadata({**metadata, "org": _check_org(org_id)})  # checked before any write
        if s.transit_key:
            ciphertext = self._encrypt(s.transit_key, api_key, org_id)
            value: dict[str, str] = {"ciphertext": ciphertext, "transit_key": s.transit_key}
            key_version = _ciphertext_version(ciphertext)
        else:
            value, key_version = {"api_key": api_key}, 0
        self._write_custom_metadata(path, custom)
        if over_unserved and cas:
            version = self._kv_write_over(path, value, cas)
        else:
            version = self._kv_write(path, value, cas)
        return StoredSecret(s.kv_mount, path, version, s.transit_key, key_version)

    def read_secret(self, path: str, version: int | None = None, *, org_id: str) -> str:
        """The plaintext key of `version` (None: current). Decrypts envelope values; also accepts a plain
        `{"api_key": ...}` value (e.g. written by ops with `vault kv put`). Missing -> errors.NotFound."""
        _check_path(path)
        value, _ = self._kv_read(path, version)
        if "ciphertext" in value:
            key = value.get("transit_key") or self._settings.transit_key
            if not key:
                raise errors.FailedPrecondition("secret is transit-encrypted but names no transit key")
            return self._decrypt(key, value["ciphertext"], _check_org(org_id))
        api_key = value.get("api_key")
        if not isinstance(api_key, str) or not api_key:
            raise errors.FailedPrecondition("vault secret has no api_key field")
        return api_key

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

    # -- transit --------------------------------------------------------------------------------------

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
        ciphertext = value.get("ciphertext")
        if not ciphertext:
            return None
        key = value.get("transit_key") or s.transit_key
        if _ciphertext_version(ciphertext) >= self._key_info(key)["latest_version"]:
            return None
        transit = self._client.secrets.transit
        rewrapped = self._call("transit_rewrap", lambda: transit.rewrap_data(
            name=key, ciphertext=ciphertext, context=_context(_check_org(org_id)),
            mount_point=s.transit_mount))["data"]["ciphertext"]
        new_value = {**value, "ciphertext": rewrapped, "transit_key": key}
        if version is None:
            new_version = self._kv_write(path, new_value, kv_version)
        else:
            new_version = self._kv_write_over(path, new_value, kv_version)
        return StoredSecret(s.kv_mount, path, new_version, key, _ciphertext_version(rewrapped))

    def envelope_ref(self, path: str, version: int) -> tuple[str, int] | None:
        """(transit key name, transit key version) of the ciphertext stored at KV `version`, read without
        decrypting; None for a plain value. Missing -> errors.NotFound."""
        _check_path(path)
        value, _ = self._kv_read(path, version)
        ciphertext = value.get("ciphertext")
        if not ciphertext:
            return None
        return str(value.get("transit_key") or self._settings.transit_key), _ciphertext_version(ciphertext)

    def transit_key_info(self) -> dict[str, Any]:
        """`{"name", "latest_version", "min_decryption_version"}` of the configured transit key."""
        if not self._settings.transit_key:
            raise errors.FailedPrecondition("no transit key is configured (plain KV mode)")
        return self._key_info(self._settings.transit_key)

    def ensure_transit_key(self) -> None:
        """Create the derived transit key if it is missing (dev and local stacks; production keys are
        made by ops). No-op in plain mode. An existing key that is not derived -> FailedPrecondition."""
        s = self._settings
        if not s.transit_key:
            return
        transit = self._client.secrets.transit

        def ensure() -> bool:
            try:
                return bool(transit.read_key(name=s.transit_key, mount_point=s.transit_mount)["data"]
                            .get("derived"))
            except hvac.exceptions.InvalidPath:
                pass
            # Derived: the org id is the context, so each tenant effectively gets its own key.
            transit.create_key(name=s.transit_key, derived=True, key_type="aes256-gcm96",
                               mount_point=s.transit_mount)
            return True

        if not self._call("transit_key_ensure", ensure):
            raise errors.FailedPrecondition("the transit key exists but is not derived")

    # -- lifecycle ------------------------------------------------------------------------------------

    def health(self) -> bool:
        """True if Vault answers, is initialised and unsealed. Never raises (no retries, no token)."""
        started = time.perf_counter()
        healthy = False
        for _ in self._addrs:  # with several addresses, an unreachable or sealed node moves on to the next
            index = self._addr_index
            try:
                status = self._client.sys.read_health_status(method="GET", standby_ok=True)
                # hvac returns the JSON body for a 200 and the raw response otherwise (sealed: 503).
                healthy = isinstance(status, dict) and status.get("initialized") is True \
                    and status.get("sealed") is False
            except Exception as exc:  # noqa: BLE001 - health must never raise; only the class name is kept
                log.info("vault_health_failed", error=type(exc).__name__)
                if not (isinstance(exc, _FAIL_OVER) and self._fail_over(index)):
                    break
                continue
            if healthy or not self._fail_over(index):
                break
        self._report("health", time.perf_counter() - started, "ok" if healthy else "unavailable")
        return healthy

    def close(self) -> None:
        """Close the HTTP connections. The client must not be used afterwards."""
        self._client.adapter.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the steps ------------------------------------------------------------------------------------

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

    def _encrypt(self, key: str, api_key: str, org_id: str) -> str:
        transit = self._client.secrets.transit
        plaintext = base64.b64encode(api_key.encode()).decode()
        return str(self._call("transit_encrypt", lambda: transit.encrypt_data(
            name=key, plaintext=plaintext, context=_context(org_id),
            mount_point=self._settings.transit_mount))["data"]["ciphertext"])

    def _decrypt(self, key: str, ciphertext: str, org_id: str) -> str:
        transit = self._client.secrets.transit
        encoded = self._call("transit_decrypt", lambda: transit.decrypt_data(
            name=key, ciphertext=ciphertext, context=_context(org_id),
            mount_point=self._settings.transit_mount))["data"]["plaintext"]
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise errors.FailedPrecondition("decrypted secret is not a UTF-8 key") from None

    def _key_info(self, key: str) -> dict[str, Any]:
        transit = self._client.secrets.transit
        data = self._call("transit_key_read", lambda: transit.read_key(
            name=key, mount_point=self._settings.transit_mount))["data"]
        return {"name": key, "latest_version": int(data["latest_version"]),
                "min_decryption_version": int(data["min_decryption_version"])}

    # -- every Vault call goes through here -----------------------------------------------------------

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        """Run one Vault operation: fresh token, retries, one re-login on an invalid token, translation
        of foreign exceptions, and one observe() report."""
        started = time.perf_counter()
        outcome = "error"
        try:
            with errors.translate_foreign():
                result = self._with_retries(lambda: self._with_token(fn))
            outcome = "ok"
            return result
        except errors.KeyServiceError as exc:
            outcome = _snake(type(exc).__name__)
            raise
        finally:
            self._report(operation, time.perf_counter() - started, outcome)

    def _with_token(self, fn: Callable[[], T]) -> T:
        generation = self._auth.ensure_fresh()
        try:
            return fn()
        except hvac.exceptions.Forbidden:
            if not self._auth.recover(generation):
                raise
        # Outside the except block, so a second refusal is not chained to the first one's text.
        return fn()

    def _with_retries(self, fn: Callable[[], T]) -> T:
        attempt = 0
        hops = 0  # immediate moves to another address in this call (at most one per other address)
        while True:
            index = self._addr_index
            try:
                return fn()
            except _RETRYABLE as exc:
                error = type(exc).__name__
                moved = isinstance(exc, _FAIL_OVER) and self._fail_over(index)
                if moved and hops < len(self._addrs) - 1:
                    hops += 1
                    continue  # another node, at once: no backoff, no attempt used
                if attempt >= self._settings.max_retries:
                    raise
            attempt += 1
            ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            log.warning("vault_retry", error=error, attempt=attempt, delay_seconds=round(delay, 3))
            time.sleep(delay)  # backoff before the next attempt

    def _fail_over(self, failed: int) -> bool:
        """Move from address `failed` to the next one, unless another thread already moved on from it.
        False when there is only one address."""
        if len(self._addrs) < 2:
            return False
        with self._addr_lock:
            if self._addr_index == failed:
                self._addr_index = (failed + 1) % len(self._addrs)
                self._client.url = self._addrs[self._addr_index]
                log.warning("vault_failover", failed=self._addrs[failed], now=self._addrs[self._addr_index])
        return True

    def _report(self, operation: str, seconds: float, outcome: str) -> None:
        if self._observe is None:
            return
        try:
            self._observe(operation, seconds, outcome)
        except Exception as exc:  # noqa: BLE001 - metrics must never break a Vault call
            log.warning("vault_observe_failed", error=type(exc).__name__)


def _check_path(path: str) -> None:
    if not path or path.startswith("/") or ".." in path.split("/"):
        raise errors.InvalidArgument("path", "must be a relative KV path without '..'")


def _check_org(org_id: str) -> str:
    if not org_id:
        raise errors.InvalidArgument("org_id", "must not be empty")
    return org_id


def _context(org_id: str) -> str:
    """Transit derivation context: the org id, base64 as Vault wants it."""
    return base64.b64encode(org_id.encode()).decode()


def _ciphertext_version(ciphertext: str) -> int:
    match = _CIPHERTEXT_VERSION.match(ciphertext)
    if not match:
        raise errors.FailedPrecondition("stored ciphertext is not a transit ciphertext")
    return int(match.group(1))


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


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
