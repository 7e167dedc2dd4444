"""`make run`: the whole system on one machine with embedded defaults, in the foreground.

Starts an OpenBao dev server on loopback, writes dev certificates for every identity, starts the local
provider upstream, keyservice (SQLite under .byok/) and proxyservice, and writes .byok/env (absolute paths)
so byokctl can reach them from any directory. Ctrl-C, SIGTERM and SIGHUP (a closed terminal) stop everything.
Provider base URLs point at the local upstream (this machine has no internet) unless BYOK_PROVIDER_BASE_URLS
is set or BYOK_DEV_REAL_PROVIDERS=1.

One stack per state directory: the launcher holds a lock on `<state>/lock` that every process of the stack
inherits, so the lock is held while any of them lives (even if the launcher itself was killed). A second
`make run` finds it held and says where the running stack is and how to stop it (`make stop`).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from byokcommon.devcerts import CertificateAuthority, spiffe_id
from devstack.bao import bao_binary, dev_server
from devstack.ports import free_port, pick_port
from devstack.processes import ProcessGroup, clean_env, python

STATE_DIR = Path(".byok")
ADMIN = spiffe_id("admin")
PROXY = spiffe_id("proxyservice")
CALLER = spiffe_id("caller/local")

# The first walk, in a second shell: printed by `make run`, shown verbatim in the README (a test holds them
# equal), run by the e2e tests as written and step by step by `make demo`.
WALK = """\
source .byok/env
id=$(echo "sk-proj-$(openssl rand -hex 20)" | .venv/bin/byokctl keys add --org acme --provider openai --name main -q)
.venv/bin/byokctl keys list --org acme
echo "sk-proj-$(openssl rand -hex 20)" | .venv/bin/byokctl keys rotate "$id"   # new secret version
.venv/bin/bao kv metadata get "secret/byok/acme/$id"                           # org, provider, name, id — never the key
.venv/bin/byokctl bindings add spiffe://byok.local/admin --org acme            # let a caller act for acme
.venv/bin/byokctl chat --org acme --model gpt-4o-mini "Say hello"              # streams through the proxy
.venv/bin/byokctl keys deactivate "$id"                                        # proxies drop the key within a second
.venv/bin/byokctl keys delete "$id"                                            # the row, then every Vault version
.venv/bin/byokctl audit --org acme
"""


class StackRunning(Exception):
    """A stack already runs from this state directory; the message says where and how to stop it."""


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
    lock_fd: int = -1
    proxy_http_port: int = 0

    def client_env(self) -> dict[str, str]:
        certs = self.state.resolve() / "certs"  # absolute: byokctl works from any directory
        return {
            "BYOK_KEYSERVICE_ADDR": f"localhost:{self.keyservice_port}",
            "BYOK_PROXY_ADDR": f"localhost:{self.proxy_port}",
            "BYOK_PROXY_HTTP_URL": f"https://localhost:{self.proxy_http_port}",
            "BYOK_CLIENT_CERT": str(certs / "admin.crt"), "BYOK_CLIENT_KEY": str(certs / "admin.key"),
            "BYOK_CA": str(certs / "ca.crt"), "VAULT_ADDR": self.vault_addr, "VAULT_TOKEN": self.vault_token,
        }

    def stop(self) -> None:
        """Stop every process, then give up the state directory's lock."""
        self.processes.stop()
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


