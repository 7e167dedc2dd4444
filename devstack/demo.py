"""`make demo`: the README's first walk (devstack.stack.WALK) once, against a stack of its own, with the real
byokctl and vault CLI: add a key, list, rotate, check the Vault metadata, bind a caller, stream a chat,
deactivate the key and see the next request fail, delete it, show the audit trail."""

from __future__ import annotations

import json
import secrets
import subprocess
import time

from devstack.stack import ADMIN, Stack, bao, byokctl

REVOCATION_WAIT_SECONDS = 10.0  # revocations reach the proxy in well under a second; this bounds a slow machine


def chat_until_refused(stack: Stack, prompt: str, wait: float | None = None) -> subprocess.CompletedProcess[str]:
    """Chat until the proxy refuses (the deactivation has reached it) or `wait` seconds pass
    (REVOCATION_WAIT_SECONDS by default); the last try."""
    deadline = time.monotonic() + (REVOCATION_WAIT_SECONDS if wait is None else wait)
    while True:
        result = byokctl(stack, "chat", "--org", "acme", "--model", "gpt-4o-mini", prompt, check=False)
        if result.returncode != 0 or time.monotonic() >= deadline:
            return result
        time.sleep(0.2)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def fake_openai_key() -> str:
    return "sk-proj-" + secrets.token_hex(24)  # shaped like a real key; the local upstream takes any


def run_demo(stack: Stack) -> int:
    key = fake_openai_key()
    checks: dict[str, bool] = {}
    step("add an OpenAI key for org acme (the key goes in on stdin; -q prints only the new id)")
    credential_id = byokctl(stack, "keys", "add", "--org", "acme", "--provider", "openai", "--name", "main", "-q",
                            stdin=key + "\n").stdout.strip()
    print(credential_id)
    print(byokctl(stack, "keys", "list", "--org", "acme").stdout)

    step("rotate it: a new secret version; proxies drop the old one")
    new_key = fake_openai_key()
    rotated = json.loads(byokctl(stack, "--json", "keys", "rotate", credential_id, stdin=new_key + "\n").stdout)
    print(f"{credential_id}: secret version {rotated['secret_ref']['version']}, key {rotated['key_hint']}")
    checks["rotated to version 2"] = rotated["secret_ref"]["version"] == "2"

    step("what Vault holds beside the secret: org, provider, name, id — never the key")
    path = f"{rotated['secret_ref']['mount']}/{rotated['secret_ref']['path']}"
    metadata = bao(stack, "kv", "metadata", "get", path).stdout
    print(metadata)
    checks["metadata names the credential, not the key"] = (
        credential_id in metadata and key not in metadata and new_key not in metadata)

    step(f"let the caller {ADMIN} act for acme")
    print(byokctl(stack, "bindings", "add", ADMIN, "--org", "acme").stdout)
    step("stream a chat through the proxy (the local upstream answers every prompt with the same canned text)")
    chat = byokctl(stack, "chat", "--org", "acme", "--model", "gpt-4o-mini", "Say hello", check=False)
    print(chat.stdout, chat.stderr)
    checks["the chat streamed"] = chat.returncode == 0

    step("deactivate the key")
    print(byokctl(stack, "keys", "deactivate", credential_id).stdout)
    step("the next request fails (once the revocation has reached the proxy, in well under a second)")
    failed = chat_until_refused(stack, "Again")
    print(f"exit code {failed.returncode}: {failed.stderr.strip()}")
    checks["the next chat was refused"] = failed.returncode != 0

    step("delete it: the row, then every Vault version")
    print(byokctl(stack, "keys", "delete", credential_id).stdout)
    checks["the key is gone"] = byokctl(stack, "keys", "get", credential_id, check=False).returncode == 3

    step("audit trail")
    print(byokctl(stack, "audit", "--org", "acme").stdout)
    missed = [what for what, ok in checks.items() if not ok]
    print("demo succeeded" if not missed else f"demo FAILED: not {'; not '.join(missed)}")
    return 0 if not missed else 1
