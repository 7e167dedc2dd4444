"""keyservice settings: one frozen dataclass, loaded once in __main__ from the environment and injected."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from byokcommon.egress import EgressPolicy
from byokcommon.settings import (
    SettingsError,
    env_addr,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_required,
    env_str,
)
from byokcommon.tls import TlsFiles
from keyservice.derive.settings import ENTRA_AUTHORITY_HOST, DeriveSettings
from keyservice.errors import InvalidArgument
from keyservice.usage.retention import MIN_DAILY_DAYS, UsageRetention
from keyservice.vault import VaultSettings

ROLES = ("admin", "proxy")


def parse_roles(raw: str, name: str = "BYOK_ROLES") -> dict[str, str]:
    """'identity=role,identity=role' -> {identity: role}."""
    roles: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        identity, sep, role = item.rpartition("=")
        if not sep or not identity or role not in ROLES:
            raise SettingsError(f"{name}: each entry must be IDENTITY=admin|proxy, got {item!r}")
        roles[identity] = role
    return roles


def _read_secret_file(env: Mapping[str, str], name: str) -> str | None:
    """A secret from the file the variable names (keeps it out of the environment, hence out of
    /proc/PID/environ and crash dumps); None when the variable is unset."""
    path = env_str(env, name)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {path} ({exc.strerror})") from None
    if not value:
        raise SettingsError(f"{name}: {path} is empty")
    return value


def _usage_retention(env: Mapping[str, str]) -> UsageRetention:
    daily = env_int(env, "BYOK_USAGE_DAILY_RETENTION_DAYS", 0, minimum=0, maximum=36500)
    if 0 < daily < MIN_DAILY_DAYS:
        raise SettingsError(f"BYOK_USAGE_DAILY_RETENTION_DAYS: 0 (keep) or at least {MIN_DAILY_DAYS}: a monthly "
                            "budget sums its month's daily rows")
    return UsageRetention(
        hourly_days=env_int(env, "BYOK_USAGE_HOURLY_RETENTION_DAYS", 90, minimum=0, maximum=36500),
        daily_days=daily,
        batch_days=env_int(env, "BYOK_USAGE_BATCH_RETENTION_DAYS", 35, minimum=1, maximum=36500))


def _derive_settings(env: Mapping[str, str], egress: EgressPolicy) -> DeriveSettings:
    ca_file = env_str(env, "BYOK_CLOUD_AUTH_CA_FILE")
    if ca_file and not os.path.isfile(ca_file):
        raise SettingsError(f"BYOK_CLOUD_AUTH_CA_FILE: {ca_file} is not a file")
    settings = DeriveSettings(
        aws_sts_endpoint=env_str(env, "BYOK_AWS_STS_ENDPOINT").rstrip("/"),
        aws_session_seconds=env_int(env, "BYOK_AWS_SESSION_SECONDS", 3600, minimum=900, maximum=43200),
        entra_authority_host=(env_str(env, "BYOK_ENTRA_AUTHORITY_HOST") or ENTRA_AUTHORITY_HOST).rstrip("/"),
        ca_file=ca_file,
        timeout_seconds=env_float(env, "BYOK_DERIVE_TIMEOUT_SECONDS", 10.0, minimum=0.5, maximum=120))
    try:
        settings.check(egress)
    except InvalidArgument as exc:
        raise SettingsError(exc.message) from None
    return settings


def _prices_file(env: Mapping[str, str]) -> str:
    """BYOK_PRICES_FILE, parsed now so that a bad file fails the start, not the first priced batch."""
    from keyservice.usage.pricing import load_price_file

    path = env_str(env, "BYOK_PRICES_FILE")
    if path:
        try:
            load_price_file(path, source="file")
        except InvalidArgument as exc:
            raise SettingsError(exc.message if exc.message.startswith("BYOK_PRICES_FILE") else
                                f"BYOK_PRICES_FILE: {exc.message}") from None
    return path


@dataclass(frozen=True)
class KeyServiceSettings:
    """Everything keyservice needs to run. Secrets (Vault token, secret id) are held here, never printed."""

    # mTLS gRPC listen address (BYOK_GRPC_ADDR); port 0 picks a free port.
    grpc_addr: str
    # Server certificate, key and the CA that client certificates must chain to (BYOK_TLS_CERT/KEY/CA).
    tls: TlsFiles
    # Vault/OpenBao connection, auth and layout (VAULT_ADDR, VAULT_TOKEN, BYOK_VAULT_*).
    vault: VaultSettings
    # SQLAlchemy URL (BYOK_DATABASE_URL): sqlite:///path or postgresql://… (may hold a password: not in repr)
    database_url: str = field(repr=False)
    # mTLS identity -> role ("admin" or "proxy") (BYOK_ROLES).
    roles: dict[str, str] = field(default_factory=dict)
    # Plaintext gRPC health port for kubelet (BYOK_HEALTH_ADDR); "" disables it.
    health_addr: str = ""
    # Prometheus /metrics listen address (BYOK_METRICS_ADDR); "" disables it.
    metrics_addr: str = ""
    # Lease lifetime in seconds (BYOK_LEASE_TTL_SECONDS, 5-3600).
    lease_ttl_seconds: int = 60
    # Most RPCs handled at once; more get RESOURCE_EXHAUSTED (BYOK_MAX_CONCURRENT_RPCS).
    max_concurrent_rpcs: int = 512
    # Worker threads for blocking Vault and DB calls (BYOK_BLOCKING_THREADS).
    blocking_threads: int = 16
    # Seconds between reconciler passes (BYOK_RECONCILE_INTERVAL_SECONDS); orphans younger than the grace
    # period are left alone because a create may be between its Vault write and its DB insert.
    reconcile_interval_seconds: float = 300.0
    reconcile_grace_seconds: float = 120.0
    # Take a client certificate's subject CN as its identity when it has no URI SAN (BYOK_IDENTITY_CN_FALLBACK),
    # for CAs that cannot issue URI SANs. Off: only a canonical SPIFFE URI SAN names a caller (as in the proxy).
    identity_cn_fallback: bool = False
    # Longest a create may take from reserving its Vault path to committing its row
    # (BYOK_CREATE_DEADLINE_SECONDS): a slower create aborts, and the reconciler reclaims what it wrote.
    create_deadline_seconds: float = 60.0
    # Old KV versions kept after a rotation; older ones are destroyed (BYOK_KEEP_SECRET_VERSIONS).
    keep_secret_versions: int = 2
    # Timeout of VerifyCredential's provider call (BYOK_VERIFY_TIMEOUT_SECONDS).
    verify_timeout_seconds: float = 10.0
    # Platform keys by provider env var name (OPENAI_API_KEY…), used only for orgs that allow fallback.
    platform_keys: dict[str, str] = field(default_factory=dict, repr=False)
    # Base URL overrides per provider (BYOK_PROVIDER_BASE_URLS="openai=http://…,anthropic=…"), for the
    # local stack and tests; credentials' own api_base wins.
    provider_base_urls: dict[str, str] = field(default_factory=dict)
    # Where keys may be sent (byokcommon/egress.py): BYOK_API_BASE_ALLOWLIST (hosts an api_base may name besides its
    # provider's, and non-public CIDRs that may be connected to) and BYOK_DEV_LOOPBACK_HTTP (development only:
    # plain http and loopback destinations, for the local provider stand-in).
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    # Derivations of short-lived cloud credentials (BYOK_AWS_STS_ENDPOINT, BYOK_AWS_SESSION_SECONDS,
    # BYOK_ENTRA_AUTHORITY_HOST, BYOK_CLOUD_AUTH_CA_FILE, BYOK_DERIVE_TIMEOUT_SECONDS): keyservice/derive/settings.py.
    derive: DeriveSettings = field(default_factory=DeriveSettings)
    # Ops' price table (BYOK_PRICES_FILE; docs/usage.md): a JSON file in the format of keyservice/data/prices.json
    # whose entries are added to the shipped ones (the chart mounts keyservice.prices there); "" = none. Read at
    # start: a file that cannot be read or parsed stops keyservice with a message naming the entry.
    prices_file: str = ""
    # How long usage rows are kept (docs/usage.md, "Retention"): BYOK_USAGE_HOURLY_RETENTION_DAYS (90),
    # BYOK_USAGE_DAILY_RETENTION_DAYS (0 = kept), BYOK_USAGE_BATCH_RETENTION_DAYS (35).
    usage_retention: UsageRetention = field(default_factory=UsageRetention)
    # Log level (BYOK_LOG_LEVEL).
    log_level: str = "info"
    # On SIGTERM: seconds to report NOT_SERVING while still serving, so load balancers stop sending work
    # (BYOK_SHUTDOWN_DRAIN_SECONDS), then seconds RPCs in flight get to finish (BYOK_SHUTDOWN_GRACE_SECONDS).
    shutdown_drain_seconds: float = 0.0
    shutdown_grace_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KeyServiceSettings:
        from keyservice.providers import PROVIDERS

        tls = TlsFiles(env_str(env, "BYOK_TLS_CERT"), env_str(env, "BYOK_TLS_KEY"), env_str(env, "BYOK_TLS_CA"))
        tls.check("BYOK_TLS")
        vault = VaultSettings(
            addr=env_str(env, "BYOK_VAULT_ADDR") or env_required(env, "VAULT_ADDR"),  # one address or a list
            ca_cert=env_str(env, "VAULT_CACERT") or None,
            auth=env_choice(env, "BYOK_VAULT_AUTH", "token", ("token", "approle", "kubernetes")),
            token=env_str(env, "VAULT_TOKEN") or None,
            role_id=env_str(env, "BYOK_VAULT_ROLE_ID") or None,
            secret_id=env_str(env, "BYOK_VAULT_SECRET_ID") or _read_secret_file(env, "BYOK_VAULT_SECRET_ID_FILE"),
            k8s_role=env_str(env, "BYOK_VAULT_K8S_ROLE") or None,
            k8s_mount=env_str(env, "BYOK_VAULT_K8S_MOUNT", "kubernetes") or "kubernetes",
            kv_mount=env_str(env, "BYOK_VAULT_KV_MOUNT", "secret") or "secret",
            kv_prefix=env_str(env, "BYOK_VAULT_KV_PREFIX", "byok") or "byok",
            transit_mount=env_str(env, "BYOK_VAULT_TRANSIT_MOUNT", "transit") or "transit",
            transit_key=env_str(env, "BYOK_VAULT_TRANSIT_KEY"),
            timeout_seconds=env_float(env, "BYOK_VAULT_TIMEOUT_SECONDS", 5.0, minimum=0.1, maximum=60),
        )
        if vault.auth == "token" and not vault.token:
            raise SettingsError("VAULT_TOKEN is required when BYOK_VAULT_AUTH=token")
        if vault.auth == "approle" and not (vault.role_id and vault.secret_id):
            raise SettingsError("BYOK_VAULT_ROLE_ID and BYOK_VAULT_SECRET_ID are required when BYOK_VAULT_AUTH=approle")
        if vault.auth == "kubernetes" and not vault.k8s_role:
            raise SettingsError("BYOK_VAULT_K8S_ROLE is required when BYOK_VAULT_AUTH=kubernetes")
        base_urls: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in env_str(env, "BYOK_PROVIDER_BASE_URLS").split(","))):
            name, sep, url = item.partition("=")
            if not sep or name not in PROVIDERS or not url.startswith(("http://", "https://")):
                raise SettingsError(f"BYOK_PROVIDER_BASE_URLS: expected PROVIDER=URL entries, got {item[:80]!r}")
            base_urls[name] = url.rstrip("/")
        egress = EgressPolicy.from_env(env)
        derive = _derive_settings(env, egress)
        roles = parse_roles(env_str(env, "BYOK_ROLES"))
        if not roles:
            raise SettingsError("BYOK_ROLES is required: e.g. spiffe://byok.local/admin=admin,spiffe://byok.local/proxy=proxy")
        return cls(
            grpc_addr=env_addr(env, "BYOK_GRPC_ADDR", "127.0.0.1:50051"),
            tls=tls,
            vault=vault,
            database_url=env_str(env, "BYOK_DATABASE_URL", "sqlite:///.byok/keyservice.db"),
            roles=roles,
            health_addr=env_str(env, "BYOK_HEALTH_ADDR", "127.0.0.1:8081"),
            metrics_addr=env_str(env, "BYOK_METRICS_ADDR", "127.0.0.1:9090"),
            lease_ttl_seconds=env_int(env, "BYOK_LEASE_TTL_SECONDS", 60, minimum=5, maximum=3600),
            max_concurrent_rpcs=env_int(env, "BYOK_MAX_CONCURRENT_RPCS", 512, minimum=1, maximum=100_000),
            blocking_threads=env_int(env, "BYOK_BLOCKING_THREADS", 16, minimum=1, maximum=256),
            reconcile_interval_seconds=env_float(env, "BYOK_RECONCILE_INTERVAL_SECONDS", 300.0, minimum=1,
                                                 maximum=86400),
            reconcile_grace_seconds=env_float(env, "BYOK_RECONCILE_GRACE_SECONDS", 120.0, minimum=0,
                                              maximum=86400),
            identity_cn_fallback=env_bool(env, "BYOK_IDENTITY_CN_FALLBACK", False),
            create_deadline_seconds=env_float(env, "BYOK_CREATE_DEADLINE_SECONDS", 60.0, minimum=1,
                                              maximum=3600),
            keep_secret_versions=env_int(env, "BYOK_KEEP_SECRET_VERSIONS", 2, minimum=1, maximum=100),
            verify_timeout_seconds=env_float(env, "BYOK_VERIFY_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=120),
            platform_keys={p.platform_key_env: env[p.platform_key_env] for p in PROVIDERS.values()
                           if env.get(p.platform_key_env)},
            provider_base_urls=base_urls,
            egress=egress,
            derive=derive,
            prices_file=_prices_file(env),
            usage_retention=_usage_retention(env),
            log_level=env_choice(env, "BYOK_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            shutdown_drain_seconds=env_float(env, "BYOK_SHUTDOWN_DRAIN_SECONDS", 0.0, minimum=0, maximum=300),
            shutdown_grace_seconds=env_float(env, "BYOK_SHUTDOWN_GRACE_SECONDS", 5.0, minimum=0, maximum=3600),
        )
