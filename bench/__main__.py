"""`python -m bench` (make bench) and `python -m bench --peers` (make bench-peers): see bench/README.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.run import HTTP_SCENARIOS, SCENARIOS, main


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="byok proxy benchmarks (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke run in under a minute")
    ap.add_argument("--peers", action="store_true",
                    help="add LiteLLM proxy as a contender (installed once into .bench-venv-litellm/)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="where results.json, results.md and the PNG plots go (default: bench/)")
    ap.add_argument("--only", default="",
                    help="comma-separated scenario numbers to run, e.g. 1,5 (default: all); 'http' alone (or with "
                         f"some of {','.join(HTTP_SCENARIOS)}) runs only the HTTP front's rows")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    http = "http" in only
    only.discard("http")
    if http and only - set(HTTP_SCENARIOS):
        ap.error(f"--only http takes scenario numbers among {','.join(HTTP_SCENARIOS)}")
    if only - set(SCENARIOS):
        ap.error(f"--only takes scenario numbers among {','.join(SCENARIOS)}, or http")
    if http and not only:
        only = set(HTTP_SCENARIOS)
    return main(quick=args.quick, peers=args.peers, out_dir=args.out, only=only or None, http_only=http)


if __name__ == "__main__":
    sys.exit(cli())
