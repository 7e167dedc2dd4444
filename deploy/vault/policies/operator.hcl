# operator: day-2 operations without access to any plaintext.
#
# Allowed: KV metadata (read, list, update custom_metadata / max_versions) and
# version management (soft delete, undelete, destroy), transit key rotation and
# min_decryption_version, key info, audit-log HMAC lookups, listing audit
# devices, issuing internal callers' certificates, and reading / revoking /
# tidying every certificate.
#
# Deliberately absent: secret/data/* (reading it would reveal tenants' keys) and
# transit/decrypt/* (decrypting envelope ciphertext would too), and issuing
# keyservice, proxyservice or admin certificates: a proxyservice certificate
# leases plaintext keys from keyservice, so minting one is reading every key
# (that is pki-issuer.hcl, for cert-manager or the security team). Emergencies
# use breakglass.hcl instead, which is separately guarded and audited.
#
# deploy/vault/bootstrap.sh renders this file for non-default mount, prefix and
# key names (see keyservice.hcl).

path "secret/metadata/byok/*" {
  capabilities = ["read", "list", "update"]
}

# Delete-by-version management: soft delete, undelete and destroy given versions.
path "secret/delete/byok/*" {
  capabilities = ["update"]
}

path "secret/undelete/byok/*" {
  capabilities = ["update"]
}

path "secret/destroy/byok/*" {
  capabilities = ["update"]
}

# Transit key lifecycle: read info, rotate, and set min_decryption_version /
# auto_rotate_period (after keyservice has rewrapped everything).
path "transit/keys/byok" {
  capabilities = ["read"]
}

path "transit/keys/byok/rotate" {
  capabilities = ["update"]
}

path "transit/keys/byok/config" {
  capabilities = ["update"]
}

# Audit: hash a value with an audit device's HMAC key to find it in the log, and
# list the devices (sys/audit is a root-protected path, hence sudo).
path "sys/audit-hash/*" {
  capabilities = ["update"]
}

path "sys/audit" {
  capabilities = ["read", "sudo"]
}

# Certificates from the intermediate CA: issue internal callers' (they reach the
# proxy, never a plaintext key; which orgs they may use is an admin's binding),
# list / read issued certificates, revoke any of them, and tidy expired ones.
path "pki_int/issue/caller" {
  capabilities = ["update"]
}

path "pki_int/certs" {
  capabilities = ["list"]
}

path "pki_int/cert/*" {
  capabilities = ["read"]
}

path "pki_int/revoke" {
  capabilities = ["update"]
}

path "pki_int/tidy" {
  capabilities = ["update"]
}

path "pki_int/tidy-status" {
  capabilities = ["read"]
}
