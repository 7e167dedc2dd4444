#!/usr/bin/env bash
# Bootstrap Vault / OpenBao for byok: KV v2, transit key, PKI for the services'
# mTLS certificates, least-privilege policies, AppRole and Kubernetes auth, audit.
#
# Idempotent: every step first looks at what is there, then converges it, and
# prints one line: "created", "updated" (it existed but differed) or "exists"
# (already as wanted). "action" lines name something an operator must do by hand.
# A second run on a bootstrapped server prints only "exists" / "action".
#
# Usage: VAULT_ADDR=... VAULT_TOKEN=<admin token> deploy/vault/bootstrap.sh
#
# Environment (defaults in brackets):
#   VAULT_BIN                   CLI to run; `bao` works too            [vault]
#   VAULT_ADDR, VAULT_TOKEN     server and an admin token               (required)
#   KV_MOUNT                    KV v2 mount; an existing v2 mount is reused [secret]
#   BYOK_PREFIX                 path prefix of byok secrets in KV       [byok]
#   TRANSIT_MOUNT, TRANSIT_KEY  envelope-mode transit mount and key     [transit, byok]
#   TRANSIT_AUTO_ROTATE_PERIOD  e.g. 720h; unset = rotate by hand       []
#   PKI_MOUNT, PKI_INT_MOUNT    root and intermediate CA mounts         [pki, pki_int]
#   PKI_CERT_TTL, PKI_CERT_MAX_TTL  service certificate TTLs            [24h, 72h]
#   PKI_URL_BASE                Vault URL clients can reach, for the certs' AIA/CRL fields []
#   TRUST_DOMAIN                SPIFFE trust domain                     [byok.local]
#   POLICY_PREFIX               prefix of the policy names              [byok-]
#   APPROLE_MOUNT               AppRole auth mount                      [approle]
#   OUT_DIR                     where to write keyservice role_id / secret_id (0600) []
#   K8S_AUTH_MOUNT              Kubernetes auth mount                   [kubernetes]
#   K8S_NAMESPACE, K8S_SERVICE_ACCOUNT  keyservice's identity           [byok, byok-keyservice]
#   CALLER_K8S_NAMESPACES       namespaces whose service accounts may get caller certificates
#                               (spiffe://<trust domain>/ns/<ns>/sa/*), comma-separated; never byok's own []
#   K8S_HOST, K8S_CA_CERT       API server URL and CA file for auth/kubernetes/config []
#   K8S_TOKEN_REVIEWER_JWT_FILE, K8S_DISABLE_LOCAL_CA_JWT  same, when Vault runs outside the cluster []
#   AUDIT_FILE, AUDIT_PATH      file audit device path and name         [], [byok]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VAULT="${VAULT_BIN:-vault}"

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "bootstrap.sh: unexpected argument: $1 (see --help)" >&2
  exit 2
fi

: "${VAULT_ADDR:?VAULT_ADDR must name the Vault/OpenBao server}"
: "${VAULT_TOKEN:?VAULT_TOKEN must hold an admin token}"
# The bao CLI prefers BAO_*; keep both in step so VAULT_* always wins here.
export BAO_ADDR="$VAULT_ADDR" BAO_TOKEN="$VAULT_TOKEN"

