"""The proxy lease cache's memory with many tenants (issue 11, finding 4): `python -m bench.leasecache_memory`.

Cycles `--tenants` distinct tenants (one org each, as a caller spraying org ids would) through a `LeaseCache`
`--rounds` times, with leases shaped like real ones (a 164-character key, lease and credential ids, api_base,
default model), and prints the process RSS it took (each scenario in a fresh process; `--trace`: Python's own
allocations instead):
- bounded: the default `max_entries`; the memory stays at the bound's whatever the rounds;
- all_in: `max_entries` = tenants, so every tenant has an entry (bytes per entry);
- then, in both, the leases' expiry and one sweep: entries gone, keys cleared.
keyservice is a stand-in coroutine; the per-caller miss budget is off (this measures memory, not admission).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as kpb
from proxyservice.keyclient import LeaseKey
from proxyservice.leasecache import CacheLimits, LeaseCache

CALLER = "spiffe://byok.local/caller/chat-api"


@dataclass
class _Time:
    now: float = 1000.0  # the cache's monotonic clock; its wall clock is 1.7e9 s ahead


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure(tenants: int, rounds: int, max_entries: int, ttl: float = 300.0, trace: bool = False
                  ) -> dict[str, Any]:
    clock = _Time()
    counter = 0

    async def fetch(key: LeaseKey, exclude: tuple[str, ...]) -> kpb.IssueKeyLeaseResponse:
        nonlocal counter
        counter += 1
        expire = Timestamp()
        expire.FromMicroseconds(int(((clock.now + 1_700_000_000) + ttl) * 1e6))
        return kpb.IssueKeyLeaseResponse(
            lease_id=f"lease_{counter:026d}", expire_time=expire, key_source=kpb.KEY_SOURCE_TENANT,
            credential_id=f"cred_{counter:024x}", provider="openai", api_key="sk-proj-" + f"{counter:0156d}",
            api_base="https://api.openai.com/v1", default_model="gpt-4o-mini", secret_version=1, api_family="openai")

    gc.collect()
    if trace:  # Python's own allocations (not protobuf's C arenas; slows the run and adds to the RSS)
        tracemalloc.start()
    rss_before = _rss_mib()
    base = tracemalloc.get_traced_memory()[0]
    cache = LeaseCache(fetch, limits=CacheLimits(max_entries=max_entries, misses_per_second=0),
                       clock=lambda: clock.now, wall=lambda: clock.now + 1_700_000_000)
    after_round = []
    for _ in range(rounds):
        for i in range(tenants):
            await cache.get(LeaseKey(caller=CALLER, org_id=f"org-{i:08d}", project_id="", user_id="",
                                     provider="openai", model="", credential_id=""))
            clock.now += 0.0001  # 100k lookups take 10 s of the cache's clock per round
        gc.collect()
        after_round.append(_rss_mib() - rss_before if not trace else
                           (tracemalloc.get_traced_memory()[0] - base) / 2**20)
    filled = after_round[-1]
    rss_filled = _rss_mib()
    clock.now += ttl + 10
    cleared = cache.sweep()
    gc.collect()
    swept = tracemalloc.get_traced_memory()[0] - base if trace else 0
    tracemalloc.stop()
    await cache.close()
    return {"tenants": tenants, "rounds": rounds, "max_entries": max_entries, "entries": min(tenants, max_entries),
            "keyservice_calls": counter, "evictions": cache.evictions,
            "measure": "tracemalloc" if trace else "rss",
            "mib_after_each_round": [round(m, 1) for m in after_round],
            "bytes_per_entry": round(filled * 2**20 / min(tenants, max_entries)), "keys_cleared_at_expiry": cleared,
            **({"traced_mib_after_expiry_sweep": round(swept / 2**20, 2)} if trace else {}),
            "rss_mib_before": round(rss_before, 1), "rss_mib_filled": round(rss_filled, 1),
            "rss_mib_after_expiry_sweep": round(_rss_mib(), 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-entries", type=int, default=CacheLimits().max_entries)
    parser.add_argument("--scenario", choices=("bounded", "all_in"), help="one scenario, in this process")
    parser.add_argument("--trace", action="store_true", help="measure with tracemalloc instead of the RSS")
    args = parser.parse_args(argv)
    if args.scenario:
        rounds, cap = (args.rounds, args.max_entries) if args.scenario == "bounded" else (1, args.tenants)
        print(json.dumps(asyncio.run(measure(args.tenants, rounds, cap, trace=args.trace))))
        return
    results = {}
    for scenario in ("bounded", "all_in"):  # each in a fresh process, so the RSS is its own
        out = subprocess.run([sys.executable, "-m", "bench.leasecache_memory", "--scenario", scenario,
                              "--tenants", str(args.tenants), "--rounds", str(args.rounds), "--max-entries",
                              str(args.max_entries)] + (["--trace"] if args.trace else []),
                             check=True, capture_output=True, text=True).stdout
        results[scenario] = json.loads(out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
