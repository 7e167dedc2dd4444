"""How big each scenario is: the full run (about 6-8 minutes without peers) and `--quick` (under a minute)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    # (1) concurrency 1, zero delay, 16 frames: rounds (one request per contender per round, interleaved)
    ttfb_rounds: int = 300
    ttfb_warmup: int = 20
    ttfb_frames: int = 16
    cold_orgs: int = 150  # proxy with a cold lease: one fresh tenant per request
    # (2) paced streams: frames, pace, concurrency ladder, seconds per step
    paced_frames: int = 64
    paced_delay: float = 0.020
    paced_levels: tuple[int, ...] = (1, 8, 32, 64, 128, 256)
    paced_step_seconds: float = 4.0
    # (3) slow streams
    slow_streams: int = 1024
    slow_frames: int = 30
    slow_delay: float = 1.0
    # (4) non-streaming: concurrency ladder, seconds per step, the p99 bound a step must meet to count
    unary_levels: tuple[int, ...] = (1, 4, 16, 32, 64)
    unary_step_seconds: float = 3.0
    unary_p99_bound_ms: float = 100.0
    unary_frames: int = 16
    # (5) keyservice IssueKeyLease called directly: sequential for latency, concurrent for throughput
    lease_sequential: int = 300
    lease_concurrent: int = 3000
    lease_concurrency: int = 32
    lease_seconds: float = 30.0  # time bound of the concurrent part
    cache_hits: int = 200_000  # LeaseCache.get microbenchmark iterations
    # (6) CPU and RSS per relayed frames: streams of `cost_frames` zero-delay frames at `cost_concurrency`
    cost_streams: int = 400
    cost_frames: int = 64
    cost_concurrency: int = 16
    # (7) the load generator's ceiling: paced streams against the floor from Python and from k6
    ceiling_levels: tuple[int, ...] = (64, 128, 256)
    # load generator
    grpc_connections: int = 8


QUICK = BenchConfig(
    ttfb_rounds=30, ttfb_warmup=5, cold_orgs=10,
    paced_frames=16, paced_levels=(1, 8), paced_step_seconds=1.0,
    slow_streams=64, slow_frames=4, slow_delay=0.25,
    unary_levels=(1, 8), unary_step_seconds=0.7,
    lease_sequential=30, lease_concurrent=200, lease_concurrency=8, lease_seconds=5.0, cache_hits=20_000,
    cost_streams=40, cost_frames=32, cost_concurrency=8, ceiling_levels=(8,), grpc_connections=2,
)
FULL = BenchConfig()