KV_MOUNT="${KV_MOUNT:-secret}"
BYOK_PREFIX="${BYOK_PREFIX:-byok}"
TRANSIT_MOUNT="${TRANSIT_MOUNT:-transit}"
TRANSIT_KEY="${TRANSIT_KEY:-byok}"
TRANSIT_AUTO_ROTATE_PERIOD="${TRANSIT_AUTO_ROTATE_PERIOD:-}"
PKI_MOUNT="${PKI_MOUNT:-pki}"
PKI_INT_MOUNT="${PKI_INT_MOUNT:-pki_int}"
PKI_CERT_TTL="${PKI_CERT_TTL:-24h}"
PKI_CERT_MAX_TTL="${PKI_CERT_MAX_TTL:-72h}"
PKI_URL_BASE="${PKI_URL_BASE:-}"
TRUST_DOMAIN="${TRUST_DOMAIN:-byok.local}"
POLICY_PREFIX="${POLICY_PREFIX-byok-}"
APPROLE_MOUNT="${APPROLE_MOUNT:-approle}"
OUT_DIR="${OUT_DIR:-}"
K8S_AUTH_MOUNT="${K8S_AUTH_MOUNT:-kubernetes}"
K8S_NAMESPACE="${K8S_NAMESPACE:-byok}"
K8S_SERVICE_ACCOUNT="${K8S_SERVICE_ACCOUNT:-byok-keyservice}"
CALLER_K8S_NAMESPACES="${CALLER_K8S_NAMESPACES:-}"
K8S_HOST="${K8S_HOST:-}"
K8S_CA_CERT="${K8S_CA_CERT:-}"
K8S_TOKEN_REVIEWER_JWT_FILE="${K8S_TOKEN_REVIEWER_JWT_FILE:-}"
K8S_DISABLE_LOCAL_CA_JWT="${K8S_DISABLE_LOCAL_CA_JWT:-}"
AUDIT_FILE="${AUDIT_FILE:-}"
AUDIT_PATH="${AUDIT_PATH:-byok}"

KEYSERVICE_POLICY="${POLICY_PREFIX}keyservice"
SERVICE_TOKEN_TTL=1h
SERVICE_TOKEN_MAX_TTL=4h

# Servers' stderr (warnings, errors) goes here and is shown only when a step fails.
ERRLOG="$(mktemp)"
trap 'rm -f "$ERRLOG"' EXIT

v() { "$VAULT" "$@"; }
die() { echo "bootstrap.sh: $*" >&2; exit 1; }
report() { printf '%-8s %s\n' "$1" "$2"; }

# Names end up in policy paths and sed expressions: accept plain path segments only.
for name in KV_MOUNT BYOK_PREFIX TRANSIT_MOUNT TRANSIT_KEY PKI_MOUNT PKI_INT_MOUNT \
            POLICY_PREFIX APPROLE_MOUNT K8S_AUTH_MOUNT AUDIT_PATH TRUST_DOMAIN; do
  value="${!name}"
  [[ -z "$value" && "$name" == POLICY_PREFIX ]] && continue
  [[ "$value" =~ ^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$ ]] || die "$name='$value' is not a plain path name"
done
# Caller certificates for byok's own namespace would carry the proxy's or keyservice's identity
# (spiffe://<td>/ns/<byok ns>/sa/<release>-proxyservice): a caller could then lease plaintext keys.
caller_uris=""
IFS=',' read -r -a caller_namespaces <<<"$CALLER_K8S_NAMESPACES"
for ns in "${caller_namespaces[@]}"; do
  [[ "$ns" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ ]] || die "CALLER_K8S_NAMESPACES: '$ns' is not a Kubernetes namespace name"
  [[ "$ns" != "$K8S_NAMESPACE" ]] || \
    die "CALLER_K8S_NAMESPACES must not contain byok's own namespace '$K8S_NAMESPACE' (callers there could take the proxy's identity)"
  caller_uris="${caller_uris:+$caller_uris,}spiffe://$TRUST_DOMAIN/ns/$ns/sa/*"
done

# table_has TABLE KEY=VALUE...: does `vault read` table output already show these
# values? A fast path only (each CLI call costs a process start): lists are compared
# as the CLI prints them ("a,b" -> "[a b]"), @file values are never matched, and a
# miss just falls through to write-and-compare, which decides correctly.
table_has() {
  local table="$1" arg key want have
  shift
  for arg in "$@"; do
    key="${arg%%=*}" want="${arg#*=}"
    [[ "$want" == @* ]] && return 1
    have="$(awk -v k="$key" '$1 == k { sub(/^[^ ]+ +/, ""); print; exit }' <<<"$table")"
    [[ "$have" == "[${want//,/ }]" || "$have" == "$want" ]] || return 1
  done
}

