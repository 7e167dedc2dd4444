"""Adapters own their library, and the services stay apart (DESIGN.md): only the Vault adapter package imports
hvac (and requests), only the store package (and its migrations) SQLAlchemy and Alembic, only verify and the
proxy's upstream module httpx; each maps its library's exceptions itself, so errors.py names none of them. The
proxy reaches keyservice over gRPC only, and the shared plumbing imports neither service."""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("byokcommon", "keyservice", "proxyservice", "byokctl", "devstack")
# Library (top-level module) -> the only files that may import it.
OWNERS = {
    "hvac": {"keyservice/vault/*"},
    "requests": {"keyservice/vault/*"},
    "sqlalchemy": {"keyservice/store/*"},
    "alembic": {"keyservice/store/*"},
    "httpx": {"keyservice/verify.py", "proxyservice/upstream.py", "proxyservice/transport.py"},
    "httptools": {"proxyservice/transport.py"},
    "httpcore": set(),  # httpx's own engine: the proxy runs its transport instead, and nothing reaches into it
    "opentelemetry": {"proxyservice/tracing.py"},
    "botocore": {"proxyservice/upstream.py", "proxyservice/adapters/bedrock.py", "keyservice/derive/*",
                 "devstack/cloudfakes/*", "devstack/authfakes/*"},
    "msal": {"keyservice/derive/*"},
    # google-auth is not listable: its top-level name, google, is protobuf's too.
    "urllib3": {"keyservice/vault/*", "keyservice/derive/http.py"},
}
# Package -> packages it must never import.
APART = {
    "proxyservice": {"keyservice"},
    "keyservice": {"proxyservice"},
    "byokcommon": {"keyservice", "proxyservice", "byokctl", "devstack"},
    "byokctl": {"keyservice", "proxyservice"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module the file imports, at any depth (function-level imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_only_the_adapter_imports_its_library(library: str) -> None:
    offenders = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        if library in imported_modules(path) and not any(fnmatch.fnmatch(rel, p) for p in OWNERS[library]):
            offenders.append(rel)
    assert offenders == []


def test_the_services_stay_apart() -> None:
    offenders = []
    for path in sources():
        rel = path.relative_to(ROOT).as_posix()
        forbidden = APART.get(rel.split("/")[0], set()) & imported_modules(path)
        offenders += [f"{rel} imports {name}" for name in sorted(forbidden)]
    assert offenders == []


def private_imports_across_packages(path: Path, rel: str) -> list[str]:
    """`from other_package.x import _name` or `import other_package._x`: another package's private parts."""
    own = rel.split("/")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in (own, "__future__"):
                continue
            private = [a.name for a in node.names if a.name.startswith("_")]
            if private or any(part.startswith("_") for part in node.module.split(".")):
                found.append(f"{rel}: from {node.module} import {', '.join(private) or '…'}")
    return found


def test_no_package_imports_another_packages_private_names() -> None:
    """Issue 13: reliability took the local upstream's `_bearer`; each package's private names are its own."""
    offenders = []
    for package in (*PACKAGES, "bench", "reliability"):
        for path in sorted((ROOT / package).rglob("*.py")):
            offenders += private_imports_across_packages(path, path.relative_to(ROOT).as_posix())
    assert offenders == []
