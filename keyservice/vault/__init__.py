"""keyservice's Vault adapter: the only package that imports hvac (and requests, which hvac speaks HTTP with).

It stores each provider API key as a KV v2 secret at `<kv_prefix>/<org_id>/<credential_id>` in `kv_mount`:
- plain mode (`transit_key == ""`): the KV value is `{"api_key": ...}`;
- envelope mode: the KV value is `{"ciphertext": "vault:vN:...", "transit_key": name}`, the key encrypted by
  a *derived* transit key with the tenant's org id as context, so the KV value alone reveals nothing and one
  tenant's ciphertext cannot be decrypted under another tenant's context.
A cloud credential's secret is the same, field by field: plain `{"access_key_id": ..., "secret_access_key": ...}`,
or in envelope mode `{"ciphertext.access_key_id": "vault:vN:...", "ciphertext.secret_access_key": ..., "transit_key":
name}` (each field encrypted on its own, in one batch call).
Writes use KV check-and-set; the secret's custom_metadata names its owner so that operators can find it with
`vault kv metadata get`.

One module per feature, as hvac's own: `settings` (VaultSettings), `auth` (the token's life cycle), `_call`
(the wrapper every call goes through), `transit`, `kv`; `VaultClient` is their sum.

Every call is synchronous (hvac is) and thread-safe: the service shares one `VaultClient` across its thread
pool. Each Vault call is retried with jittered exponential backoff on 5xx, sealed and connection errors only,
never on 4xx; a refused call whose token turned out to be invalid is retried once after a fresh login.
With several Vault addresses (`VaultSettings.addr` as a comma-separated list: the nodes of an HA cluster),
the client uses one at a time and moves to the next when it cannot connect or the node answers sealed; the
other nodes are tried at once, before any backoff.
Every hvac/requests exception leaves the package translated (`_call.VAULT_ERRORS`): hvac puts whole response
bodies (which can hold decrypted keys) into its messages, so only class names are ever logged.
"""

from __future__ import annotations

from keyservice.vault.kv import MANAGED_BY, KvOps, StoredSecret
from keyservice.vault.settings import AUTH_MODES, VaultSettings

__all__ = ["AUTH_MODES", "MANAGED_BY", "StoredSecret", "VaultClient", "VaultSettings"]


class VaultClient(KvOps):
    """Synchronous, thread-safe access to the keys in Vault. See the package docstring."""
