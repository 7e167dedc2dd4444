"""The launcher (`make run` = `python -m devstack`) as real processes: a closed terminal (SIGHUP) stops the whole
stack like Ctrl-C; a second `make run` finds the running one and leaves it alone; `make demo` runs beside it
without touching it; `make stop` stops a running stack, and what a killed launcher left behind."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
READY = "byok local stack is up"


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BYOK_", "VAULT_", "BAO_"))}
    return clean | {"PYTHONPATH": str(REPO)}


def devstack(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devstack", *args], cwd=cwd, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def nothing_listens(port: int) -> bool:
    """No listener on the port (binding could still fail for a while: connections in TIME_WAIT)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def gone(pid: int) -> bool:
    """Exited (a zombie counts: it holds no port and no file)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@dataclass
class Launcher:
    """A `make run` in the foreground of a (pretend) terminal: its stdout read line by line."""

    process: subprocess.Popen[str]
    cwd: Path
    lines: queue.Queue[str | None]

    @classmethod
    def start(cls, cwd: Path) -> Launcher:
        process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=cwd, env=env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        launcher = cls(process, cwd, lines)
        launcher.wait_for(READY)
        return launcher

    def wait_for(self, text: str, timeout: float = 120) -> None:
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                self.process.wait(10)
                raise AssertionError(f"launcher exited {self.process.returncode} before {text!r}: "
                                     f"{self.process.stderr.read() if self.process.stderr else ''}")
            if text in line:
                return

    @property
    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.cwd / ".byok" / "stack.json").read_text()))

    def ports(self) -> list[int]:
        info = self.info
        return [info["keyservice"], info["proxyservice"], int(info["vault"].rsplit(":", 1)[1]), info["upstream"]]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[Launcher]]:
    """Launchers a test starts; whatever is left of them is stopped afterwards."""
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.stop()
    devstack(tmp_path, "--stop")


def byokctl_in(cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """byokctl as a newcomer runs it: `source .byok/env` first."""
    command = " ".join(["source .byok/env &&", sys.executable, "-m", "byokctl", *args])
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env(), input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_sighup_stops_everything_and_neither_a_second_run_nor_a_demo_touch_the_running_stack(
        tmp_path: Path, launched: list[Launcher]) -> None:
    first = Launcher.start(tmp_path)
    launched.append(first)
    pids, ports = list(first.info["pids"].values()), first.ports()
    assert len(pids) == 4 and not any(gone(pid) for pid in pids)
    state = tmp_path / ".byok"
    before = {name: (state / name).read_bytes() for name in ("env", "certs/ca.crt", "certs/admin.crt")}
    db_inode = (state / "keyservice.db").stat().st_ino
    key = "sk-proj-" + "k" * 40
    assert byokctl_in(tmp_path, "keys", "add", "--org", "acme", "--provider", "openai", "--name", "kept", "-q",
                      stdin=key).returncode == 0

    second = devstack(tmp_path)
    assert second.returncode == 1
    assert "a byok stack is already running from" in second.stderr and str(state) in second.stderr
    assert f"keyservice localhost:{first.info['keyservice']}" in second.stderr and "`make stop`" in second.stderr

    demo = devstack(tmp_path, "--demo", timeout=300)
    assert demo.returncode == 0 and "demo succeeded" in demo.stdout, demo.stdout[-3000:] + demo.stderr

    assert {name: (state / name).read_bytes() for name in before} == before
    assert (state / "keyservice.db").stat().st_ino == db_inode
    listed = byokctl_in(tmp_path, "keys", "list", "--org", "acme")
    assert listed.returncode == 0 and "kept" in listed.stdout, listed.stderr  # still serving, its data intact
    assert first.process.poll() is None and not any(gone(pid) for pid in pids)

    first.process.send_signal(signal.SIGHUP)  # the terminal closed
    assert first.process.wait(60) == 0
    assert all(gone(pid) for pid in pids)
    assert all(nothing_listens(port) for port in ports)
    assert "no byok stack is running" in devstack(tmp_path, "--stop").stdout


def test_make_stop_stops_a_running_stack_and_what_a_killed_launcher_left(tmp_path: Path,
                                                                          launched: list[Launcher]) -> None:
    running = Launcher.start(tmp_path)
    launched.append(running)
    pids = list(running.info["pids"].values())
    stopped = devstack(tmp_path, "--stop")
    assert stopped.returncode == 0 and "stopped the byok stack" in stopped.stdout
    assert running.process.wait(60) == 0 and all(gone(pid) for pid in pids)

    killed = Launcher.start(tmp_path)
    launched.append(killed)
    pids, ports = list(killed.info["pids"].values()), killed.ports()
    killed.process.kill()  # no chance to clean up: its children (each in its own session) live on
    killed.process.wait(30)
    assert not any(gone(pid) for pid in pids)
    refused = devstack(tmp_path)
    assert refused.returncode == 1 and "is gone" in refused.stderr and "`make stop`" in refused.stderr
    stopped = devstack(tmp_path, "--stop")
    assert stopped.returncode == 0 and "stopped the byok stack" in stopped.stdout
    assert all(gone(pid) for pid in pids) and all(nothing_listens(port) for port in ports)
