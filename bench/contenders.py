"""The contenders of a run: a client per contender and the pid of the server process that does its work."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.clients import Target

# Display order. "direct" is the load generator straight to the local upstream (the baseline and the
# harness's own ceiling); "floor" is a bare grpc.aio server making the frames itself.
ORDER = ("direct", "floor", "proxy", "litellm")


@dataclass
class Contenders:
    targets: dict[str, Target]
    server_pids: dict[str, int]  # contender → the process doing its work ("direct" → the upstream)
    upstream_pid: int
    everyone: list[int] = field(default_factory=list)  # every process of the benchmark but this one
    cold_orgs: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [n for n in ORDER if n in self.targets]

    async def close(self) -> None:
        for target in self.targets.values():
            await target.close()
