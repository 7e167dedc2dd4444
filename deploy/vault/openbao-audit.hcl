# OpenBao 2.x server configuration snippet: the byok file audit device.
#
# OpenBao refuses to create audit devices through the API by default
# (unsafe_allow_api_audit_creation = false), so `bao audit enable` fails and
# deploy/vault/bootstrap.sh prints a pointer here. Add this stanza to the server's
# HCL configuration (next to `listener` and `storage`), on every node, and restart
# or send SIGHUP. The device then shows in `bao audit list` as byok/, which the
# bootstrap reports as "exists". HashiCorp Vault has no such stanza: there, run
# the bootstrap with AUDIT_FILE set and it enables the device through the API.

audit "file" "byok" {
  description = "byok: every request and response, values HMAC'd"
  options {
    file_path = "/var/log/openbao/audit-byok.log"
    # log_raw must stay false (the default): raw logs would contain tenants' keys.
    log_raw = "false"
  }
}
