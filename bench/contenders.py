"""The contenders of a run: a client per contender and the pid of the server process that does its work."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from bench.clients import Target

# Display order. "direct" is the load generator straight to the local upstream (the baseline and the
# harness's own ceiling); "floor" is a bare grpc.aio server making the frames itself, "floor_http" a bare
# aiohttp HTTPS server doing the same in OpenAI's wire format; "proxy_http" is the proxy's HTTP front.
ORDER = ("direct", "floor", "floor_http", "proxy", "proxy_http", "litellm")
# `--only http`: the contenders driven by the one HTTP client (and the gRPC floor as scenario 2's reference).
HTTP = frozenset({"direct", "floor_http", "proxy_http", "litellm"})


@dataclass
class Contenders:
    targets: dict[str, Target]
    server_pids: dict[str, int]  # contender → the process doing its work ("direct" → the upstream)
    upstream_pid: int
    everyone: list[int] = field(default_factory=list)  # every process of the benchmark but this one
    cold_orgs: list[str] = field(default_factory=list)
    selected: frozenset[str] | None = None  # None: every contender with a target

    def names(self) -> list[str]:
        return [n for n in ORDER if n in self.targets and (self.selected is None or n in self.selected)]

    def including(self, *names: str) -> Contenders:
        """The same contenders with `names` selected too (no-op when everything is)."""
        return self if self.selected is None else replace(self, selected=self.selected | set(names))

    async def close(self) -> None:
        for target in self.targets.values():
            await target.close()
