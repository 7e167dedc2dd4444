"""`python -m proxyservice`: load settings from the environment, then serve until signalled — or, with
BYOK_WORKERS > 1, supervise that many worker processes sharing the port."""

from __future__ import annotations

import sys

from byokcommon.runner import main
from byokcommon.settings import SettingsError, environ
from proxyservice.server import serve
from proxyservice.settings import ProxySettings


def run() -> int:
    try:
        settings = ProxySettings.from_env(environ())
    except (SettingsError, FileNotFoundError):  # main() below reports it, naming the variable
        settings = None
    if settings is not None and settings.workers > 1:
        from proxyservice.workers import supervise

        return supervise(environ(), settings.workers, settings.metrics_addr,
                         stop_seconds=settings.shutdown_drain_seconds + settings.shutdown_grace_seconds + 5)
    return main("proxyservice", ProxySettings.from_env, serve)


if __name__ == "__main__":
    sys.exit(run())
