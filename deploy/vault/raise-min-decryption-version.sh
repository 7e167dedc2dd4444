#!/usr/bin/env bash
# Raise the byok transit key's min_decryption_version to N, but only when no byok
# secret is still encrypted under a version below N.
#
# After `vault write -f transit/keys/byok/rotate` and `byokctl rewrap`, raising
# min_decryption_version makes the old key versions unusable for decryption. If
# any stored ciphertext were still on an older version, that tenant's key could
# no longer be decrypted and its leases would fail. So this script FIRST asks
# keyservice (`byokctl --json keys list`: every credential, active or not) for
# each secret's transit_key_version, and refuses, naming the credentials, if any
# envelope-mode secret of this transit key is below N. Only then does it run
#   vault write transit/keys/byok/config min_decryption_version=N
#
# Usage: deploy/vault/raise-min-decryption-version.sh N
#
# Exit codes: 0 raised (or already at N); 1 refused: secrets below N (run
# `byokctl rewrap` first) or N above the key's latest version; 2 usage or a
# missing tool; 3 could not read the state (keyservice or Vault unreachable,
# permission denied): nothing was changed.
#
# Environment (defaults in brackets):
#   VAULT_BIN                   CLI to run; `bao` works too                 [vault]
#   VAULT_ADDR, VAULT_TOKEN     server and a token with the byok-operator policy (required)
#   TRANSIT_MOUNT, TRANSIT_KEY  the envelope-mode transit mount and key     [transit, byok]
#   BYOKCTL                     how to run byokctl (word-split)             [byokctl]
#   BYOK_KEYSERVICE_ADDR, BYOK_CLIENT_CERT, BYOK_CLIENT_KEY, BYOK_CA
#                               byokctl's connection (an admin certificate)
# Needs jq.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
usage() { echo "raise-min-decryption-version.sh: $*; usage: $0 N (see --help)" >&2; exit 2; }
[[ $# -eq 1 ]] || usage "expected exactly one argument"
[[ "$1" =~ ^[1-9][0-9]*$ ]] || usage "N must be a positive integer, got '$1'"
N="$1"

VAULT="${VAULT_BIN:-vault}"
TRANSIT_MOUNT="${TRANSIT_MOUNT:-transit}"
TRANSIT_KEY="${TRANSIT_KEY:-byok}"
read -r -a BYOKCTL_CMD <<<"${BYOKCTL:-byokctl}"
: "${VAULT_ADDR:?VAULT_ADDR must name the Vault/OpenBao server}"
: "${VAULT_TOKEN:?VAULT_TOKEN must hold a token with the byok-operator policy}"
export BAO_ADDR="$VAULT_ADDR" BAO_TOKEN="$VAULT_TOKEN"
command -v jq >/dev/null || usage "jq is required"
for name in TRANSIT_MOUNT TRANSIT_KEY; do
  [[ "${!name}" =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] || usage "$name='${!name}' is not a plain path name"
done
KEY_PATH="$TRANSIT_MOUNT/keys/$TRANSIT_KEY"
fail() { echo "raise-min-decryption-version.sh: $*" >&2; exit "${EXIT:-3}"; }

# 1. The key as Vault sees it.
key_json="$("$VAULT" read -format=json "$KEY_PATH")" || fail "cannot read $KEY_PATH (nothing changed)"
latest="$(jq -r '.data.latest_version' <<<"$key_json")"
current="$(jq -r '.data.min_decryption_version' <<<"$key_json")"
if (( N > latest )); then
  EXIT=1 fail "refusing: $KEY_PATH has no version $N (latest is $latest)"
fi
if (( N == current )); then
  echo "exists   $KEY_PATH min_decryption_version=$N (nothing to do)"
  exit 0
fi
if (( N < current )); then
  EXIT=1 fail "refusing: min_decryption_version is already $current; lowering it is not this script's job"
fi

# 2. Every secret keyservice knows, and the transit key version its ciphertext is on.
# (int64 fields are strings in protobuf's JSON mapping, hence tonumber.)
creds="$("${BYOKCTL_CMD[@]}" --json keys list)" || fail "byokctl keys list failed (nothing changed)"
below="$(jq -r --arg key "$TRANSIT_KEY" --argjson n "$N" '
  .[] | select(.secret_ref.transit_key == $key)
      | select((.secret_ref.transit_key_version | tonumber) < $n)
      | "\(.credential_id) org=\(.scope.org_id) transit_key_version=\(.secret_ref.transit_key_version)"
  ' <<<"$creds")"
if [[ -n "$below" ]]; then
  count="$(wc -l <<<"$below")"
  {
    echo "raise-min-decryption-version.sh: refusing: $count secret(s) still encrypted under a version below $N:"
    sed 's/^/  /' <<<"$below"
    echo "Run \`byokctl rewrap\` (it re-encrypts without reading plaintext), then run this again."
  } >&2
  exit 1
fi
checked="$(jq --arg key "$TRANSIT_KEY" '[.[] | select(.secret_ref.transit_key == $key)] | length' <<<"$creds")"

# 3. Safe: every envelope secret is on version >= N (new writes use the latest, which is >= N).
"$VAULT" write "$KEY_PATH/config" min_decryption_version="$N" >/dev/null \
  || fail "vault write $KEY_PATH/config failed"
echo "updated  $KEY_PATH min_decryption_version=$N ($checked envelope secrets checked, all on >= v$N)"
