"""`python -m keyservice`: load settings from the environment, configure logging, serve until signalled."""

from __future__ import annotations

import asyncio
import sys

from byokcommon.logging import configure
from byokcommon.settings import SettingsError, environ


def main() -> int:
    from keyservice.server import serve
    from keyservice.settings import KeyServiceSettings

    try:
        settings = KeyServiceSettings.from_env(environ())
    except (SettingsError, FileNotFoundError) as exc:
        print(f"keyservice: bad setting: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, service="keyservice")
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
