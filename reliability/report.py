"""The reliability report: one row per scenario (what was done, how many times, what was expected, what was
seen, met or not), written as reliability/report.md for people and reliability/report.json for tools."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    scenario: int
    title: str
    done: str
    count: str
    expected: str
    seen: str
    met: bool
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Report:
    mode: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    total_seconds: float = 0.0
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def add(self, rows: list[Row]) -> None:
        self.rows.extend(rows)

    def machine(self) -> dict[str, Any]:
        return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}

    def to_json(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "mode": self.mode, "total_seconds": self.total_seconds,
                "machine": self.machine(), "met": sum(r.met for r in self.rows), "rows": [asdict(r) for r in self.rows],
                "notes": self.notes}

    def to_markdown(self) -> str:
        m = self.machine()
        lines = [
            "# byok reliability report", "",
            f"Run {self.started_at} ({self.mode} mode), {self.total_seconds:.0f} s in all, on {m['cores']} cores, "
            f"Python {m['python']}. {sum(r.met for r in self.rows)}/{len(self.rows)} rows met.", "",
            "| # | scenario | what was done | how many | expected | seen | met | s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            cells = [str(r.scenario), r.title, r.done, r.count, r.expected, r.seen, "yes" if r.met else "**no**",
                     f"{r.seconds:.0f}"]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> tuple[Path, Path]:
        md, js = directory / "report.md", directory / "report.json"
        md.write_text(self.to_markdown())
        js.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return md, js


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
