"""`make demo` runs the README's walk (and waits for a deactivation to reach the proxy instead of racing it);
the README, `make run`'s banner and the demo tell the same story."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack import demo
from devstack.stack import ADMIN, WALK

REPO = Path(__file__).resolve().parents[2]
CID = "cred_" + "0" * 24


class FakeTools:
    """byokctl and bao as the demo calls them, recording each command's words (as in WALK: `keys add`, …)."""

    def __init__(self, refuse_after: int = 1) -> None:
        self.calls: list[str] = []
        self.chats_after_deactivate = 0
        self.refuse_after = refuse_after
        self.deactivated = False

    def byokctl(self, stack: Any, *args: str, stdin: str | None = None, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        words = [a for a in args if a != "--json"]
        command = " ".join(words[:2]) if words[0] in ("keys", "bindings") else words[0]
        self.calls.append(f"byokctl {command}")
        out, code = "", 0
        if command == "keys add":
            assert "-q" in args and stdin
            out = CID + "\n"
        elif command == "keys rotate":
            out = json.dumps({"secret_ref": {"mount": "secret", "path": f"byok/acme/{CID}", "version": "2"},
                              "key_hint": "sk-…abcd"})
        elif command == "keys deactivate":
            self.deactivated = True
        elif command == "keys get":
            code = 3
        elif command == "chat" and self.deactivated:
            self.chats_after_deactivate += 1
            code = 3 if self.chats_after_deactivate >= self.refuse_after else 0
        return subprocess.CompletedProcess(list(args), code, out, "NOT_FOUND" if code else "")

    def bao(self, stack: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append("bao " + " ".join(args[:3]))
        assert args[3] == f"secret/byok/acme/{CID}"
        return subprocess.CompletedProcess(list(args), 0, f"credential_id    {CID}\norg_id    acme\n", "")


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    fake = FakeTools(refuse_after=3)  # the revocation lands on the third try
    monkeypatch.setattr(demo, "byokctl", fake.byokctl)
    monkeypatch.setattr(demo, "bao", fake.bao)
    monkeypatch.setattr(demo.time, "sleep", lambda _s: None)
    return fake


def test_demo_retries_until_the_revocation_has_taken_effect(tools: FakeTools) -> None:
    assert demo.run_demo(None) == 0  # type: ignore[arg-type]
    assert tools.chats_after_deactivate == 3
    assert demo.chat_until_refused(None, "x", wait=0).returncode == 3  # type: ignore[arg-type]


def walk_steps() -> list[str]:
    """The walk's commands as `tool subcommand` (`byokctl keys add`, `bao kv metadata get`), in order."""
    return [f"{tool}{words}" for tool, words in re.findall(r"\.venv/bin/(byokctl|bao)((?: [a-z]+)+)(?=[ )\n])", WALK)]


def test_the_demo_runs_every_step_of_the_readme_walk_in_order(tools: FakeTools, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    steps = walk_steps()
    assert steps == ["byokctl keys add", "byokctl keys list", "byokctl keys rotate", "bao kv metadata get",
                     "byokctl bindings add", "byokctl chat", "byokctl keys deactivate", "byokctl keys delete",
                     "byokctl audit"]
    assert demo.run_demo(None) == 0  # type: ignore[arg-type]
    remaining = iter(tools.calls)
    assert all(step in remaining for step in steps), tools.calls  # a subsequence: the walk's order
    assert "demo succeeded" in capsys.readouterr().out


def test_the_demo_fails_when_a_step_does_not_do_what_the_walk_says(tools: FakeTools, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    tools.refuse_after = 2**62  # the deactivation never reaches the proxy
    monkeypatch.setattr(demo, "REVOCATION_WAIT_SECONDS", 0.0)
    assert demo.run_demo(None) == 1  # type: ignore[arg-type]
    assert tools.chats_after_deactivate == 1
    assert "demo FAILED: not the next chat was refused" in capsys.readouterr().out


def test_readme_shows_the_walk_verbatim_and_make_demo_once() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = readme.split("```")[1::2]
    assert f"sh\n{WALK}" in blocks, "the README's walk differs from devstack.stack.WALK (what make run prints)"
    assert ADMIN in WALK
    targets = readme.partition("Other targets:")[2].partition("\n\n")[0]
    assert "make demo" not in targets and "make stop" in targets
    assert "alpha bravo charlie" in readme  # the canned answer is explained where the walk is


def test_make_run_prints_the_walk_with_its_own_env_file() -> None:
    from devstack.stack import Stack, banner

    stack = Stack(state=Path("/s"), vault_addr="http://127.0.0.1:1", vault_token="t", keyservice_port=2,
                  proxy_port=3, upstream_port=4, env_file=Path("/s/env"), processes=None)  # type: ignore[arg-type]
    text = banner(stack)
    assert "source /s/env" in text and "alpha bravo charlie" in text
    for line in WALK.splitlines()[1:]:
        assert line in text
