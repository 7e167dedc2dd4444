"""Several proxy worker processes sharing one port, so the proxy uses every core (BYOK_WORKERS).

The supervisor starts N copies of `python -m proxyservice` as workers; each binds the same gRPC and health
ports with SO_REUSEPORT (the kernel spreads connections), keeps its own lease cache and follows the
revocation stream itself. Workers record metrics into PROMETHEUS_MULTIPROC_DIR and the supervisor serves
the sum on the metrics port. If a worker dies the supervisor stops the rest and exits non-zero, so the
orchestrator restarts the pod rather than running it half-sized. Signals are forwarded for a graceful stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping


def supervise(env: Mapping[str, str], workers: int, metrics_addr: str, stop_seconds: float = 15.0) -> int:
    """Run `workers` worker processes until a signal or a worker's death; on stop, each worker gets
    `stop_seconds` (its drain plus grace) before it is killed."""
    metrics_dir = tempfile.mkdtemp(prefix="byok-proxy-metrics-")
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker_env = dict(env, PROMETHEUS_MULTIPROC_DIR=metrics_dir, BYOK_METRICS_ADDR="", BYOK_WORKERS="1",
                          BYOK_WORKER_OF_SUPERVISOR="1")
        for index in range(workers):
            children.append(subprocess.Popen([sys.executable, "-m", "proxyservice"],
                                             env=dict(worker_env, BYOK_WORKER_INDEX=str(index))))
        server = _serve_metrics(metrics_dir, metrics_addr) if metrics_addr else None
        status = 0
        while not stopping:
            for child in children:
                if child.poll() is not None:
                    print(f"proxyservice worker {child.pid} exited with {child.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    status = 1
                    stop()
                    break
            time.sleep(0.5)
        deadline = time.monotonic() + stop_seconds
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if server is not None:
            server.shutdown()
        return status
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_metrics(metrics_dir: str, addr: str):  # type: ignore[no-untyped-def]
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from prometheus_client import CollectorRegistry, multiprocess

    from byokcommon.metrics import start_metrics_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=metrics_dir)
    server, _thread, _port = start_metrics_server(registry, addr)
    return server
