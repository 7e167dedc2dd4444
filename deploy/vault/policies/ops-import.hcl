# ops-import: hand tenants' existing keys to byok without being able to read them.
#
# Write-only: create and update secrets under byok/imports/, then register the
# path with keyservice (RegisterExistingSecret). No read, so a leaked import
# token cannot be used to read back what it wrote, or anything else.
#
# deploy/vault/bootstrap.sh renders this file for non-default mount and prefix
# names (see keyservice.hcl).

path "secret/data/byok/imports/*" {
  capabilities = ["create", "update"]
}
