{{/*
Shared named templates. Every define is prefixed `byok.`; the ones taking a component are called with
(dict "ctx" $ "component" "keyservice"|"proxyservice"|"migrate"|"test").
*/}}

{{/* Chart name, overridable. */}}
{{- define "byok.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource name prefix: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "byok.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's resources: <fullname>-<component>. */}}
{{- define "byok.componentName" -}}
{{- printf "%s-%s" (include "byok.fullname" .ctx | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{/* Chart label value. */}}
{{- define "byok.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels selecting a component's pods (stable across upgrades: never add a changing value here). */}}
{{- define "byok.selectorLabels" -}}
app.kubernetes.io/name: {{ include "byok.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Labels selecting every pod of the release (the default-deny NetworkPolicy uses them). */}}
{{- define "byok.releaseSelectorLabels" -}}
app.kubernetes.io/name: {{ include "byok.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Full label set of a component's resources. */}}
{{- define "byok.labels" -}}
helm.sh/chart: {{ include "byok.chart" .ctx }}
{{ include "byok.selectorLabels" . }}
app.kubernetes.io/part-of: byok
{{- with .ctx.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The image reference; a digest pins it. */}}
{{- define "byok.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* ServiceAccount name of keyservice or proxyservice (part of its SPIFFE ID). */}}
{{- define "byok.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" }}
{{- if $sa.create }}
{{- default (include "byok.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* SPIFFE ID of keyservice or proxyservice. */}}
{{- define "byok.spiffeId" -}}
{{- printf "spiffe://%s/ns/%s/sa/%s" .ctx.Values.trustDomain .ctx.Release.Namespace (include "byok.serviceAccountName" .) }}
{{- end }}

{{/* In-cluster DNS name of keyservice's Service: the TLS server name proxyservice checks. */}}
{{- define "byok.keyservice.host" -}}
{{- printf "%s.%s.svc" (include "byok.componentName" (dict "ctx" . "component" "keyservice")) .Release.Namespace }}
{{- end }}

{{/* keyservice's headless Service (one DNS record per ready pod) and the gRPC target proxyservice dials with it:
dns:/// so that gRPC resolves every replica and balances over them (round_robin, proxyservice/keyclient.py). */}}
{{- define "byok.keyservice.headlessName" -}}
{{- printf "%s-headless" (include "byok.componentName" (dict "ctx" . "component" "keyservice")) }}
{{- end }}

{{- define "byok.keyservice.target" -}}
{{- printf "dns:///%s.%s.svc:8443" (include "byok.keyservice.headlessName" .) .Release.Namespace }}
{{- end }}

{{/* Name of the Secret holding a component's certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "byok.tlsSecretName" -}}
{{- if eq .ctx.Values.tls.mode "existingSecret" }}
{{- required (printf "tls.existingSecret.%s is required when tls.mode=existingSecret" .component) (index .ctx.Values.tls.existingSecret .component) }}
{{- else }}
{{- printf "%s-tls" (include "byok.componentName" .) }}
{{- end }}
{{- end }}

{{/* BYOK_ROLES: this release's proxyservice gets `proxy`, configured identities `proxy` or `admin`. */}}
{{- define "byok.keyservice.roles" -}}
{{- $roles := list (printf "%s=proxy" (include "byok.spiffeId" (dict "ctx" . "component" "proxyservice"))) }}
{{- range .Values.keyservice.roles.proxies }}
{{- $roles = append $roles (printf "%s=proxy" .) }}
{{- end }}
{{- range .Values.keyservice.roles.admins }}
{{- $roles = append $roles (printf "%s=admin" .) }}
{{- end }}
{{- join "," $roles }}
{{- end }}

{{/* Pod-level security context: Pod Security Standard "restricted". */}}
{{- define "byok.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: Pod Security Standard "restricted", read-only root. */}}
{{- define "byok.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Topology spread: the configured list, or zones then nodes (ScheduleAnyway: never blocks scheduling). */}}
{{- define "byok.topologySpreadConstraints" -}}
{{- $values := index .ctx.Values .component }}
{{- if kindIs "slice" $values.topologySpreadConstraints }}
{{- with $values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- else }}
topologySpreadConstraints:
  {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "byok.selectorLabels" $ | trim | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
  {{- end }}
{{- end }}
{{- end }}

{{/* Scheduling fields shared by the Deployments. */}}
{{- define "byok.scheduling" -}}
{{- $values := index .ctx.Values .component }}
{{- with $values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "byok.topologySpreadConstraints" . }}
{{- end }}

{{/* imagePullSecrets of every pod. */}}
{{- define "byok.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/* The three ports of both services. */}}
{{- define "byok.containerPorts" -}}
- name: grpc
  containerPort: 8443
  protocol: TCP
- name: health
  containerPort: 8081
  protocol: TCP
- name: metrics
  containerPort: 9090
  protocol: TCP
{{- end }}

{{/* Native gRPC probes on the plaintext health port (kubelet cannot present a client certificate). */}}
{{/* Probes on the plaintext health port. Liveness asks for the whole server (""); readiness asks for the
service, which keyservice marks NOT_SERVING while Vault or the database is down, proxyservice until both its
gRPC and its HTTPS front listen (the front's mTLS port cannot be probed by the kubelet either), and both mark
NOT_SERVING when they start draining on SIGTERM. Called with (dict "ctx" . "component" "keyservice"|"proxyservice"). */}}
{{- define "byok.probes" -}}
startupProbe:
  grpc:
    port: 8081
  periodSeconds: 2
  failureThreshold: 60
readinessProbe:
  grpc:
    port: 8081
    service: {{ ternary "byok.keys.v1.KeyService" "byok.proxy.v1.ChatService" (eq .component "keyservice") }}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
livenessProbe:
  grpc:
    port: 8081
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
{{- end }}

{{/* Listen addresses, TLS files and logging: the runtime contract shared by both services. */}}
{{- define "byok.commonConfig" -}}
BYOK_GRPC_ADDR: "0.0.0.0:8443"
BYOK_HEALTH_ADDR: "0.0.0.0:8081"
BYOK_METRICS_ADDR: "0.0.0.0:9090"
BYOK_TLS_CERT: /etc/byok/tls/tls.crt
BYOK_TLS_KEY: /etc/byok/tls/tls.key
BYOK_TLS_CA: /etc/byok/tls/ca.crt
BYOK_LOG_LEVEL: {{ .Values.logLevel | quote }}
{{- with .Values.apiBaseAllowlist }}
BYOK_API_BASE_ALLOWLIST: {{ join "," . | quote }}
{{- end }}
{{- end }}

{{/* proxyservice's HTTPS front (mutual TLS with the gRPC port's certificate and CA): listening on every address at
proxyservice.http.port, or BYOK_HTTP_ADDR="" (no front) when disabled. */}}
{{- define "byok.proxyservice.httpConfig" -}}
{{- $h := .Values.proxyservice.http }}
{{- if $h.enabled }}
BYOK_HTTP_ADDR: {{ printf "0.0.0.0:%d" (int $h.port) | quote }}
BYOK_HTTP_MAX_BODY_BYTES: {{ $h.maxBodyBytes | int64 | toString | quote }}
BYOK_HTTP_PATH_ALLOWLIST: {{ include "byok.proxyservice.pathAllowlist" . | quote }}
{{- else }}
BYOK_HTTP_ADDR: ""
{{- end }}
{{- end }}

{{/* proxyservice's traces (docs/tracing.md): the collector and the sampling ratio, and the files the headers Secret and
the collector's CA are mounted at; nothing when tracing is off (no endpoint). */}}
{{- define "byok.proxyservice.tracingConfig" -}}
{{- $t := .Values.proxyservice.tracing }}
{{- if $t.otlpEndpoint }}
BYOK_OTLP_ENDPOINT: {{ $t.otlpEndpoint | quote }}
BYOK_TRACE_SAMPLE_RATIO: {{ $t.sampleRatio | toString | quote }}
{{- if $t.headers.secretName }}
BYOK_OTLP_HEADERS_FILE: /etc/byok/otlp-headers/headers
{{- end }}
{{- if or $t.caCert.secretName $t.caCert.configMapName }}
OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: {{ printf "/etc/byok/otlp-ca/%s" $t.caCert.key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* proxyservice's volumes for traces: the export headers (a Secret, as a file: never in the environment) and the
collector's CA; mounts with "mounts" true, volumes otherwise. */}}
{{- define "byok.proxyservice.tracingVolumes" -}}
{{- $t := .ctx.Values.proxyservice.tracing }}
{{- if $t.otlpEndpoint }}
{{- if $t.headers.secretName }}
{{- if .mounts }}
- name: otlp-headers
  mountPath: /etc/byok/otlp-headers
  readOnly: true
{{- else }}
- name: otlp-headers
  secret:
    secretName: {{ $t.headers.secretName }}
    defaultMode: 0440
    items:
      - key: {{ $t.headers.key }}
        path: headers
{{- end }}
{{- end }}
{{- if or $t.caCert.secretName $t.caCert.configMapName }}
{{- if .mounts }}
- name: otlp-ca
  mountPath: /etc/byok/otlp-ca
  readOnly: true
{{- else }}
- name: otlp-ca
  {{- if $t.caCert.secretName }}
  secret:
    secretName: {{ $t.caCert.secretName }}
  {{- else }}
  configMap:
    name: {{ $t.caCert.configMapName }}
  {{- end }}
    defaultMode: 0444
    items:
      - key: {{ $t.caCert.key }}
        path: {{ $t.caCert.key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* BYOK_HTTP_PATH_ALLOWLIST from the map provider → patterns: `anthropic=/v1/messages*;openai=/a,/b*` (providers
in name order); the empty map gives "" (every path under each provider's root). */}}
{{- define "byok.proxyservice.pathAllowlist" -}}
{{- $rules := list }}
{{- range $provider, $patterns := .Values.proxyservice.http.pathAllowlist }}
{{- $rules = append $rules (printf "%s=%s" $provider (join "," $patterns)) }}
{{- end }}
{{- join ";" $rules }}
{{- end }}

{{/* keyservice's database URL: a literal for SQLite, a Secret reference for PostgreSQL. */}}
{{- define "byok.databaseEnv" -}}
{{- if eq .Values.database.type "postgresql" }}
- name: BYOK_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.postgresql.existingSecret is required when database.type=postgresql" .Values.database.postgresql.existingSecret }}
      key: {{ .Values.database.postgresql.key }}
{{- else }}
- name: BYOK_DATABASE_URL
  value: sqlite:////var/lib/byok/keyservice.db
{{- end }}
{{- end }}

{{/* PodDisruptionBudget spec that never blocks a drain. */}}
{{- define "byok.pdbSpec" -}}
{{- $values := index .ctx.Values .component }}
{{- $replicas := int $values.replicas }}
{{- if and (eq .component "proxyservice") $values.autoscaling.enabled }}
{{- $replicas = int $values.autoscaling.minReplicas }}
{{- end }}
{{- if not (kindIs "invalid" $values.pdb.minAvailable) }}
{{- $min := int $values.pdb.minAvailable }}
{{- if or (le $replicas 1) (ge $min $replicas) }}
{{- fail (printf "%s.pdb.minAvailable=%d would block node drains with %d replica(s): it needs 1 < replicas and minAvailable < replicas (or use maxUnavailable)" .component $min $replicas) }}
{{- end }}
minAvailable: {{ $min }}
{{- else }}
maxUnavailable: {{ $values.pdb.maxUnavailable }}
{{- end }}
selector:
  matchLabels:
    {{- include "byok.selectorLabels" . | trim | nindent 4 }}
{{- end }}

{{/* Checks the schema cannot express, run by every Deployment template. */}}
{{/* Shutdown settings of a component: drain (NOT_SERVING while still serving, so endpoints are removed
before anything is refused), then the grace in-flight RPCs get; together they fit in the pod's
terminationGracePeriodSeconds with 5 seconds to spare. */}}
{{- define "byok.shutdownConfig" -}}
{{- $c := index .ctx.Values .component }}
BYOK_SHUTDOWN_DRAIN_SECONDS: {{ $c.shutdownDrainSeconds | quote }}
BYOK_SHUTDOWN_GRACE_SECONDS: {{ sub (sub (int $c.terminationGracePeriodSeconds) (int $c.shutdownDrainSeconds)) 5 | quote }}
{{- end }}

{{- define "byok.validate" -}}
{{- range $component := list "keyservice" "proxyservice" }}
{{- $c := index $.Values $component }}
{{- if lt (int $c.terminationGracePeriodSeconds) (add (int $c.shutdownDrainSeconds) 6) }}
{{- fail (printf "%s.terminationGracePeriodSeconds must be at least %s.shutdownDrainSeconds + 6 (drain, at least 1 s of grace, 5 s to spare)" $component $component) }}
{{- end }}
{{- end }}
{{- if and .Values.proxyservice.http.enabled (has (int .Values.proxyservice.http.port) (list 8443 8081 9090)) }}
{{- fail (printf "proxyservice.http.port=%d is taken: the gRPC (8443), health (8081) and metrics (9090) ports are fixed" (int .Values.proxyservice.http.port)) }}
{{- end }}
{{- if and (eq .Values.database.type "sqlite") (gt (int .Values.keyservice.replicas) 1) }}
{{- fail "keyservice.replicas > 1 needs database.type=postgresql: SQLite on a ReadWriteOnce volume serves a single replica" }}
{{- end }}
{{- if eq .Values.vault.auth.method "token" }}
{{- $_ := required "vault.auth.token.secretName is required when vault.auth.method=token" .Values.vault.auth.token.secretName }}
{{- end }}
{{- if eq .Values.vault.auth.method "approle" }}
{{- $_ := required "vault.auth.approle.secretName is required when vault.auth.method=approle" .Values.vault.auth.approle.secretName }}
{{- end }}
{{- if eq .Values.tls.mode "certManager" }}
{{- $_ := required "tls.certManager.issuerRef.name is required when tls.mode=certManager" .Values.tls.certManager.issuerRef.name }}
{{- end }}
{{- if and .Values.keyservice.prices.entries .Values.keyservice.prices.existingConfigMap.name }}
{{- fail "keyservice.prices: give entries or existingConfigMap.name, not both" }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding keyservice's price file (ops' existing one, or the chart's from entries); empty: none. */}}
{{- define "byok.keyservice.pricesConfigMap" -}}
{{- if .Values.keyservice.prices.existingConfigMap.name }}
{{- .Values.keyservice.prices.existingConfigMap.name }}
{{- else if .Values.keyservice.prices.entries }}
{{- printf "%s-prices" (include "byok.componentName" (dict "ctx" . "component" "keyservice")) }}
{{- end }}
{{- end }}

{{/* NetworkPolicy `to`/`from` entries from CIDRs (minus `except`) and NetworkPolicyPeers; empty when both are. */}}
{{- define "byok.networkPolicyPeers" -}}
{{- $except := .except | default list }}
{{- range .cidrs }}
- ipBlock:
    cidr: {{ . }}
    {{- with $except }}
    except:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}
{{- with .peers }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* NetworkPolicy ports entries (TCP) from a list of numbers. */}}
{{- define "byok.networkPolicyPorts" -}}
{{- range . }}
- protocol: TCP
  port: {{ . }}
{{- end }}
{{- end }}

{{/* Egress rule to the cluster DNS. */}}
{{- define "byok.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    {{- range .Values.networkPolicy.dns.ports }}
    - protocol: UDP
      port: {{ . }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
{{- end }}

{{/* Egress rule to PostgreSQL (keyservice and the migration Job). */}}
{{- define "byok.databaseEgress" -}}
{{- $db := .Values.networkPolicy.database }}
{{- $to := include "byok.networkPolicyPeers" (dict "cidrs" $db.cidrs "peers" $db.peers) | trim }}
- ports:
    {{- include "byok.networkPolicyPorts" $db.ports | trim | nindent 4 }}
  {{- if $to }}
  to:
    {{- $to | trim | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Egress rule to the LLM providers (proxyservice; keyservice to verify keys). */}}
{{- define "byok.providersEgress" -}}
{{- $p := .Values.networkPolicy.providers }}
{{- $to := include "byok.networkPolicyPeers" (dict "cidrs" $p.cidrs "except" $p.except) | trim }}
- ports:
    {{- include "byok.networkPolicyPorts" $p.ports | trim | nindent 4 }}
  {{- if $to }}
  to:
    {{- $to | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Egress rule from proxyservice to the OTLP collector, when tracing is on. */}}
{{- define "byok.otlpEgress" -}}
{{- if .Values.proxyservice.tracing.otlpEndpoint }}
{{- $o := .Values.networkPolicy.otlp }}
{{- $to := include "byok.networkPolicyPeers" (dict "cidrs" $o.cidrs "peers" $o.peers) | trim }}
- ports:
    {{- include "byok.networkPolicyPorts" $o.ports | trim | nindent 4 }}
  {{- if $to }}
  to:
    {{- $to | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/* Ingress rules shared by both services: the helm test pod on the health port, scrapers on metrics. */}}
{{- define "byok.healthAndMetricsIngress" -}}
- from:
    - podSelector:
        matchLabels:
          {{- include "byok.selectorLabels" (dict "ctx" . "component" "test") | trim | nindent 10 }}
  ports:
    - protocol: TCP
      port: 8081
{{- with .Values.networkPolicy.metricsFrom }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - protocol: TCP
      port: 9090
{{- end }}
{{- end }}
