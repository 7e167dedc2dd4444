"""A throwaway PostgreSQL cluster (initdb into a temp dir, loopback port, socket in the temp dir), never the
machine's shared server: scenarios stop and restart it. initdb refuses root, so it runs as the `postgres` OS
user when we are root."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from devstack.ports import free_port, port_open


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PgCluster:
    def __init__(self, work: Path) -> None:
        bindir = pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user, self.user)
        self.data = self.dir / "data"
        self.log = work / "logs" / "postgres.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.started = False

    def _run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full = ["/usr/sbin/runuser", "-u", self.user, "--", *argv] if self.user else list(argv)
        return subprocess.run(full, capture_output=True, text=True, check=check, timeout=timeout,
                              cwd=str(self.dir), env={"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8"})

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", opts,
                  "-w", "start")
        self.started = True
        deadline = time.monotonic() + 20
        while not port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
            self.started = False

    def kill(self) -> None:
        """Like a crash of the server: immediate shutdown (no checkpoint)."""
        self.stop("immediate")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        name = "byok_rel_" + secrets.token_hex(4)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def dump(self, url: str) -> str:
        """pg_dump of one database (data and schema), as text."""
        name = url.rsplit("/", 1)[1]
        out = subprocess.run([str(self.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                              name], capture_output=True, text=True, timeout=60, check=True,
                             env={"PATH": "/usr/bin:/bin"})
        return out.stdout

    def destroy(self) -> None:
        self.stop("immediate")
        if self.log.parent.exists() and (self.dir / "server.log").exists():
            shutil.copy(self.dir / "server.log", self.log)
        shutil.rmtree(self.dir, ignore_errors=True)
