# keyservice: the only identity that handles tenants' provider keys.
#
# Least privilege: the credential secrets under one KV v2 prefix, the one transit
# key used for envelope mode, and its own token. Nothing under sys/, no other
# mount, no other prefix, no other transit key, no PKI.
#
# deploy/vault/bootstrap.sh renders this file for non-default names: it rewrites
# the mount ("secret"), the prefix ("byok"), the transit mount ("transit") and the
# transit key ("byok") in the `path "..."` lines only.

# Credential secrets: secret/data/byok/<org_id>/<credential_id> and the ops
# imports under byok/imports/ (registered by path). Create on CreateCredential,
# read on IssueKeyLease, update on RotateSecret, delete (latest version) on delete.
path "secret/data/byok/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# Metadata: list for the reconciler (orphan sweep), read for versions, create and
# update for custom_metadata (the managed_by tag, credential id and org, written on
# a new path before its data so that a crash in between leaves a tagged entry the
# reconciler removes), delete to remove a secret with all its versions when a
# credential is deleted.
path "secret/metadata/byok/*" {
  capabilities = ["create", "read", "list", "update", "delete"]
}

# Destroy old versions after a rotation so the previous plaintext is gone for good.
path "secret/destroy/byok/*" {
  capabilities = ["update"]
}

# Envelope mode: derived transit key "byok" (context = org id).
path "transit/encrypt/byok" {
  capabilities = ["update"]
}

path "transit/decrypt/byok" {
  capabilities = ["update"]
}

# Re-encrypt stored ciphertext under the newest key version after a rotation.
path "transit/rewrap/byok" {
  capabilities = ["update"]
}

# Key info (latest_version, min_decryption_version) recorded in the reference.
path "transit/keys/byok" {
  capabilities = ["read"]
}

# Its own token: the roles set token_no_default_policy, so these come from here.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
