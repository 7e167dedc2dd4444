"""`make demo`: the whole story once against the local stack, with the real byokctl: add a key, stream a
chat, deactivate the key, see the next request fail, show the audit trail."""

from __future__ import annotations

import json
import secrets
import subprocess
import time

from devstack.stack import ADMIN, Stack, byokctl

REVOCATION_WAIT_SECONDS = 10.0  # revocations reach the proxy in well under a second; this bounds a slow machine


def chat_until_refused(stack: Stack, prompt: str, wait: float = REVOCATION_WAIT_SECONDS
                       ) -> subprocess.CompletedProcess[str]:
    """Chat until the proxy refuses (the deactivation has reached it) or `wait` seconds pass; the last try."""
    deadline = time.monotonic() + wait
    while True:
        result = byokctl(stack, "chat", "--org", "acme", "--model", "gpt-4o-mini", prompt, check=False)
        if result.returncode != 0 or time.monotonic() >= deadline:
            return result
        time.sleep(0.2)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_demo(stack: Stack) -> int:
    fake_key = "sk-proj-" + secrets.token_hex(24)  # a fake shaped like a real key; the local upstream takes it
    step("add an OpenAI key for org acme (the key goes in on stdin)")
    created = json.loads(byokctl(stack, "--json", "keys", "add", "--org", "acme", "--provider", "openai",
                                 "--name", "main", stdin=fake_key + "\n").stdout)
    credential_id = created["credential_id"]
    print(byokctl(stack, "keys", "list", "--org", "acme").stdout)
    step(f"let the caller {ADMIN} act for acme")
    print(byokctl(stack, "bindings", "add", ADMIN, "--org", "acme").stdout)
    step("stream a chat through the proxy")
    chat = byokctl(stack, "chat", "--org", "acme", "--model", "gpt-4o-mini", "Say hello")
    print(chat.stdout, chat.stderr)
    step("deactivate the key")
    print(byokctl(stack, "keys", "deactivate", credential_id).stdout)
    step("the next request fails (once the revocation has reached the proxy, in well under a second)")
    failed = chat_until_refused(stack, "Again")
    print(f"exit code {failed.returncode}: {failed.stderr.strip()}")
    step("audit trail")
    print(byokctl(stack, "audit", "--org", "acme").stdout)
    ok = chat.returncode == 0 and failed.returncode != 0
    print("demo", "succeeded" if ok else "FAILED")
    return 0 if ok else 1
