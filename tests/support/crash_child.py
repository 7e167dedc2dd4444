"""A child process for the crash-consistency tests: runs one CredentialManager operation against a real DB and
a real Vault, and dies with `os._exit(137)` (no cleanup, no atexit, no flushing: like a SIGKILL) at a chosen
point between its Vault and DB steps.

Usage: `python -m tests.support.crash_child --db URL --vault-addr ADDR --kv-prefix P --op OP --at STEP [...]`
with VAULT_TOKEN in the environment and the API key (for create/rotate) as the first line of stdin — never in
argv. Before dying it prints one JSON line naming what it touched (ids and paths only, never the key).

Ops and crash points (`--at`):
- create   between: Vault written, DB insert not done     | after: both done
- rotate   between: new KV version written, row not moved | after: row moved, old versions not yet destroyed
- delete   between: row deleted, Vault secret still there  | after: both done
- register between: DB row inserted, Vault metadata not tagged yet | after: both done
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, NoReturn

from keyservice.credentials import CredentialManager, NewCredential
from keyservice.store import Store
from keyservice.vault import VaultClient, VaultSettings

CRASH_EXIT = 137


def crash(note: dict[str, Any]) -> NoReturn:
    sys.stdout.write(json.dumps(note) + "\n")
    sys.stdout.flush()
    os._exit(CRASH_EXIT)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--vault-addr", required=True)
    parser.add_argument("--kv-prefix", required=True)
    parser.add_argument("--op", required=True, choices=("create", "rotate", "delete", "register"))
    parser.add_argument("--at", required=True, choices=("between", "after"))
    parser.add_argument("--org", default="crash")
    parser.add_argument("--name", default="c")
    parser.add_argument("--credential-id", default="")
    parser.add_argument("--vault-path", default="")
    args = parser.parse_args(argv)

    store = Store(args.db)
    vault = VaultClient(VaultSettings(addr=args.vault_addr, token=os.environ["VAULT_TOKEN"],
                                      kv_prefix=args.kv_prefix, max_retries=1, timeout_seconds=5.0))
    manager = CredentialManager(store, vault, keep_secret_versions=2)
    new = NewCredential(provider="openai", org_id=args.org, project_id="", user_id="", name=args.name,
                        api_base="", default_model="", primary=False)
    note: dict[str, Any] = {"op": args.op, "at": args.at, "credential_id": args.credential_id}

    # Each patch replaces the *next* step after the one we want done with a crash (instance attributes,
    # so only this process's objects are affected).
    if args.op == "create":
        api_key = sys.stdin.readline().strip()
        if args.at == "between":
            def insert_then_crash(row: Any, **_: Any) -> NoReturn:
                crash({**note, "credential_id": row.credential_id, "vault_path": row.vault_path})
            store.insert_credential = insert_then_crash  # type: ignore[method-assign]
        row = manager.create("spiffe://byok.local/crash", new, api_key)
        crash({**note, "credential_id": row.credential_id, "vault_path": row.vault_path})
    elif args.op == "rotate":
        api_key = sys.stdin.readline().strip()
        if args.at == "between":
            def update_then_crash(credential_id: str, **_: Any) -> NoReturn:
                crash(note)
            store.update_credential = update_then_crash  # type: ignore[method-assign]
        else:
            def destroy_then_crash(row: Any) -> NoReturn:
                crash({**note, "secret_version": row.secret_version})
            manager._destroy_old_versions = destroy_then_crash  # type: ignore[method-assign]
        manager.rotate("spiffe://byok.local/crash", args.credential_id, api_key)
    elif args.op == "delete":
        if args.at == "between":
            def forget_then_crash(path: str) -> NoReturn:
                crash({**note, "vault_path": path})
            manager._forget_secret = forget_then_crash  # type: ignore[method-assign]
        manager.delete("spiffe://byok.local/crash", args.credential_id)
        crash(note)
    else:
        if args.at == "between":
            def tag_then_crash(path: str, metadata: dict[str, str]) -> NoReturn:
                crash({**note, "vault_path": path})
            vault.set_custom_metadata = tag_then_crash  # type: ignore[method-assign]
        row = manager.register("spiffe://byok.local/crash", new, args.vault_path)
        crash({**note, "credential_id": row.credential_id, "vault_path": row.vault_path})
    sys.exit(1)  # unreachable unless the operation raised: the parent sees exit code 1, not 137


if __name__ == "__main__":
    main()