# -- one stack per state directory -------------------------------------------------------------------------
def _open_lock(state: Path) -> int:
    return os.open(state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait_for_lock(fd: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _read_info(state: Path) -> dict[str, Any]:
    try:
        info = json.loads((state / "stack.json").read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _write_info(state: Path, info: dict[str, Any]) -> None:
    (state / "stack.json").write_text(json.dumps(info, indent=2))


def stop_command(state: Path) -> str:
    return "make stop" if state == STATE_DIR else f"python -m devstack --stop --state-dir {shlex.quote(str(state))}"


def _running_message(state: Path, info: dict[str, Any]) -> str:
    where = state.resolve()
    pids: dict[str, int] = info.get("pids", {})
    launcher = info.get("launcher_pid")
    if not _alive(launcher) and pids:
        listed = ", ".join(f"{name} pid {pid}" for name, pid in pids.items() if _alive(pid))
        return (f"processes of an earlier byok stack still run from {where} (its launcher, pid {launcher}, is gone): "
                f"{listed or 'starting up'}.\nStop them with `{stop_command(state)}`, then `make run` again.")
    ports = (f"\n  keyservice localhost:{info['keyservice']}, proxyservice localhost:{info['proxyservice']}, "
             f"OpenBao {info['vault']}") if "keyservice" in info else " (still starting)"
    return (f"a byok stack is already running from {where} (launcher pid {launcher}):{ports}\n"
            f"Use it from another shell (`source {state}/env`), or stop it: Ctrl-C in its terminal, or "
            f"`{stop_command(state)}`.")


def stop_running(state: Path = STATE_DIR, grace: float = 15.0) -> str:
    """Stop the stack running from `state` (its launcher, or what is left of it); say what was done."""
    if not (state / "lock").exists():
        return f"no byok stack is running from {state.resolve()}"
    fd = _open_lock(state)
    try:
        if _try_lock(fd):
            return f"no byok stack is running from {state.resolve()}"
        info = _read_info(state)
        launcher = info.get("launcher_pid")
        pids = [int(p) for p in info.get("pids", {}).values()]
        # The launcher stops its children in order; without it, stop the children ourselves.
        for pid in [launcher] if _alive(launcher) else pids:
            _signal(pid, signal.SIGTERM)
        if not _wait_for_lock(fd, grace):
            for pid in [launcher, *pids]:
                _signal(pid, signal.SIGKILL)
            if not _wait_for_lock(fd, 5.0):
                raise RuntimeError(f"the stack from {state.resolve()} did not stop; see {state}/stack.json")
        return f"stopped the byok stack running from {state.resolve()}"
    finally:
        os.close(fd)


def _signal(pid: int | None, sig: signal.Signals) -> None:
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def start(state: Path = STATE_DIR, *, stable_ports: bool = True) -> Stack:
    """Start the stack with its state under `state`. `stable_ports` prefers the well-known ports (8200, 50051,
    …) for people; the demo takes any free ones so it never holds a port a later `make run` wants.
    Raises StackRunning when a stack already runs from `state`."""
    state.mkdir(parents=True, exist_ok=True)
    lock = _open_lock(state)
    if not _try_lock(lock):
        info = _read_info(state)
        os.close(lock)
        raise StackRunning(_running_message(state, info))
    (state / "logs").mkdir(exist_ok=True)
    group = ProcessGroup(state / "logs", keep_fds=(lock,))
    try:
        return _start(state, group, lock, pick_port if stable_ports else lambda _preferred: free_port())
    except BaseException:
        group.stop()
        os.close(lock)
        raise


def _start(state: Path, group: ProcessGroup, lock: int, port_for: Callable[[int], int]) -> Stack:
    info: dict[str, Any] = {"launcher_pid": os.getpid(), "pids": {}}
    _write_info(state, info)

    def launch(name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        info["pids"][name] = group.start(name, argv, env, port=port).pid
        _write_info(state, info)  # so `make stop` finds every process, even of a launcher killed mid-start

    # The dev OpenBao keeps secrets in memory only, so a database from an earlier run would point at
    # secrets that no longer exist: the local stack starts empty every time.
    for stale in state.glob("keyservice.db*"):
        stale.unlink()
    certs = state / "certs"
    ca = CertificateAuthority.create("byok local dev CA")
    for name, identity in (("keyservice", spiffe_id("keyservice")), ("proxyservice", PROXY), ("admin", ADMIN),
                           ("caller", CALLER)):
        ca.write_identity(certs, name, spiffe=identity)

    vault_port = port_for(8200)
    token = "dev-" + secrets.token_hex(16)
    vault_addr = f"http://127.0.0.1:{vault_port}"
    argv, bao_env = dev_server(vault_port, token)
    launch("openbao", argv, bao_env, vault_port)

    upstream_port = port_for(8788)
    launch("upstream", [python(), "-m", "devstack.upstream", "--port", str(upstream_port)], clean_env(),
           upstream_port)
    base = f"http://127.0.0.1:{upstream_port}"
    overrides = os.environ.get("BYOK_PROVIDER_BASE_URLS", "")
    if not overrides and os.environ.get("BYOK_DEV_REAL_PROVIDERS") != "1":
        overrides = ",".join(f"{name}={base}/v1" for name in (
            "openai", "anthropic", "groq", "together", "deepseek", "fireworks", "openrouter"))
        overrides += f",mistral={base}/mistral/v1,gemini={base}/v1beta"

    ks_port, ks_health, ks_metrics = port_for(50051), port_for(8081), port_for(9090)
    ks_env = clean_env(
        BYOK_GRPC_ADDR=f"127.0.0.1:{ks_port}", BYOK_HEALTH_ADDR=f"127.0.0.1:{ks_health}",
        BYOK_METRICS_ADDR=f"127.0.0.1:{ks_metrics}", BYOK_TLS_CERT=str(certs / "keyservice.crt"),
        BYOK_TLS_KEY=str(certs / "keyservice.key"), BYOK_TLS_CA=str(certs / "ca.crt"),
        BYOK_DATABASE_URL=f"sqlite:///{(state / 'keyservice.db').resolve()}", VAULT_ADDR=vault_addr,
        VAULT_TOKEN=token, BYOK_ROLES=f"{ADMIN}=admin,{PROXY}=proxy", BYOK_PROVIDER_BASE_URLS=overrides,
        BYOK_LOG_LEVEL=os.environ.get("BYOK_LOG_LEVEL", "info"),
        # Development only: the local provider stand-in is plain http on loopback (byokcommon/egress.py).
        BYOK_DEV_LOOPBACK_HTTP="1")
    launch("keyservice", [python(), "-m", "keyservice"], ks_env, ks_port)

    proxy_port, proxy_health, proxy_metrics = port_for(50052), port_for(8082), port_for(9091)
    proxy_http = port_for(8443)
    proxy_env = clean_env(
        BYOK_GRPC_ADDR=f"127.0.0.1:{proxy_port}", BYOK_HTTP_ADDR=f"127.0.0.1:{proxy_http}",
        BYOK_HEALTH_ADDR=f"127.0.0.1:{proxy_health}",
        BYOK_METRICS_ADDR=f"127.0.0.1:{proxy_metrics}", BYOK_TLS_CERT=str(certs / "proxyservice.crt"),
        BYOK_TLS_KEY=str(certs / "proxyservice.key"), BYOK_TLS_CA=str(certs / "ca.crt"),
        BYOK_KEYSERVICE_ADDR=f"localhost:{ks_port}", BYOK_LOG_LEVEL=os.environ.get("BYOK_LOG_LEVEL", "info"),
        BYOK_WORKERS=os.environ.get("BYOK_WORKERS", "1"), BYOK_DEV_LOOPBACK_HTTP="1")
    launch("proxyservice", [python(), "-m", "proxyservice"], proxy_env, proxy_port)

    stack = Stack(state=state, vault_addr=vault_addr, vault_token=token, keyservice_port=ks_port,
                  proxy_port=proxy_port, upstream_port=upstream_port, env_file=state / "env", processes=group,
                  lock_fd=lock, proxy_http_port=proxy_http)
    env_file = stack.env_file
    env_file.touch(mode=0o600)
    env_file.chmod(0o600)  # touch's mode applies only to a new file; an old one may be wider
    env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in stack.client_env().items()))
    info.update({
        "keyservice": ks_port, "proxyservice": proxy_port, "proxyservice_http": proxy_http, "vault": vault_addr,
        "upstream": upstream_port,
        "health": {"keyservice": ks_health, "proxyservice": proxy_health},
        "metrics": {"keyservice": ks_metrics, "proxyservice": proxy_metrics}})
    _write_info(state, info)
    return stack


def byokctl(stack: Stack, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real byokctl against the stack (used by the demo and the e2e tests)."""
    return _client(stack, [python(), "-m", "byokctl", *args], stdin, check)


def bao(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the vault CLI (bao) against the stack's OpenBao, as the README does."""
    return _client(stack, [bao_binary(), *args], None, check)


def _client(stack: Stack, argv: list[str], stdin: str | None, check: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.client_env()}
    return subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=check, timeout=60)


def banner(stack: Stack) -> str:
    walk = WALK.replace("source .byok/env", f"source {stack.env_file}")
    return f"""
byok local stack is up (logs in {stack.state}/logs; Ctrl-C or closing this terminal stops everything)
  keyservice    localhost:{stack.keyservice_port}   (mTLS; admin cert {stack.state}/certs/admin.crt)
  proxyservice  localhost:{stack.proxy_port}   (mTLS gRPC)
                https://localhost:{stack.proxy_http_port}/{{provider}}   (mTLS HTTPS: the providers' own APIs, for
                their SDKs; header x-byok-org names the tenant; README, "The HTTP front")
  OpenBao       {stack.vault_addr}   (dev server, in memory; root token in {stack.env_file})
  upstream      http://127.0.0.1:{stack.upstream_port}   (local stand-in for the providers: every answer is
                the same canned text, "alpha bravo charlie …", streamed word by word)

In another shell, from this directory:
{"".join("  " + line + chr(10) for line in walk.splitlines())}"""
