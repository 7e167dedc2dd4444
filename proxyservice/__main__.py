"""`python -m proxyservice`: load settings from the environment, configure logging, serve until signalled."""

from __future__ import annotations

import asyncio
import sys

from byokcommon.logging import configure
from byokcommon.settings import SettingsError, environ


def main() -> int:
    from proxyservice.server import serve
    from proxyservice.settings import ProxySettings

    try:
        settings = ProxySettings.from_env(environ())
    except (SettingsError, FileNotFoundError) as exc:
        print(f"proxyservice: bad setting: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        from proxyservice.workers import supervise

        return supervise(environ(), settings.workers, settings.metrics_addr)
    configure(settings.log_level, service="proxyservice")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
