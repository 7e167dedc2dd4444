"""The local stack as a newcomer uses it (`make run`, then byokctl and the vault CLI), as real processes."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.bao import bao_binary
from devstack.demo import run_demo
from devstack.stack import WALK, Stack, byokctl, start


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start(tmp_path_factory.mktemp("byok-state"))
    try:
        yield running
    finally:
        running.stop()


def test_add_list_rotate_deactivate_delete_with_byokctl(stack: Stack) -> None:
    key = "sk-proj-" + secrets.token_hex(20)
    created = json.loads(byokctl(stack, "--json", "keys", "add", "--org", "newco", "--provider", "openai",
                                 "--name", "main", stdin=key + "\n").stdout)
    credential_id = created["credential_id"]
    listing = byokctl(stack, "keys", "list", "--org", "newco").stdout
    assert credential_id in listing and key not in listing and key[-4:] in listing

    path = f"{created['secret_ref']['mount']}/{created['secret_ref']['path']}"
    env = {**os.environ, **stack.client_env()}
    meta = json.loads(subprocess.run([bao_binary(), "kv", "metadata", "get", "-format=json", path], env=env,
                                     capture_output=True, text=True, check=True, timeout=30).stdout)
    custom = meta["data"]["custom_metadata"]
    assert (custom["org_id"], custom["provider"], custom["name"], custom["credential_id"]) == (
        "newco", "openai", "main", credential_id)
    assert key not in json.dumps(meta)

    rotated = json.loads(byokctl(stack, "--json", "keys", "rotate", credential_id,
                                 stdin="sk-proj-" + secrets.token_hex(20) + "\n").stdout)
    assert rotated["secret_ref"]["version"] == "2"
    deactivated = json.loads(byokctl(stack, "--json", "keys", "deactivate", credential_id).stdout)
    assert deactivated["active"] is False
    byokctl(stack, "keys", "delete", credential_id)
    missing = byokctl(stack, "keys", "get", credential_id, check=False)
    assert missing.returncode == 3 and "NOT_FOUND" in missing.stderr


def test_key_never_on_the_command_line(stack: Stack) -> None:
    refused = byokctl(stack, "keys", "add", "--org", "x", "--provider", "openai", "--name", "n", "--api-key",
                      "sk-proj-" + "a" * 40, check=False)
    assert refused.returncode == 2  # there is no such flag: keys come from stdin or a prompt


def test_demo_story(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_demo(stack) == 0
    out = capsys.readouterr().out
    assert "credential.deactivate" in out and "lease.issue" in out and "exit code 3" in out


def test_state_stays_under_the_state_directory(stack: Stack) -> None:
    assert (stack.state / "certs" / "admin.key").stat().st_mode & 0o077 == 0
    assert (stack.env_file.stat().st_mode & 0o077) == 0
    assert Path(stack.state / "keyservice.db").exists()


def test_the_readme_walk_runs_as_written_from_any_directory(stack: Stack, tmp_path: Path) -> None:
    """The README's walk (devstack.stack.WALK, which a unit test holds equal to the README) in bash, from a
    directory that is not the repository: .byok/env holds absolute paths, `id=$(… -q)` carries the id."""
    exported = dict(line.removeprefix("export ").split("=", 1) for line in stack.env_file.read_text().splitlines())
    for variable in ("BYOK_CLIENT_CERT", "BYOK_CLIENT_KEY", "BYOK_CA"):
        assert Path(exported[variable]).is_absolute() and Path(exported[variable]).is_file(), variable
    script = (WALK.replace("source .byok/env", f"source {stack.env_file.resolve()}")
              .replace(".venv/bin/", f"{Path(sys.executable).parent}/").replace("acme", "walker"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYOK_", "VAULT_", "BAO_"))}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "alpha bravo charlie" in run.stdout  # the local upstream's canned answer, streamed through the proxy
    deleted = re.search(r"^deleted (cred_\w+)$", run.stdout, re.M)
    assert deleted is not None, run.stdout
    credential_id = deleted.group(1)
    assert f"map[credential_id:{credential_id} " in run.stdout and "org_id:walker" in run.stdout  # Vault metadata
    for action in ("credential.create", "credential.rotate", "lease.issue", "credential.deactivate"):
        assert action in run.stdout, action


def test_health_ports_answer_the_image_healthcheck(stack: Stack) -> None:
    ports = json.loads((stack.state / "stack.json").read_text())["health"]
    for service in ("keyservice", "proxyservice"):
        result = subprocess.run([sys.executable, "-m", "byokcommon.healthcheck", "--addr",
                                 f"127.0.0.1:{ports[service]}"], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stdout.strip() == "SERVING", (service, result.stderr)


@pytest.mark.parametrize("module", ["keyservice", "proxyservice"])
def test_entrypoints_refuse_bad_settings_naming_the_variable(module: str, tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "BYOK_TLS_CERT": str(tmp_path / "missing.crt"),
           "BYOK_TLS_KEY": str(tmp_path / "k"), "BYOK_TLS_CA": str(tmp_path / "ca")}
    result = subprocess.run([sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "BYOK_TLS_CERT" in result.stderr
