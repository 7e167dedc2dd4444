"""PNG plots of a run: TTFB and throughput against concurrency (scenario 2), per contender.

matplotlib is optional (pinned in the report of the harness, not a project dependency): without it the
plots are skipped with a message and the JSON and markdown results are still written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_STYLE = {"direct": ("#555555", "o"), "floor": ("#2a9d8f", "s"), "proxy": ("#e76f51", "D"),
          "litellm": ("#264653", "^"), "floor_http": ("#8ab17d", "P"), "proxy_http": ("#f4a261", "v")}


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: plots skipped", flush=True)
        return []
    paced = results.get("scenarios", {}).get("2_paced")
    if not paced:
        return []
    title = f"{paced['frames']} frames every {paced['pace_ms']:.0f} ms — {results['date'][:10]}"

    def panel(ax: Any, key: str) -> None:
        for name, c in paced["contenders"].items():
            color, marker = _STYLE.get(name, ("black", "x"))
            xs = [st["concurrency"] for st in c["steps"]]
            if key == "ttfb":
                ax.plot(xs, [st["ttfb_ms"].get("p50") for st in c["steps"]], marker=marker, color=color,
                        label=f"{name} p50")
                ax.plot(xs, [st["ttfb_ms"].get("p99") for st in c["steps"]], marker=marker, color=color,
                        linestyle="--", alpha=0.6, label=f"{name} p99")
                ax.set_ylabel("time to first text frame (ms)")
                ax.set_yscale("log")
            else:
                ax.plot(xs, [st["frames_per_s"] for st in c["steps"]], marker=marker, color=color, label=name)
                stalled = [st for st in c["steps"] if st["stalled_streams"] or st["errors"]]
                ax.scatter([st["concurrency"] for st in stalled], [st["frames_per_s"] for st in stalled],
                           s=140, facecolors="none", edgecolors="red")
                ax.set_ylabel("text frames / s (red ring: stalls or errors)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent streams")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)

    written = []
    for key, name in (("ttfb", "ttfb.png"), ("throughput", "throughput.png")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        panel(ax, key)
        ax.set_title(f"{'TTFB' if key == 'ttfb' else 'Throughput'} vs concurrency ({title})", fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append(out_dir / name)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    panel(axes[0], "ttfb")
    panel(axes[1], "throughput")
    fig.suptitle(f"byok benchmark: {title}; {results['core_split']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "summary.png", dpi=110)
    plt.close(fig)
    written.append(out_dir / "summary.png")
    return written