# write_converge WHAT READ_PATH WRITE_PATH ARGS...: write, and classify by comparing
# the readable state before and after (no jq needed, works on Vault and OpenBao).
write_converge() {
  local what="$1" read_path="$2" write_path="$3" before after
  shift 3
  before="$(v read "$read_path" 2>/dev/null || true)"
  if [[ -n "$before" ]] && table_has "$before" "$@"; then report exists "$what"; return; fi
  v write "$write_path" "$@" >/dev/null 2>"$ERRLOG" || die "$what: $(cat "$ERRLOG")"
  if [[ -z "$before" ]]; then report created "$what"; return; fi
  after="$(v read "$read_path")"
  if [[ "$before" == "$after" ]]; then report exists "$what"; else report updated "$what"; fi
}

# ensure_engine KIND PATH TYPE [enable flags...]: KIND is "secrets" or "auth".
ensure_engine() {
  local kind="$1" path="$2" type="$3" sys current mount
  shift 3
  if [[ "$kind" == secrets ]]; then sys=sys/mounts; else sys=sys/auth; fi
  # One read gives both the type and the options (KV version), in table form.
  mount="$(v read "$sys/$path" 2>/dev/null || true)"
  current="$(awk '$1 == "type" {print $2}' <<<"$mount")"
  MOUNT_OPTIONS="$(awk '$1 == "options" {print $2}' <<<"$mount")"
  if [[ -z "$current" ]]; then
    v "$kind" enable -path="$path" "$@" "$type" >/dev/null
    [[ "$type" != kv ]] || MOUNT_OPTIONS="$(v read "$sys/$path" | awk '$1 == "options" {print $2}')"
    report created "$kind engine $path/ ($type)"
  elif [[ "$current" != "$type" ]]; then
    die "$path/ is already mounted as '$current', not '$type'; choose another path"
  else
    report exists "$kind engine $path/ ($type)"
  fi
}

# render_policy FILE: the policy with this deployment's mount, prefix and key names.
render_policy() {
  sed -e "s#^path \"secret/\\(data\\|metadata\\|delete\\|undelete\\|destroy\\)/byok/#path \"${KV_MOUNT}/\\1/${BYOK_PREFIX}/#" \
      -e "s#^path \"transit/\\(encrypt\\|decrypt\\|rewrap\\|keys\\)/byok\\([\"/]\\)#path \"${TRANSIT_MOUNT}/\\1/${TRANSIT_KEY}\\2#" \
      -e "s#^path \"pki_int/#path \"${PKI_INT_MOUNT}/#" \
      "$1"
}

ensure_policy() {
  local name="$1" file="$2" wanted current
  wanted="$(render_policy "$file")"
  current="$(v policy read "$name" 2>/dev/null || true)"
  if [[ "$current" == "$wanted" ]]; then
    report exists "policy $name"
    return
  fi
  printf '%s\n' "$wanted" | v policy write "$name" - >/dev/null
  if [[ -z "$current" ]]; then report created "policy $name"; else report updated "policy $name"; fi
}

# --- KV v2 -------------------------------------------------------------------
ensure_engine secrets "$KV_MOUNT" kv -version=2
if [[ "$MOUNT_OPTIONS" != *"version:2"* ]]; then
  # Upgrading in place (vault kv enable-versioning) changes the API under other users' feet.
  die "$KV_MOUNT/ is KV version 1; byok needs KV v2: use another KV_MOUNT or upgrade it deliberately"
fi

# --- transit (envelope mode) ---------------------------------------------------
ensure_engine secrets "$TRANSIT_MOUNT" transit
derived="$(v read -field=derived "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" 2>/dev/null || true)"
if [[ -z "$derived" ]]; then
  # derived: each org gets its own data key (context = org id); never exportable.
  v write -f "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" derived=true type=aes256-gcm96 >/dev/null
  report created "transit key $TRANSIT_MOUNT/keys/$TRANSIT_KEY (derived)"
