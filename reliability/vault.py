"""A real OpenBao server (not -dev) with raft storage, so it can be sealed, killed and restarted with its data:
initialised with one unseal key, KV v2 at secret/ and transit at transit/, optionally a file audit device
declared in the server configuration (deploy/vault/openbao-audit.hcl: OpenBao refuses API-created audit
devices). The root token and unseal key stay in this process's memory and go to children by environment."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import bao_binary
from reliability.procs import Proc, free_port


class Vault:
    def __init__(self, work: Path, *, audit: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vault-", dir=work))
        self.port, self.cluster_port = free_port(), free_port()
        self.audit_log = self.dir / "audit.log"
        config = f'''
storage "raft" {{
  path = "{self.dir}"
  node_id = "reliability"
}}
listener "tcp" {{
  address = "127.0.0.1:{self.port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{self.port}"
cluster_addr = "http://127.0.0.1:{self.cluster_port}"
'''
        if audit:
            config += f'''
audit "file" "byok" {{
  options {{
    file_path = "{self.audit_log}"
    log_raw = "false"
  }}
}}
'''
        (self.dir / "config.hcl").write_text(config)
        self.proc = Proc("openbao", [bao_binary(), "server", f"-config={self.dir / 'config.hcl'}"],
                         {"PATH": "/usr/bin:/bin", "HOME": str(self.dir)}, work / "logs", port=self.port)
        self.root_token = ""
        self._unseal_key = ""

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"X-Vault-Token": token if token is not None else self.root_token}
        return httpx.request(method, f"{self.addr}/v1/{path.lstrip('/')}", headers=headers, timeout=10, **kwargs)

    def start(self, *, unseal: bool = True) -> Vault:
        """Start (or restart, on the same storage) the server; unseal unless told not to."""
        first = self.proc.starts == 0
        self.proc.start()
        if first:
            reply = self.api("PUT", "sys/init", json={"secret_shares": 1, "secret_threshold": 1}).json()
            self.root_token, self._unseal_key = reply["root_token"], reply["keys"][0]
        if not unseal and not first:
            return self
        self.unseal()
        if first:
            self.api("POST", "sys/mounts/secret", json={"type": "kv", "options": {"version": "2"}}
                     ).raise_for_status()
            self.api("POST", "sys/mounts/transit", json={"type": "transit"}).raise_for_status()
        return self

    def unseal(self) -> None:
        self.api("PUT", "sys/unseal", json={"key": self._unseal_key}).raise_for_status()
        self.wait_active()

    def wait_active(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.api("GET", "sys/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"OpenBao not active within {timeout} s:\n{self.proc.tail()}")

    def seal(self) -> None:
        self.api("PUT", "sys/seal").raise_for_status()

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        self.proc.stop()

    # -- setup helpers ------------------------------------------------------------------------------
    def keyservice_policy(self, prefix: str) -> str:
        text = (Path(__file__).resolve().parent.parent / "deploy/vault/policies/keyservice.hcl").read_text()
        return text.replace("secret/data/byok/", f"secret/data/{prefix}/").replace(
            "secret/metadata/byok/", f"secret/metadata/{prefix}/").replace(
            "secret/destroy/byok/", f"secret/destroy/{prefix}/")

    def approle(self, prefix: str, *, ttl: str, max_ttl: str) -> tuple[str, str]:
        """An AppRole for keyservice with the shipped policy; returns (role_id, secret_id)."""
        self.api("POST", "sys/auth/approle", json={"type": "approle"})  # 400 when already enabled
        self.api("PUT", "sys/policies/acl/keyservice", json={"policy": self.keyservice_policy(prefix)}
                 ).raise_for_status()
        self.api("POST", "auth/approle/role/keyservice", json={
            "token_policies": ["keyservice"], "token_ttl": ttl, "token_max_ttl": max_ttl,
            "secret_id_ttl": "0", "token_num_uses": 0}).raise_for_status()
        role_id = self.api("GET", "auth/approle/role/keyservice/role-id").json()["data"]["role_id"]
        secret_id = self.api("POST", "auth/approle/role/keyservice/secret-id").json()["data"]["secret_id"]
        return role_id, secret_id

    def list_paths(self, prefix: str) -> list[str]:
        """Every secret path under secret/<prefix>/ (recursive)."""
        out: list[str] = []
        todo = [prefix.strip("/") + "/"]
        while todo:
            folder = todo.pop()
            r = self.api("LIST", f"secret/metadata/{folder}")
            if r.status_code == 404:
                continue
            r.raise_for_status()
            for key in r.json()["data"]["keys"]:
                (todo if key.endswith("/") else out).append(folder + key)
        return out
