"""`python -m reliability [--quick] [--only N,M] [--keep]`: run the scenarios in order within a 25-minute bound
(--quick: every scenario with small counts, under 8 minutes), stop every process started, and write
reliability/report.md and reliability/report.json."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from reliability.context import Context
from reliability.procs import stop_all
from reliability.report import Report, Row

SCENARIOS = {
    1: "s01_vault", 2: "s02_postgres", 3: "s03_crash", 4: "s04_rotation", 5: "s05_token", 6: "s06_revocation",
    7: "s07_leaks", 8: "s08_fuzz", 9: "s09_mtls", 10: "s10_overload", 11: "s11_disconnect", 12: "s12_soak",
    13: "s13_raft", 14: "s14_replica_kill", 15: "s15_rolling_restart", 16: "s16_usage",
}
# Quick mode runs every scenario, each small; the bound is a backstop, not a budget to share out.
SOAK = 12
TOTAL_SECONDS = {"quick": 480.0, "full": 1500.0}
OUT = Path(__file__).resolve().parent


async def run_one(number: int, ctx: Context) -> list[Row]:
    module = importlib.import_module(f"reliability.{SCENARIOS[number]}")
    ctx.work = Path(tempfile.mkdtemp(prefix=f"s{number:02d}-", dir=ctx.root))
    started = time.monotonic()
    # Each scenario bounds its own loops; this is the backstop (the soak takes what is left).
    budget = max(5.0, ctx.remaining() - 5)
    try:
        rows: list[Row] = await asyncio.wait_for(module.run(ctx), timeout=budget)
    except Exception as exc:  # noqa: BLE001 - a failed scenario is a row, not the end of the run
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-600:]
        rows = [Row(number, module.TITLE, "scenario aborted", "-", module.EXPECTED, f"error: {detail}", False)]
        print(traceback.format_exc(), file=sys.stderr)
    finally:
        stop_all()
    for row in rows:
        row.seconds = round(time.monotonic() - started, 1)
    return rows


async def main_async(args: argparse.Namespace) -> int:
    mode = "quick" if args.quick else "full"
    chosen = sorted(int(x) for x in args.only.split(",")) if args.only else sorted(SCENARIOS)
    # The soak takes what is left of the bound, so it runs last, after every other scenario chosen.
    chosen.sort(key=lambda n: n == SOAK)
    root = Path(tempfile.mkdtemp(prefix="byok-reliability-"))
    started = time.monotonic()
    ctx = Context(quick=args.quick, root=root, deadline=started + TOTAL_SECONDS[mode])
    report = Report(mode=mode)
    try:
        for number in chosen:
            if ctx.remaining() < 10:
                report.notes.append(f"scenario {number} skipped: the {TOTAL_SECONDS[mode]:.0f} s bound was reached")
                continue
            print(f"[reliability] scenario {number} ({SCENARIOS[number]}), {ctx.remaining():.0f} s left", flush=True)
            rows = await run_one(number, ctx)
            for row in rows:
                print(f"  {'met ' if row.met else 'MISS'} {row.title}: {row.seen}", flush=True)
            report.add(rows)
    finally:
        stop_all(include_shared=True)
        ctx.close()
        report.total_seconds = round(time.monotonic() - started, 1)
        md, js = report.write(OUT)
        if args.keep:
            print(f"[reliability] work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"[reliability] {sum(r.met for r in report.rows)}/{len(report.rows)} met; report: {md} and {js}")
    return 0 if all(r.met for r in report.rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every scenario, small counts, under 8 minutes")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers, e.g. 1,4")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        stop_all(include_shared=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
