"""Scenario 1: time to first byte and total time at concurrency 1 (zero-delay 16-frame streams), and the time to
each contender's first message (the proxy's StreamStart; a direct call's response head).

Requests are interleaved round by round (one per contender per round, the order rotated each round) so
that drift on a shared machine hits every contender alike. The proxy is measured twice: warm (its lease
cached) and cold (a fresh tenant per request, so every request waits for keyservice and Vault).
"""

from __future__ import annotations

from typing import Any

from bench.clients import StreamResult
from bench.config import BenchConfig
from bench.contenders import Contenders
from bench.stack import WARM_ORG
from bench.stats import summary_ms

TIMEOUT = 30.0


async def run(c: Contenders, cfg: BenchConfig) -> dict[str, Any]:
    model = f"gpt-4o?frames={cfg.ttfb_frames}"
    names = c.names()
    for _ in range(cfg.ttfb_warmup):
        for name in names:
            await c.targets[name].stream(model, WARM_ORG, TIMEOUT)
    results: dict[str, list[StreamResult]] = {name: [] for name in [*names, "proxy_cold"]}
    for i in range(cfg.ttfb_rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            results[name].append(await c.targets[name].stream(model, WARM_ORG, TIMEOUT))
        if "proxy" in c.targets and i < len(c.cold_orgs):
            results["proxy_cold"].append(await c.targets["proxy"].stream(model, c.cold_orgs[i], TIMEOUT))
    out: dict[str, Any] = {"frames": cfg.ttfb_frames, "rounds": cfg.ttfb_rounds, "contenders": {}}
    for name, rs in results.items():
        if not rs:
            continue
        ok = [r for r in rs if r.ok]
        out["contenders"][name] = {
            "requests": len(rs), "errors": len(rs) - len(ok),
            "ttfb_ms": summary_ms([r.ttfb for r in ok]), "total_ms": summary_ms([r.total for r in ok]),
            "first_message_ms": summary_ms([r.first for r in ok]),
        }
    direct = out["contenders"].get("direct")
    if direct and direct["ttfb_ms"].get("n"):
        for name, row in out["contenders"].items():
            if name != "direct" and row["ttfb_ms"].get("n"):
                row["added_ttfb_ms"] = {q: round(row["ttfb_ms"][q] - direct["ttfb_ms"][q], 3)
                                        for q in ("p50", "p99")}
                # The proxy's own time before it answers: its StreamStart against the provider's first byte
                # (the direct call's response head), i.e. what it does before and around its upstream call.
                row["own_first_message_ms"] = {q: round(row["first_message_ms"][q] - direct["first_message_ms"][q],
                                                        3) for q in ("p50", "p99")}
    return out
