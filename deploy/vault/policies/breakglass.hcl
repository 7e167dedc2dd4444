# breakglass: emergency read of the plaintext, for recovery only.
#
# Reads credential secrets and decrypts envelope ciphertext; nothing else. Never
# attach this policy to a long-lived token or to a service role: mint short-TTL,
# non-renewable tokens on demand, with audit devices enabled, and (Vault
# Enterprise) a control group requiring a second approver. See docs/vault.md.
#
# deploy/vault/bootstrap.sh renders this file for non-default mount, prefix and
# key names (see keyservice.hcl).

path "secret/data/byok/*" {
  capabilities = ["read"]
}

path "secret/metadata/byok/*" {
  capabilities = ["read", "list"]
}

path "transit/decrypt/byok" {
  capabilities = ["update"]
}
