"""Turning results into verdicts and text: the goals from the Performance issue, checked with ratios, and
the markdown report (goals first, then one table per scenario)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.stats import ratio


@dataclass(frozen=True)
class Goal:
    name: str
    target: str
    measured: float | None
    limit: float
    higher_is_better: bool
    unit: str = ""

    @property
    def ratio(self) -> float | None:
        """measured / limit: ≤ 1 passes for a ceiling, ≥ 1 passes for a floor."""
        return ratio(self.measured, self.limit)

    @property
    def verdict(self) -> str:
        if self.measured is None or math.isnan(self.measured):
            return "n/a"
        ok = self.measured >= self.limit if self.higher_is_better else self.measured <= self.limit
        return "PASS" if ok else "FAIL"

    def row(self) -> dict[str, Any]:
        return {"goal": self.name, "target": self.target, "measured": self.measured, "unit": self.unit,
                "ratio_to_target": None if self.ratio is None else round(self.ratio, 3), "verdict": self.verdict}


def _get(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def goals(r: dict[str, Any]) -> list[Goal]:
    s = r.get("scenarios", {})
    added = _get(s, "1_ttfb", "contenders", "proxy", "added_ttfb_ms") or {}
    lite_added = _get(s, "1_ttfb", "contenders", "litellm", "added_ttfb_ms") or {}
    proxy_free = _get(s, "2_paced", "contenders", "proxy", "stall_free_concurrency")
    floor_free = _get(s, "2_paced", "contenders", "floor", "stall_free_concurrency")
    slow = _get(s, "3_slow", "contenders", "proxy") or {}
    cost = _get(s, "6_cost", "contenders") or {}
    proxy_cpu = _get(cost, "proxy", "cpu_s_per_10k_frames", "server")
    floor_cpu = _get(cost, "floor", "cpu_s_per_10k_frames", "server")
    proxy_rps = _get(s, "4_unary", "contenders", "proxy", "best_requests_per_s")
    lite_rps = _get(s, "4_unary", "contenders", "litellm", "best_requests_per_s")
    slow_n = _get(s, "3_slow", "streams")
    paced_top = _get(s, "2_paced", "contenders", "proxy", "steps")
    return [
        Goal("added TTFB p50 (proxy warm − direct)", "≤ 2 ms", added.get("p50"), 2.0, False, "ms"),
        Goal("added TTFB p99 (proxy warm − direct)", "≤ 5 ms", added.get("p99"), 5.0, False, "ms"),
        Goal("proxy's own time: StreamStart − direct first byte, p50", "≤ 0.5 ms",
             _get(s, "1_ttfb", "contenders", "proxy", "own_first_message_ms", "p50"), 0.5, False, "ms"),
        Goal("paced streams without a stall (proxy)", "≥ 64 concurrent", proxy_free, 64, True, "streams")
        if paced_top is not None else Goal("paced streams without a stall (proxy)", "≥ 64", None, 64, True),
        Goal(f"{slow_n} slow streams: errors (proxy)", "0", slow.get("errors"), 0, False),
        Goal(f"{slow_n} slow streams: proxy peak RSS", "≤ 150 MB", slow.get("server_rss_mb_peak"), 150, False, "MB"),
        Goal("lease cache hit", "≤ 50 µs", _get(s, "5_leases", "cache", "hit_us"), 50, False, "µs"),
        Goal("keyservice cold leases/s", "≥ 1,000/s", _get(s, "5_leases", "keyservice", "concurrent", "leases_per_s"),
             1000, True, "/s"),
        Goal("proxy CPU per 10k frames / floor's", "≤ 1.5×", ratio(proxy_cpu, floor_cpu), 1.5, False, "×"),
        Goal("stall-free concurrency proxy / floor", "≥ 0.5×", ratio(proxy_free, floor_free), 0.5, True, "×"),
        Goal("added TTFB p50 proxy / LiteLLM", "≤ 0.1×", ratio(added.get("p50"), lite_added.get("p50")), 0.1, False,
             "×"),
        Goal("non-streaming req/s proxy / LiteLLM", "≥ 10×", ratio(proxy_rps, lite_rps), 10.0, True, "×"),
        Goal("keyservice calls per key per lease lifetime (proxy, warm key)", "≤ 1",
             _get(s, "5_leases", "calls_per_key", "per_refresh_period"), 1.0, False),
    ]


def http_goals(r: dict[str, Any]) -> list[Goal]:
    """Issue 14's goals for the HTTP front (proxy_http), measured with the same httpx client as direct, the HTTP
    floor and LiteLLM; scenario 2's ratio is given against both floors (the gRPC one is the issue's "bare floor")."""
    s = r.get("scenarios", {})
    added = _get(s, "1_ttfb", "contenders", "proxy_http", "added_ttfb_ms") or {}
    lite_added = _get(s, "1_ttfb", "contenders", "litellm", "added_ttfb_ms") or {}
    free = _get(s, "2_paced", "contenders", "proxy_http", "stall_free_concurrency")
    floor_http_free = _get(s, "2_paced", "contenders", "floor_http", "stall_free_concurrency")
    floor_free = _get(s, "2_paced", "contenders", "floor", "stall_free_concurrency")
    slow = _get(s, "3_slow", "contenders", "proxy_http") or {}
    slow_n = _get(s, "3_slow", "streams")
    rps = _get(s, "4_unary", "contenders", "proxy_http", "best_requests_per_s")
    lite_rps = _get(s, "4_unary", "contenders", "litellm", "best_requests_per_s")
    return [
        Goal("HTTP front: added TTFB p50 (proxy_http − direct)", "≤ 2 ms (the gRPC goal)", added.get("p50"), 2.0, False,
             "ms"),
        Goal("HTTP front: added TTFB p50 / LiteLLM's", "≤ 0.1×", ratio(added.get("p50"), lite_added.get("p50")), 0.1,
             False, "×"),
        Goal("HTTP front: stall-free paced concurrency / gRPC floor's", "≥ 0.5×", ratio(free, floor_free), 0.5, True,
             "×"),
        Goal("HTTP front: stall-free paced concurrency / HTTP floor's", "≥ 0.5×", ratio(free, floor_http_free), 0.5,
             True, "×"),
        Goal(f"HTTP front: {slow_n} slow streams, errors", "0", slow.get("errors"), 0, False),
        Goal(f"HTTP front: {slow_n} slow streams, stalled streams", "0", slow.get("stalled_streams"), 0, False),
        Goal(f"HTTP front: {slow_n} slow streams, proxy peak RSS", "≤ 150 MB", slow.get("server_rss_mb_peak"), 150,
             False, "MB"),
        Goal("HTTP front: non-streaming req/s / LiteLLM's (same p99 bound)", "≥ 10×", ratio(rps, lite_rps), 10.0,
             True, "×"),
    ]


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    s = r["scenarios"]
    title = r["date"] + (" (quick)" if r["quick"] else "") + (" — HTTP front rows" if r.get("http_only") else "")
    out = [f"# byok benchmark — {title}", "",
           f"Machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gb']} GB; load average at start "
           f"{m['loadavg_start']}, at end {m.get('loadavg_end', '–')}.  ",
           f"Python {m['python']}, grpcio {m['grpcio']}, httpx {m['httpx']}, uvloop {m['uvloop']}"
           + (f", {m['litellm']}" if m.get("litellm") else "") + ".  ",
           f"Cores: {r['core_split']}.  ",
           f"Run time: {r['elapsed_s']:.0f} s.", "", "## Goals", "",
           _table(["goal", "target", "measured", "ratio to target", "verdict"],
                  [[g["goal"], g["target"], g["measured"], g["ratio_to_target"], g["verdict"]] for g in r["goals"]])]
    if "1_ttfb" in s:
        t = s["1_ttfb"]
        out += ["", f"## 1. TTFB at concurrency 1 ({t['frames']}-frame zero-delay streams, {t['rounds']} rounds, ms)",
                "", _table(["contender", "TTFB p50", "TTFB p99", "total p50", "total p99", "added p50", "added p99",
                            "first message p50", "own first message p50", "errors"],
                           [[n, c["ttfb_ms"].get("p50"), c["ttfb_ms"].get("p99"), c["total_ms"].get("p50"),
                             c["total_ms"].get("p99"), _get(c, "added_ttfb_ms", "p50"), _get(c, "added_ttfb_ms", "p99"),
                             _get(c, "first_message_ms", "p50"), _get(c, "own_first_message_ms", "p50"),
                             c["errors"]] for n, c in t["contenders"].items()])]
    if "2_paced" in s:
        t = s["2_paced"]
        rows = []
        for n, c in t["contenders"].items():
            for st in c["steps"]:
                cpu = st["cpu_share"]
                rows.append([n, st["concurrency"], st["streams_per_s"], st["frames_per_s"], st["gap_ms"]["p99"],
                             st["ttfb_ms"].get("p99"), st["stalled_streams"], st["errors"], cpu.get("loadgen"),
                             cpu.get("upstream"), cpu.get(n), cpu.get("others")])
        out += ["", f"## 2. Paced streams ({t['frames']} frames every {t['pace_ms']:.0f} ms; stall = gap > "
                    f"{t['stall_gap_ms']:.0f} ms)", "",
                "Stall-free concurrency: " + ", ".join(f"{n} {c['stall_free_concurrency']}"
                                                       for n, c in t["contenders"].items())
                + "; highest step with ≤ 1 % of streams stalled: "
                + ", ".join(f"{n} {c.get('max_concurrency_under_1pct_stalled', '–')}"
                            for n, c in t["contenders"].items())
                + ". CPU columns are the share of one core each process used during the step; 'others' is what the "
                  "rest of the machine (not this benchmark) used meanwhile, out of 2 cores.", "",
                _table(["contender", "concurrency", "streams/s", "frames/s", "gap p99 ms", "TTFB p99 ms",
                        "stalled streams", "errors", "CPU loadgen", "CPU upstream", "CPU contender",
                        "CPU others"], rows)]
    if "3_slow" in s:
        t = s["3_slow"]
        out += ["", f"## 3. {t['streams']} concurrent slow streams ({t['frames']} frames, {t['pace_s']} s apart)", "",
                _table(["contender", "streams", "errors", "stalled streams", "gap max ms", "server RSS before MB",
                        "server RSS peak MB"],
                       [[n, c["streams"], c["errors"], c["stalled_streams"], c["gap_ms"]["max"],
                         c["server_rss_mb_before"], c["server_rss_mb_peak"]] for n, c in t["contenders"].items()]),
                "", "(For direct the server is the upstream.)"]
    if "4_unary" in s:
        t = s["4_unary"]
        out += ["", f"## 4. Non-streaming requests (best req/s with p99 ≤ {t['p99_bound_ms']:.0f} ms)", "",
                _table(["contender", "best req/s", "at concurrency", "peak req/s (any p99)"],
                       [[n, c["best_requests_per_s"], c["best_at_concurrency"],
                         max((st["requests_per_s"] for st in c["steps"]), default=None)]
                        for n, c in t["contenders"].items()])]
    if "keyservice" in s.get("5_leases", {}):
        t = s["5_leases"]
        ks = t["keyservice"]
        seq = ks["sequential_latency_ms"]
        calls = t.get("calls_per_key", {})
        out += ["", "## 5. Leases", "",
                _table(["measure", "value"], [
                    ["keyservice IssueKeyLease, one at a time: p50 / p99 ms",
                     f"{_fmt(seq.get('p50'))} / {_fmt(seq.get('p99'))}"],
                    [f"keyservice IssueKeyLease, {ks['concurrent']['concurrency']} in flight: leases/s",
                     ks["concurrent"]["leases_per_s"]],
                    ["… p50 / p99 ms", f"{_fmt(ks['concurrent']['latency_ms'].get('p50'))} / "
                                       f"{_fmt(ks['concurrent']['latency_ms'].get('p99'))}"],
                    ["… CPU share keyservice / OpenBao", f"{ks['concurrent']['cpu_share'].get('keyservice')} / "
                                                       f"{ks['concurrent']['cpu_share'].get('openbao')}"],
                    ["proxy LeaseCache.get hit, µs (await of a no-op coroutine)",
                     f"{t['cache']['hit_us']} ({t['cache']['await_noop_us']})"],
                    ["keyservice calls for the warm key / proxy activity span",
                     f"{_fmt(calls.get('calls'))} in {_fmt(calls.get('span_s'), 0)} s (lease TTL "
                     f"{calls.get('ttl_s')} s)"],
                    ["… per key per TTL / per lease lifetime (refresh period)",
                     f"{_fmt(calls.get('per_ttl'))} / {_fmt(calls.get('per_refresh_period'))}"],
                ])]
    if "6_cost" in s:
        t = s["6_cost"]
        out += ["", f"## 6. CPU and memory per 10,000 relayed frames ({t['streams']} streams × "
                    f"{t['frames_per_stream']} frames, concurrency {t['concurrency']})", "",
                _table(["contender", "frames", "server CPU s / 10k", "upstream CPU s / 10k", "loadgen CPU s / 10k",
                        "server RSS MB", "server peak RSS MB", "errors"],
                       [[n, c["frames"], c["cpu_s_per_10k_frames"]["server"], c["cpu_s_per_10k_frames"]["upstream"],
                         c["cpu_s_per_10k_frames"]["loadgen"], c["server_rss_mb"], c["server_peak_rss_mb"],
                         c["errors"]] for n, c in t["contenders"].items()]),
                "", "(For direct the server is the upstream, so its two CPU columns are the same process.)"]
    if "7_ceiling" in s:
        t = s["7_ceiling"]
        out += ["", f"## 7. The load generator's ceiling ({t['frames']}-frame streams paced {t['pace_ms']:.0f} ms "
                    f"against the floor, {t['step_seconds']:.0f} s per step; Python vs {t['k6'] or 'k6 (absent)'})",
                "", _table(["generator", "concurrency", "frames/s", "stalled streams", "errors", "gap p99 ms",
                            "loadgen CPU share", "loadgen CPU s / 10k frames", "floor CPU share", "CPU others"],
                           [[row["generator"], row["concurrency"], row.get("frames_per_s"), row.get("stalled_streams"),
                             row.get("errors"), row.get("gap_ms_p99"), row.get("loadgen_cpu_share"),
                             row.get("loadgen_cpu_s_per_10k_frames"), row.get("floor_cpu_share"),
                             row.get("others_cpu")] for row in t["rows"]])]
        if t.get("note"):
            out += ["", t["note"]]
    if r.get("server_errors"):
        out += ["", "## Warnings and errors logged by keyservice and the proxy", ""] + \
               [f"- `{line}`" for line in r["server_errors"]]
    if r.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(out) + "\n"
