"""Transit: encrypting a key (or each field of a structured secret, in one batch call) under the tenant's derived
context (envelope mode), decrypting it, rewrapping it, the key's versions."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import hvac
import hvac.exceptions

from keyservice import errors
from keyservice.vault._call import VaultCaller

_CIPHERTEXT_VERSION = re.compile(r"^vault:v(\d+):")


class TransitOps(VaultCaller):
    """Envelope mode's transit calls."""

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

    def _encrypt(self, key: str, api_key: str, org_id: str) -> str:
        transit = self._client.secrets.transit
        plaintext = base64.b64encode(api_key.encode()).decode()
        return str(self._call("transit_encrypt", lambda: transit.encrypt_data(
            name=key, plaintext=plaintext, context=_context(org_id),
            mount_point=self._settings.transit_mount))["data"]["ciphertext"])

    def _encrypt_fields(self, key: str, fields: dict[str, str], org_id: str) -> dict[str, str]:
        """Each field's value encrypted on its own (one transit call: a batch when there are several)."""
        if len(fields) == 1:
            name, value = next(iter(fields.items()))
            return {name: self._encrypt(key, value, org_id)}
        transit = self._client.secrets.transit
        batch = [{"plaintext": base64.b64encode(v.encode()).decode(), "context": _context(org_id)}
                 for v in fields.values()]
        results = self._call("transit_encrypt", lambda: transit.encrypt_data(
            name=key, batch_input=batch, mount_point=self._settings.transit_mount))["data"]["batch_results"]
        return dict(zip(fields, (_batch_item(r, "ciphertext") for r in results), strict=True))

    def _decrypt_fields(self, key: str, ciphertexts: dict[str, str], org_id: str) -> dict[str, str]:
        """The plaintext of each field (one transit call: a batch when there are several)."""
        if len(ciphertexts) == 1:
            name, ciphertext = next(iter(ciphertexts.items()))
            return {name: self._decrypt(key, ciphertext, org_id)}
        transit = self._client.secrets.transit
        batch = [{"ciphertext": c, "context": _context(org_id)} for c in ciphertexts.values()]
        results = self._call("transit_decrypt", lambda: transit.decrypt_data(
            name=key, batch_input=batch, mount_point=self._settings.transit_mount))["data"]["batch_results"]
        return dict(zip(ciphertexts, (_plaintext(_batch_item(r, "plaintext")) for r in results), strict=True))

    def _rewrap_fields(self, key: str, ciphertexts: dict[str, str], org_id: str) -> dict[str, str]:
        """Each ciphertext re-encrypted under the key's latest version, never decrypted here (one transit call)."""
        transit = self._client.secrets.transit
        batch = [{"ciphertext": c, "context": _context(org_id)} for c in ciphertexts.values()]
        results = self._call("transit_rewrap", lambda: transit.rewrap_data(
            name=key, ciphertext=None, batch_input=batch, mount_point=self._settings.transit_mount))["data"]
        return dict(zip(ciphertexts, (_batch_item(r, "ciphertext") for r in results["batch_results"]), strict=True))

    def _decrypt(self, key: str, ciphertext: str, org_id: str) -> str:
        transit = self._client.secrets.transit
        encoded = self._call("transit_decrypt", lambda: transit.decrypt_data(
            name=key, ciphertext=ciphertext, context=_context(org_id),
            mount_point=self._settings.transit_mount))["data"]["plaintext"]
        return _plaintext(encoded)

    def _key_info(self, key: str) -> dict[str, Any]:
        transit = self._client.secrets.transit
        data = self._call("transit_key_read", lambda: transit.read_key(
            name=key, mount_point=self._settings.transit_mount))["data"]
        return {"name": key, "latest_version": int(data["latest_version"]),
                "min_decryption_version": int(data["min_decryption_version"])}


def _plaintext(encoded: str) -> str:
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise errors.FailedPrecondition("decrypted secret is not a UTF-8 key") from None


def _batch_item(result: dict[str, Any], name: str) -> str:
    """One batch result's value; a failed item (Vault reports it in the item, not always in the status) fails the
    whole call: a secret is written and read whole. The item's error text is not kept."""
    value = result.get(name)
    if result.get("error") or not isinstance(value, str):
        raise errors.FailedPrecondition("vault transit refused one field of the secret")
    return value


def _context(org_id: str) -> str:
    """Transit derivation context: the org id, base64 as Vault wants it."""
    return base64.b64encode(org_id.encode()).decode()


def _ciphertext_version(ciphertext: str) -> int:
    match = _CIPHERTEXT_VERSION.match(ciphertext)
    if not match:
        raise errors.FailedPrecondition("stored ciphertext is not a transit ciphertext")
    return int(match.group(1))
