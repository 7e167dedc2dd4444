"""A real OpenBao server (not -dev) with raft storage, so it can be sealed, killed and restarted with its data:
initialised with one unseal key, KV v2 at secret/ and transit at transit/, optionally a file audit device
declared in the server configuration (deploy/vault/openbao-audit.hcl: OpenBao refuses API-created audit
devices). The root token and unseal key stay in this process's memory and go to children by environment."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.bao import bao_binary
from devstack.ports import free_port
from reliability.procs import Proc


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


class RaftNode:
    """One node of a `RaftCluster`: its own data directory, API and cluster ports, and config."""

    def __init__(self, work: Path, index: int, peers: list[str]) -> None:
        self.name = f"openbao-raft{index}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"raft{index}-", dir=work))
        self.port, self.cluster_port = free_port(), free_port()
        self.peers = peers  # API addresses of every node (retry_join targets), filled in by the cluster

        self.proc = Proc(self.name, [bao_binary(), "server", f"-config={self.dir / 'config.hcl'}"],
                         {"PATH": "/usr/bin:/bin", "HOME": str(self.dir)}, work / "logs", port=self.port)

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        joins = "".join(f'\n  retry_join {{\n    leader_api_addr = "{peer}"\n  }}'
                        for peer in self.peers if peer != self.addr)
        # performance_multiplier 1: the tightest Raft timers (Vault's production recommendation), so an election
        # after a leader's death takes about a second, not five.
        (self.dir / "config.hcl").write_text(f'''
storage "raft" {{
  path = "{self.dir}"
  node_id = "{self.name}"
  performance_multiplier = 1{joins}
}}
listener "tcp" {{
  address = "127.0.0.1:{self.port}"
  cluster_address = "127.0.0.1:{self.cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{self.port}"
cluster_addr = "http://127.0.0.1:{self.cluster_port}"
disable_mlock = true
''')


class RaftCluster:
    """A real OpenBao HA cluster on loopback: `size` nodes on integrated storage (Raft), joined with
    retry_join, initialised with one unseal key on the first node, every node unsealed, then KV v2 at secret/
    and transit at transit/ (what keyservice needs). Standbys forward requests to the active node. The root
    token and unseal key stay in this process's memory."""

    def __init__(self, work: Path, size: int = 3) -> None:
        self.nodes = [RaftNode(work, i + 1, []) for i in range(size)]
        for node in self.nodes:
            node.peers = [n.addr for n in self.nodes]
            node.write_config()
        self.root_token = ""
        self._unseal_key = ""

    @property
    def addrs(self) -> list[str]:
        return [n.addr for n in self.nodes]

    @property
    def addr(self) -> str:
        """The first node's address (VAULT_ADDR for tools); keyservice is given `addrs`."""
        return self.nodes[0].addr

    def wait_writable(self, path: str, timeout: float = 30) -> None:
        """Until a KV v2 write through the active node succeeds (a new KV v2 mount first upgrades itself)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and self.api(leader, "POST", path, json={"data": {"probe": "1"}}).status_code == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"KV at {path} not writable within {timeout} s")

    def api(self, node: RaftNode, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{node.addr}/v1/{path.lstrip('/')}",
                             headers={"X-Vault-Token": self.root_token}, timeout=10, **kwargs)

    def start(self) -> RaftCluster:
        for node in self.nodes:
            node.proc.start()
        first = self.nodes[0]
        reply = self.api(first, "PUT", "sys/init", json={"secret_shares": 1, "secret_threshold": 1})
        reply.raise_for_status()
        self.root_token, self._unseal_key = reply.json()["root_token"], reply.json()["keys"][0]
        self.unseal(first)
        leader = self.wait_leader()
        # Autopilot promotes a joined node to voter once it has been healthy this long (default 10 s).
        self.api(leader, "POST", "sys/storage/raft/autopilot/configuration",
                 json={"server_stabilization_time": "1s", "cleanup_dead_servers": False}).raise_for_status()
        joiners = [threading.Thread(target=self.unseal, args=(node,)) for node in self.nodes[1:]]
        for thread in joiners:
            thread.start()
        for thread in joiners:
            thread.join()
        self.wait_members(len(self.nodes))
        leader = self.wait_leader()
        self.api(leader, "POST", "sys/mounts/secret", json={"type": "kv", "options": {"version": "2"}}
                 ).raise_for_status()
        self.api(leader, "POST", "sys/mounts/transit", json={"type": "transit"}).raise_for_status()
        return self

    def unseal(self, node: RaftNode, timeout: float = 30) -> None:
        """Unseal a node; a joining node answers 'not joined yet' until retry_join has found the leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status = self.api(node, "PUT", "sys/unseal", json={"key": self._unseal_key})
                if status.status_code == 200 and status.json().get("sealed") is False:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{node.name} not unsealed within {timeout} s:\n{node.proc.tail()}")

    def health(self, node: RaftNode) -> int:
        """sys/health status: 200 active, 429 standby, 503 sealed; 0 when the node does not answer."""
        try:
            return httpx.get(f"{node.addr}/v1/sys/health", timeout=2).status_code
        except httpx.TransportError:
            return 0

    def leader(self) -> RaftNode | None:
        for node in self.nodes:
            if node.proc.alive() and self.health(node) == 200:
                return node
        return None

    def wait_leader(self, timeout: float = 30, *, other_than: RaftNode | None = None) -> RaftNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader is not other_than:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"no active OpenBao node within {timeout} s")

    def wait_members(self, count: int, timeout: float = 30) -> None:
        """Until the Raft configuration lists `count` voters and every live node answers unsealed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                reply = self.api(leader, "GET", "sys/storage/raft/configuration")
                if reply.status_code == 200:
                    servers = reply.json()["data"]["config"]["servers"]
                    if sum(1 for s in servers if s.get("voter")) >= count and all(
                            self.health(n) in (200, 429) for n in self.nodes if n.proc.alive()):
                        return
            time.sleep(0.1)
        raise RuntimeError(f"the Raft cluster did not reach {count} voters within {timeout} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.proc.stop()
