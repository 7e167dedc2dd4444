"""Child processes of the local stack: start with a readiness check, stop in reverse order on exit.

Secrets reach children through their environment (never argv, which `ps` shows to every user).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def wait_for_port(port: int, process: subprocess.Popen[bytes], name: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"{name} exited with {process.returncode}; last log lines:\n{tail}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f} s (log: {log})")


class ProcessGroup:
    """Starts children and stops them all (SIGTERM, then SIGKILL after a grace period) in reverse order.

    `keep_fds` are file descriptors every child inherits (the local stack's lock, so that the lock stays held
    while any of its processes lives)."""

    def __init__(self, log_dir: Path, keep_fds: tuple[int, ...] = ()) -> None:
        self.log_dir = log_dir
        self.keep_fds = keep_fds
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str], port: int | None = None,
              ready: Callable[[], bool] | None = None) -> subprocess.Popen[bytes]:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, pass_fds=self.keep_fds)
        self.children.append((name, process))
        if port is not None:
            wait_for_port(port, process, name, log)
        return process

    def stop(self, grace: float = 8.0) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.children.clear()


def python() -> str:
    return sys.executable


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without Vault/byok variables that could leak into the wrong child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "BYOK_"))}
    env.update(extra)
    return env
