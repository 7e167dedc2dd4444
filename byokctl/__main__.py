"""`python -m byokctl`: see byokctl/cli.py."""

from __future__ import annotations

import sys

from byokctl.cli import main

if __name__ == "__main__":
    sys.exit(main())
