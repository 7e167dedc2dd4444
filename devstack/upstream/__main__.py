"""`python -m devstack.upstream`: see devstack/upstream/server.py."""

from __future__ import annotations

from devstack.upstream.server import main

if __name__ == "__main__":
    main()
