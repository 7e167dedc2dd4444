"""`--peers`: LiteLLM proxy as a contender, in its own virtualenv, on the same local upstream and key.

The virtualenv (`.bench-venv-litellm/`, created once with `python3 -m venv` and an exact pin) keeps
LiteLLM's hundreds of dependencies out of the project's .venv. LiteLLM is configured with one model entry
per model name the scenarios use, all routed as OpenAI-compatible to the local upstream; the key reaches it
through its environment (`os.environ/…` in the config), never the file or argv. It runs with a master key
(LiteLLM 1.108 refuses to start without one, and production deployments use one), also passed through its
environment; callers send it as their bearer token, so LiteLLM authenticates each request as the proxy's mTLS
authenticates each connection. Its telemetry and its
fetch of the remote model-price map are switched off: the benchmark only talks to loopback.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.stack import BenchStack
from devstack.ports import free_port
from devstack.processes import clean_env

# The newest LiteLLM whose [proxy] extra the package index here can satisfy: 1.108.8 and later pin
# litellm-enterprise / litellm-proxy-extras builds it lacks, and 1.110 a separate litellm-proxy package.
LITELLM_PIN = "litellm[proxy]==1.108.7"
VENV = Path(".bench-venv-litellm")


def ensure_litellm(venv: Path = VENV) -> Path:
    """The litellm executable, installing the pinned version into `venv` first when needed."""
    exe = venv / "bin" / "litellm"
    stamp = venv / ".bench-pin"
    if exe.exists() and stamp.exists() and stamp.read_text() == LITELLM_PIN:
        return exe
    python = shutil.which("python3") or sys.executable
    if not (venv / "bin" / "python").exists():
        print(f"creating {venv} for LiteLLM …", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    print(f"installing {LITELLM_PIN} into {venv} (once; a few minutes) …", flush=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", LITELLM_PIN], check=True, timeout=1800)
    stamp.write_text(LITELLM_PIN)
    return exe


def litellm_config(upstream_base: str, models: list[str]) -> dict[str, object]:
    return {
        "model_list": [{"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_base": f"{upstream_base}/v1",
                                                            "api_key": "os.environ/BENCH_UPSTREAM_KEY"}}
                       for m in models],
        "litellm_settings": {"telemetry": False, "drop_params": True, "num_retries": 0, "request_timeout": 600},
        "general_settings": {},
    }


def start_litellm(stack: BenchStack, models: list[str]) -> tuple[int, str]:
    """Start LiteLLM on the system-under-test core; returns its port (once /health/liveliness answers) and the
    master key callers must send."""
    exe = ensure_litellm()
    port = free_port()
    master_key = "sk-" + secrets.token_hex(32)
    config = stack.state / "litellm.json"  # LiteLLM reads YAML; JSON is YAML
    config.write_text(json.dumps(litellm_config(stack.upstream_base, models), indent=2))
    env = clean_env(BENCH_UPSTREAM_KEY=stack.upstream_key, LITELLM_MASTER_KEY=master_key,
                    LITELLM_LOCAL_MODEL_COST_MAP="True",
                    LITELLM_TELEMETRY="False", LITELLM_LOG="ERROR", NO_DOCS="True", DISABLE_ADMIN_UI="True")
    argv = [str(exe.resolve()), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]
    stack.start_process("litellm", argv, env, port, sut=True, wait=False)  # slow start: polled below
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stack.group.children[-1][1].poll() is not None:
            raise RuntimeError(f"LiteLLM exited at start (log: {stack.state}/logs/litellm.log)")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=2).status_code == 200:
                return port, master_key
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"LiteLLM did not become live within 120 s (log: {stack.state}/logs/litellm.log)")