elif [[ "$derived" != true ]]; then
  die "transit key $TRANSIT_MOUNT/keys/$TRANSIT_KEY exists but is not derived; use another TRANSIT_KEY"
else
  report exists "transit key $TRANSIT_MOUNT/keys/$TRANSIT_KEY (derived)"
fi
if [[ -n "$TRANSIT_AUTO_ROTATE_PERIOD" ]]; then
  write_converge "transit key auto_rotate_period=$TRANSIT_AUTO_ROTATE_PERIOD" \
    "$TRANSIT_MOUNT/keys/$TRANSIT_KEY" "$TRANSIT_MOUNT/keys/$TRANSIT_KEY/config" \
    auto_rotate_period="$TRANSIT_AUTO_ROTATE_PERIOD"
fi

# --- PKI: root CA, intermediate CA, one role per service identity --------------
ensure_engine secrets "$PKI_MOUNT" pki -max-lease-ttl=87600h
if v read -field=certificate "$PKI_MOUNT/cert/ca" >/dev/null 2>&1; then
  report exists "root CA in $PKI_MOUNT/"
else
  v write -field=certificate "$PKI_MOUNT/root/generate/internal" \
    common_name="byok root CA ($TRUST_DOMAIN)" issuer_name=byok-root ttl=87600h \
    key_type=ec key_bits=384 >/dev/null 2>"$ERRLOG" || die "root CA: $(cat "$ERRLOG")"
  report created "root CA in $PKI_MOUNT/"
fi
if [[ -n "$PKI_URL_BASE" ]]; then
  write_converge "$PKI_MOUNT/ AIA and CRL URLs" "$PKI_MOUNT/config/urls" "$PKI_MOUNT/config/urls" \
    issuing_certificates="$PKI_URL_BASE/v1/$PKI_MOUNT/ca" \
    crl_distribution_points="$PKI_URL_BASE/v1/$PKI_MOUNT/crl"
fi

ensure_engine secrets "$PKI_INT_MOUNT" pki -max-lease-ttl=43800h
if v read -field=certificate "$PKI_INT_MOUNT/cert/ca" >/dev/null 2>&1; then
  report exists "intermediate CA in $PKI_INT_MOUNT/ (signed by $PKI_MOUNT/)"
else
  # CSR and signed certificate go through pipes (stdin "-"), never through argv.
  v write -field=csr "$PKI_INT_MOUNT/intermediate/generate/internal" \
      common_name="byok intermediate CA ($TRUST_DOMAIN)" key_type=ec key_bits=256 2>"$ERRLOG" \
    | v write -field=certificate "$PKI_MOUNT/root/sign-intermediate" csr=- format=pem_bundle \
      ttl=43800h 2>>"$ERRLOG" \
    | v write "$PKI_INT_MOUNT/intermediate/set-signed" certificate=- >/dev/null 2>>"$ERRLOG" \
    || die "intermediate CA in $PKI_INT_MOUNT/: $(cat "$ERRLOG")"
  report created "intermediate CA in $PKI_INT_MOUNT/ (signed by $PKI_MOUNT/)"
fi
if [[ -n "$PKI_URL_BASE" ]]; then
  write_converge "$PKI_INT_MOUNT/ AIA and CRL URLs" "$PKI_INT_MOUNT/config/urls" "$PKI_INT_MOUNT/config/urls" \
    issuing_certificates="$PKI_URL_BASE/v1/$PKI_INT_MOUNT/ca" \
    crl_distribution_points="$PKI_URL_BASE/v1/$PKI_INT_MOUNT/crl"
fi

