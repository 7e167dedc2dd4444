"""A real OpenBao dev server on a free loopback port, started and stopped by the tests themselves."""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devstack.bao import bao_binary, dev_server
from devstack.ports import free_port


@dataclass
class BaoDevServer:
    """An OpenBao `server -dev` process. `addr` and `root_token` are what VAULT_ADDR/VAULT_TOKEN would hold."""

    port: int = field(default_factory=free_port)
    root_token: str = field(default_factory=lambda: "dev-root-" + secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for running the `bao` CLI against this server as root."""
        env = dict(os.environ)
        env.update(VAULT_ADDR=self.addr, VAULT_TOKEN=self.root_token, BAO_ADDR=self.addr,
                   BAO_TOKEN=self.root_token)
        return env

    def start(self) -> BaoDevServer:
        log = tempfile.NamedTemporaryFile(prefix="bao-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        argv, env = dev_server(self.port, self.root_token)
        self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bao exited early: {self.log_path.read_text()[-2000:]}")
            try:
                r = httpx.get(f"{self.addr}/v1/sys/health", timeout=0.5)
                if r.status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("bao dev server did not become healthy in 20 s")

    def cli(self, *args: str, input: str | None = None, token: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `bao` CLI (the vault CLI's twin) against this server."""
        env = self.env()
        if token is not None:
            env["VAULT_TOKEN"] = env["BAO_TOKEN"] = token
        return subprocess.run([bao_binary(), *args], input=input, env=env, capture_output=True,
                              text=True, check=check, timeout=60)

    def api(self, method: str, path: str, token: str | None = None, **kwargs: object) -> httpx.Response:
        """Call the HTTP API directly (root token unless another is given)."""
        headers = {"X-Vault-Token": token or self.root_token}
        return httpx.request(method, f"{self.addr}/v1/{path.lstrip('/')}", headers=headers,
                             timeout=10, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
