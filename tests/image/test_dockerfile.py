"""The container image recipe (Dockerfile), parsed as text: Docker cannot run here."""

from __future__ import annotations

import re
import sys

from tests.helm.chart import (
    DOCKERFILE,
    POD_KINDS,
    REPO,
    SECRET_SHAPES,
    VALUE_SETS,
    containers,
    manifests,
    pod_spec,
)

# --- container image -------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, arguments = stripped.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_and_runs_as_uid_10001() -> None:
    stages = _stages()
    assert len(stages) >= 2
    # Each stage's own FROM line names the base, with the global ARG defaults (before the first FROM) applied.
    args = dict(a.split("=", 1) for k, a in _dockerfile_instructions() if k == "ARG" and "=" in a)
    images = [re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), stage[0][1].split()[0])
              for stage in stages]
    assert all(image.startswith("python:3.11-slim") for image in images), images
    final = stages[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users and re.fullmatch(r"10001(:\d+)?", users[-1]), "the final USER must be numeric 10001"
    assert any(k == "COPY" and "--from=" in a and "/app/.venv" in a for k, a in final)
    assert any(k in ("CMD", "ENTRYPOINT") for k, _ in final)
    assert any(k == "RUN" and "pip install --no-cache-dir ." in a for k, a in stages[0])


def test_dockerfile_has_no_remote_add_healthcheck_compilers_or_secrets() -> None:
    instructions = _dockerfile_instructions()
    assert not [a for k, a in instructions if k == "ADD" and re.search(r"https?://", a)]
    assert "HEALTHCHECK" not in {k for k, _ in instructions}
    final_runs = " ".join(a for k, a in _stages()[-1] if k == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|clang)\b", final_runs)
    for keyword, arguments in instructions:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY)", arguments, re.IGNORECASE), arguments
    assert not SECRET_SHAPES.search(DOCKERFILE.read_text())


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # Benchmark virtualenvs (LiteLLM's is ~750 MB), harnesses and caches are not the services.
    assert {".venv", ".git", "tests", ".byok", ".bench-venv*", "bench", "reliability", ".hypothesis"} <= patterns


def _python_modules() -> set[str]:
    """Every `python -m X` the image or the chart (any value set) runs."""
    found = re.findall(r'python"?\s*,?\s*"?-m"?\s*,?\s*"?([\w.]+)', DOCKERFILE.read_text())
    # The standard library's own (`python -m venv` in the builder) are not the project's.
    modules = {m for m in found if m.split(".")[0] not in sys.stdlib_module_names}
    for value_set in VALUE_SETS:
        for doc in manifests(value_set):
            if doc["kind"] not in POD_KINDS:
                continue
            for container in containers(pod_spec(doc)):
                command = container.get("command", [])
                if command[:2] == ["python", "-m"]:
                    modules.add(command[2])
    return modules


def test_every_module_the_image_and_chart_run_exists() -> None:
    modules = _python_modules()
    assert {"keyservice", "proxyservice", "keyservice.migrate", "byokcommon.healthcheck"} <= modules
    missing = []
    for module in sorted(modules):
        base = REPO.joinpath(*module.split("."))
        if not ((base / "__main__.py").is_file() or base.with_suffix(".py").is_file()):
            missing.append(module)
    assert missing == [], f"modules run by the image or chart but absent from the repo: {missing}"