# pki_role NAME SERVER CLIENT DOMAINS: certificates carry the SPIFFE id as URI SAN
# (spiffe://<trust domain>/<name>, or .../<name>/<instance> for admins and callers),
# which is the identity the services authorise on. Workloads deployed by the Helm chart carry the
# Kubernetes form spiffe://<trust domain>/ns/<namespace>/sa/<service account> instead (EXTRA_URIS).
pki_role() {
  local name="$1" server="$2" client="$3" domains="$4" subdomains="$5" extra_uris="${6:-}"
  write_converge "pki role $PKI_INT_MOUNT/roles/$name (spiffe://$TRUST_DOMAIN/$name)" \
    "$PKI_INT_MOUNT/roles/$name" "$PKI_INT_MOUNT/roles/$name" \
    allowed_domains="$domains" allow_bare_domains=true allow_glob_domains=true \
    allow_subdomains="$subdomains" allow_localhost="$server" allow_ip_sans="$server" \
    allowed_uri_sans="spiffe://$TRUST_DOMAIN/$name,spiffe://$TRUST_DOMAIN/$name/*${extra_uris:+,$extra_uris}" \
    enforce_hostnames=true server_flag="$server" client_flag="$client" \
    key_type=ec key_bits=256 ttl="$PKI_CERT_TTL" max_ttl="$PKI_CERT_MAX_TTL"
}
# Servers also answer to their in-cluster DNS names (helm prefixes the release name).
svc_domains() {
  local s="$1" ns="$K8S_NAMESPACE"
  echo "$s,$s.$ns.svc,$s.$ns.svc.cluster.local,*-$s,*-$s.$ns.svc,*-$s.$ns.svc.cluster.local,localhost"
}
pki_role keyservice true false "$(svc_domains keyservice)" false \
  "spiffe://$TRUST_DOMAIN/ns/$K8S_NAMESPACE/sa/*keyservice"
pki_role proxyservice true true "$(svc_domains proxyservice)" true \
  "spiffe://$TRUST_DOMAIN/ns/$K8S_NAMESPACE/sa/*proxyservice"
pki_role admin false true admin true
pki_role caller false true caller true "$caller_uris"

# --- policies ------------------------------------------------------------------
# proxyservice has none on purpose: it never talks to Vault.
for policy in keyservice operator breakglass ops-import pki-issuer; do
  ensure_policy "${POLICY_PREFIX}${policy}" "$HERE/policies/$policy.hcl"
done

# --- AppRole: keyservice outside Kubernetes --------------------------------------
ensure_engine auth "$APPROLE_MOUNT" approle
approle_role="auth/$APPROLE_MOUNT/role/keyservice"
write_converge "approle role $APPROLE_MOUNT/keyservice -> $KEYSERVICE_POLICY" "$approle_role" "$approle_role" \
  token_policies="$KEYSERVICE_POLICY" token_no_default_policy=true \
  token_ttl="$SERVICE_TOKEN_TTL" token_max_ttl="$SERVICE_TOKEN_MAX_TTL"
if [[ -n "$OUT_DIR" ]]; then
  mkdir -p "$OUT_DIR"
  chmod 0700 "$OUT_DIR"
  umask 077
  role_id_file="$OUT_DIR/keyservice-role-id"
  secret_id_file="$OUT_DIR/keyservice-secret-id"
  role_id="$(v read -field=role_id "$approle_role/role-id")"
  if [[ -f "$role_id_file" && "$(cat "$role_id_file")" == "$role_id" ]]; then
    report exists "approle role_id in $role_id_file"
  else
    printf '%s' "$role_id" >"$role_id_file"
    report created "approle role_id in $role_id_file"
  fi
  chmod 0600 "$role_id_file"
  # Reuse a still-valid secret_id rather than minting one per run. The secret goes
  # from file to server via @file and from server to file via a redirect: never
  # through argv, a shell variable or stdout.
  accessor=""
  if [[ -s "$secret_id_file" ]]; then
    accessor="$(v write -field=secret_id_accessor "$approle_role/secret-id/lookup" \
      secret_id=@"$secret_id_file" 2>/dev/null || true)"
  fi
  if [[ "$accessor" =~ ^[0-9a-f-]{36}$ ]]; then
    report exists "approle secret_id in $secret_id_file"
  else
    v write -f -field=secret_id "$approle_role/secret-id" >"$secret_id_file"
    report created "approle secret_id in $secret_id_file"
  fi
  chmod 0600 "$secret_id_file"
