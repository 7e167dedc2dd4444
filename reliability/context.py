"""What every scenario gets: the mode (quick or full), a private work directory, the overall deadline, and the
shared throwaway PostgreSQL cluster and OpenBao (started on first use)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from reliability.pg import PgCluster
from reliability.vault import Vault


@dataclass
class Context:
    quick: bool
    root: Path
    deadline: float  # time.monotonic() by which everything must be done
    work: Path = field(default_factory=Path)
    _pg: PgCluster | None = None
    _vault: Vault | None = None

    def n(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def pg(self) -> PgCluster:
        if self._pg is None:
            self._pg = PgCluster(self.root)
        if not self._pg.started:
            self._pg.start()
        return self._pg

    def vault(self) -> Vault:
        """The shared OpenBao (audit device on), for scenarios that do not seal or kill it; each uses its own
        KV prefix. Scenario 1 starts its own."""
        if self._vault is None or not self._vault.proc.alive():
            self._vault = Vault(self.root, audit=True)
            self._vault.proc.shared = True
            self._vault.start()
        return self._vault

    def close(self) -> None:
        if self._vault is not None:
            self._vault.stop()
        if self._pg is not None:
            self._pg.destroy()
            self._pg = None
