"""`python -m keyservice`: load settings from the environment, configure logging, serve until signalled."""

from __future__ import annotations

import sys

from byokcommon.runner import main
from keyservice.server import serve
from keyservice.settings import KeyServiceSettings

if __name__ == "__main__":
    sys.exit(main("keyservice", KeyServiceSettings.from_env, serve))
