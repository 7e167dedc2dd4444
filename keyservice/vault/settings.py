"""Where Vault is, how keyservice logs in, and where the keys live."""

from __future__ import annotations

from dataclasses import dataclass, field

from keyservice import errors

AUTH_MODES = ("token", "approle", "kubernetes")


@dataclass(frozen=True)
class VaultSettings:
    """Where Vault is, how to log in, and where the keys live. Secrets are kept out of repr()."""

    # BYOK_VAULT_ADDR or VAULT_ADDR, e.g. https://vault.example:8200; or a comma-separated list of a cluster's
    # nodes (https://vault-0:8200,https://vault-1:8200,...), used in order, failing over (see `addrs`)
    addr: str
    ca_cert: str | None = None                 # PEM bundle to verify Vault's certificate (None: system CAs)
    auth: str = "token"                        # token | approle | kubernetes
    token: str | None = field(default=None, repr=False)       # auth=token
    role_id: str | None = None                                 # auth=approle
    secret_id: str | None = field(default=None, repr=False)   # auth=approle
    k8s_role: str | None = None                                # auth=kubernetes: the Vault role
    k8s_mount: str = "kubernetes"
    k8s_jwt_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    approle_mount: str = "approle"
    kv_mount: str = "secret"                   # a KV v2 mount
    kv_prefix: str = "byok"                    # keys live at <kv_prefix>/<org_id>/<credential_id>
    transit_mount: str = "transit"
    transit_key: str = ""                      # "" = plain KV mode; set = envelope mode with this derived key
    timeout_seconds: float = 5.0               # connect and read timeout of each HTTP request
    max_retries: int = 3                       # extra attempts on 5xx/sealed/connection errors

    @property
    def addrs(self) -> tuple[str, ...]:
        """The Vault addresses in `addr`, in order (one, or a cluster's nodes)."""
        return tuple(a.strip().rstrip("/") for a in self.addr.split(",") if a.strip())

    def validate(self) -> None:
        """Raise InvalidArgument naming the first bad setting (called when the client is built)."""
        if not self.addrs or not all(a.startswith(("http://", "https://")) for a in self.addrs):
            raise errors.InvalidArgument("vault.addr", "must be an http:// or https:// URL, or a comma-separated "
                                         "list of them")
        if self.auth not in AUTH_MODES:
            raise errors.InvalidArgument("vault.auth", f"must be one of {', '.join(AUTH_MODES)}")
        required = {"token": ("token",), "approle": ("role_id", "secret_id"), "kubernetes": ("k8s_role",)}
        for name in required[self.auth]:
            if not getattr(self, name):
                raise errors.InvalidArgument(f"vault.{name}", f"is required when vault.auth={self.auth}")
        if not self.kv_mount or not self.kv_prefix.strip("/"):
            raise errors.InvalidArgument("vault.kv_prefix", "kv_mount and kv_prefix must not be empty")
        if self.timeout_seconds <= 0:
            raise errors.InvalidArgument("vault.timeout_seconds", "must be positive")
        if self.max_retries < 0:
            raise errors.InvalidArgument("vault.max_retries", "must not be negative")