else
  report action "approle role_id not written (OUT_DIR unset): $VAULT read -field=role_id $approle_role/role-id"
  report action "approle secret_id not written (OUT_DIR unset): $VAULT write -f -field=secret_id $approle_role/secret-id > keyservice-secret-id"
fi

# --- Kubernetes auth: keyservice's service account -------------------------------
ensure_engine auth "$K8S_AUTH_MOUNT" kubernetes
k8s_role="auth/$K8S_AUTH_MOUNT/role/byok-keyservice"
write_converge "kubernetes role $K8S_AUTH_MOUNT/byok-keyservice ($K8S_NAMESPACE/$K8S_SERVICE_ACCOUNT) -> $KEYSERVICE_POLICY" \
  "$k8s_role" "$k8s_role" \
  bound_service_account_names="$K8S_SERVICE_ACCOUNT" bound_service_account_namespaces="$K8S_NAMESPACE" \
  token_policies="$KEYSERVICE_POLICY" token_no_default_policy=true \
  token_ttl="$SERVICE_TOKEN_TTL" token_max_ttl="$SERVICE_TOKEN_MAX_TTL"
if [[ -n "$K8S_HOST" ]]; then
  k8s_args=(kubernetes_host="$K8S_HOST")
  # Vault outside the cluster cannot fall back to the pod's CA file: give K8S_CA_CERT
  # (and a reviewer JWT, or let client JWTs review themselves: system:auth-delegator).
  [[ -n "$K8S_CA_CERT" ]] && k8s_args+=(kubernetes_ca_cert=@"$K8S_CA_CERT")
  [[ -n "$K8S_TOKEN_REVIEWER_JWT_FILE" ]] && k8s_args+=(token_reviewer_jwt=@"$K8S_TOKEN_REVIEWER_JWT_FILE")
  [[ -n "$K8S_DISABLE_LOCAL_CA_JWT" ]] && k8s_args+=(disable_local_ca_jwt="$K8S_DISABLE_LOCAL_CA_JWT")
  write_converge "kubernetes auth config ($K8S_HOST)" "auth/$K8S_AUTH_MOUNT/config" \
    "auth/$K8S_AUTH_MOUNT/config" "${k8s_args[@]}"
elif v read "auth/$K8S_AUTH_MOUNT/config" >/dev/null 2>&1; then
  report exists "kubernetes auth config"
else
  report action "kubernetes auth config missing: set K8S_HOST (and K8S_CA_CERT) and re-run, or: $VAULT write auth/$K8S_AUTH_MOUNT/config kubernetes_host=https://<api-server>"
fi

# --- audit -------------------------------------------------------------------------
if v audit list 2>/dev/null | grep -q "^$AUDIT_PATH/ "; then
  report exists "audit device $AUDIT_PATH/"
elif [[ -z "$AUDIT_FILE" ]]; then
  report action "no audit device $AUDIT_PATH/: set AUDIT_FILE (Vault) or declare it in the server config (OpenBao 2.x, see $HERE/openbao-audit.hcl)"
elif out="$(v audit enable -path="$AUDIT_PATH" file file_path="$AUDIT_FILE" 2>&1)"; then
  report created "audit device $AUDIT_PATH/ -> $AUDIT_FILE"
elif grep -qi -e "declarative" -e "cannot enable audit device via api" <<<"$out"; then
  # OpenBao 2.x refuses API-enabled audit devices (unsafe_allow_api_audit_creation=false).
  report action "audit device refused by the server (OpenBao 2.x: declare it in the server config, see $HERE/openbao-audit.hcl)"
else
  die "enabling audit device $AUDIT_PATH/ failed: $out"
fi
