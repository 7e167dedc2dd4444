"""Child processes the scenarios start, kill and restart: logs captured to files (so the leak scan can read
every line), resource sampling from /proc, and a registry that stops every child at the end, even on failure.

Secrets reach children through their environment, never argv."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from devstack.ports import port_open


class Proc:
    """One child. `start()` appends to its log (restarts keep one log per name)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, *,
                 port: int | None = None, user: str | None = None, cwd: str | None = None) -> None:
        self.name, self.argv, self.env, self.port, self.user, self.cwd = name, argv, env, port, user, cwd
        self.log = log_dir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.shared = False  # lives across scenarios (the shared OpenBao); stopped only at the very end

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, wait: float = 40.0) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = self.argv if self.user is None else ["/usr/sbin/runuser", "-u", self.user, "--", *self.argv]
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=self.cwd)
        self.starts += 1
        if self not in REGISTRY:
            REGISTRY.append(self)
        if self.port is not None:
            self.wait_port(wait)
        return self

    def wait_port(self, timeout: float) -> None:
        assert self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen and self.popen.returncode}); "
                                   f"log tail:\n{self.tail()}")
            if port_open(self.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 2500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush (a crash)."""
        if self.alive():
            assert self.popen is not None
            self.popen.kill()
            self.popen.wait(10)

    def stop(self, grace: float = 8.0) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    # -- resources, from /proc ----------------------------------------------------------------------
    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def environ(self) -> bytes:
        return Path(f"/proc/{self.pid}/environ").read_bytes()


REGISTRY: list[Proc] = []


def stop_all(*, include_shared: bool = False) -> None:
    """Stop every child started, newest first (after each scenario; with include_shared at exit)."""
    for proc in list(reversed(REGISTRY)):
        if proc.shared and not include_shared:
            continue
        REGISTRY.remove(proc)
        try:
            proc.stop(grace=5.0)
        except Exception:  # noqa: BLE001 - keep stopping the others
            pass
