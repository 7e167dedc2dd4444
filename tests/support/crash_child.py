"""A child process for the crash-consistency tests: runs one CredentialManager operation against a real DB and
a real Vault, and dies with `os._exit(137)` (no cleanup, no atexit, no flushing: like a SIGKILL) at a chosen
point between its Vault and DB steps.

Usage: `python -m tests.support.crash_child --db URL --vault-addr ADDR --kv-prefix P --op OP --at STEP [...]`
with VAULT_TOKEN in the environment and the API key (for create/rotate) as the first line of stdin — never in
argv. Before dying it prints one JSON line naming what it touched (ids and paths only, never the key).

`python -m tests.support.crash_child --zygote` imports everything once, then reads JSON commands
(`{"argv": [...], "api_key": "..."}`) from stdin and runs each in a forked child (a real process that really
dies), answering `{"rc": exit code, "note": {...}}` per command: one interpreter start for many crashes.

Ops and crash points (`--at`):
- create   tagged: Vault metadata (managed_by) written, no data yet
           between: Vault written, DB insert not done     | after: both done
- rotate   between: new KV version written, row not moved | after: row moved, old versions not yet destroyed
- delete   between: row deleted, Vault secret still there  | after: both done
- register between: DB row inserted, Vault metadata not tagged yet | after: both done
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, NoReturn

from keyservice.credentials import CredentialManager, NewCredential
from keyservice.store import Store
from keyservice.vault import VaultClient, VaultSettings

CRASH_EXIT = 137
_note_fd = 1  # where crash() writes its note: stdout, or the zygote's pipe in a forked child


def crash(note: dict[str, Any]) -> NoReturn:
    os.write(_note_fd, (json.dumps(note) + "\n").encode())
    os._exit(CRASH_EXIT)


def main(argv: list[str] | None = None) -> None:
    if (argv if argv is not None else sys.argv[1:]) == ["--zygote"]:
        zygote()
        return
    run(argv, sys.stdin.readline().strip())


def zygote() -> None:
    global _note_fd
    for line in sys.stdin:
        command = json.loads(line)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: run one operation and die at the chosen step
            os.close(read_end)
            _note_fd = write_end
            try:
                run(command["argv"], command.get("api_key", ""))
            except BaseException:  # noqa: BLE001 - reported as exit code 1, like an uncaught exception
                traceback.print_exc()
            os._exit(1)
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        text = b"".join(chunks).decode().strip()
        note = json.loads(text.splitlines()[-1]) if text else {}
        sys.stdout.write(json.dumps({"rc": os.waitstatus_to_exitcode(status), "note": note}) + "\n")
        sys.stdout.flush()


def run(argv: list[str] | None, api_key: str) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--vault-addr", required=True)
    parser.add_argument("--kv-prefix", required=True)
    parser.add_argument("--op", required=True, choices=("create", "rotate", "delete", "register"))
    parser.add_argument("--at", required=True, choices=("tagged", "between", "after"))
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
        if args.at == "tagged":
            def data_write_crash(path: str, value: Any, cas: Any) -> NoReturn:
                crash({**note, "vault_path": path})
            vault._kv_write = data_write_crash  # type: ignore[method-assign]
        elif args.at == "between":
            def insert_then_crash(row: Any, **_: Any) -> NoReturn:
                crash({**note, "credential_id": row.credential_id, "vault_path": row.vault_path})
            store.insert_credential = insert_then_crash  # type: ignore[method-assign]
        row = manager.create("spiffe://byok.local/crash", new, api_key)
        crash({**note, "credential_id": row.credential_id, "vault_path": row.vault_path})
    elif args.op == "rotate":
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
    os._exit(1)  # reached only if the planned crash did not happen: the parent sees 1, not 137


if __name__ == "__main__":
    main()
