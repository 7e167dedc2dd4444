# pki-issuer: issues and signs the services' and admins' certificates.
#
# A proxyservice certificate leases decrypted provider keys from keyservice, and
# an admin certificate manages every tenant's credentials: whoever holds this
# policy holds the keys, as breakglass does. Give it to cert-manager's Vault
# issuer (it signs CSRs: pki_int/sign/<role>) or to the security team, never to
# day-to-day operators (operator.hcl issues callers' certificates only).
#
# deploy/vault/bootstrap.sh renders this file for a non-default PKI mount.

path "pki_int/issue/keyservice" {
  capabilities = ["update"]
}

path "pki_int/issue/proxyservice" {
  capabilities = ["update"]
}

path "pki_int/issue/admin" {
  capabilities = ["update"]
}

path "pki_int/issue/caller" {
  capabilities = ["update"]
}

path "pki_int/sign/keyservice" {
  capabilities = ["update"]
}

path "pki_int/sign/proxyservice" {
  capabilities = ["update"]
}

path "pki_int/sign/admin" {
  capabilities = ["update"]
}

path "pki_int/sign/caller" {
  capabilities = ["update"]
}
