"""`make demo` waits for a deactivation to reach the proxy instead of racing it."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from devstack import demo


def test_demo_retries_until_the_revocation_has_taken_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    chats_after_deactivate: list[int] = []
    state = {"deactivated": False}

    def fake_byokctl(stack: Any, *args: str, stdin: str | None = None, check: bool = True
                     ) -> subprocess.CompletedProcess[str]:
        out = ""
        code = 0
        if "add" in args and "keys" in args:
            out = '{"credential_id": "cred_' + "0" * 24 + '"}'
        elif "deactivate" in args:
            state["deactivated"] = True
        elif "chat" in args and state["deactivated"]:
            chats_after_deactivate.append(1)
            code = 3 if len(chats_after_deactivate) >= 3 else 0  # the revocation lands on the third try
        return subprocess.CompletedProcess(list(args), code, out, "NOT_FOUND" if code else "")

    monkeypatch.setattr(demo, "byokctl", fake_byokctl)
    monkeypatch.setattr(demo.time, "sleep", lambda _s: None)
    assert demo.run_demo(None) == 0  # type: ignore[arg-type]
    assert len(chats_after_deactivate) == 3
    assert demo.chat_until_refused(None, "x", wait=0).returncode == 3  # type: ignore[arg-type]
