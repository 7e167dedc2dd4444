"""Scenario 11: callers that go away mid-stream. Through the proxy, a caller reads the first frames of a slow
provider stream and then disconnects (gRPC cancel, closing its channel, its TCP connection dropped, or its
deadline passing), many times; each time the local upstream must see its response stream closed within
100 ms, and afterwards the proxy's open connections and file descriptors (/proc/PID/fd) must be back to their
baseline."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import Counter

import grpc

from byok.proxy.v1 import chat_service_pb2_grpc as pb_grpc
from byokcommon.tls import channel_credentials
from reliability.checks import Checks, wait_for
from reliability.context import Context
from reliability.report import Row
from reliability.stack import Service, Stack, add_key, bind, stream_request
from reliability.stats import ms, percentile

TITLE = "Client disconnects mid-stream through the proxy"
CLOSE_BOUND = 0.100  # s from the disconnect to the upstream seeing its stream closed
FRAMES, FRAME_DELAY = 400, 0.01  # a 4 s provider stream: every disconnect lands mid-stream
READ_FIRST = 3  # messages read before disconnecting (the start message + provider frames)
DEADLINE = 0.3  # s: the deadline used by the "deadline" kind of disconnect
EXPECTED = (f"every disconnect closes the upstream stream within {CLOSE_BOUND * 1000:.0f} ms; proxy file "
            "descriptors, sockets and in-flight RPCs back to baseline; 0 upstream streams left open")
ORG = "rel-disconnect"


def _sockets(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed while listing
    return n


def _resources(px: Service) -> tuple[int, int]:
    return px.proc.fd_count(), _sockets(px.proc.pid)


class Dropper:
    """A TCP relay in front of the proxy that can drop a caller's connection abruptly (RST, no HTTP/2 or TLS
    goodbye): what the proxy sees when a caller's process dies or its network goes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._pairs.append((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def drop(self) -> None:
        """Abort every relayed connection on both sides."""
        for a, b in self._pairs:
            a.transport.abort()
            b.transport.abort()
        self._pairs.clear()

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _channel(port: int, stack: Stack) -> grpc.aio.Channel:
    """A connection of its own (not shared with the kept channel) for the caller identity."""
    return grpc.aio.secure_channel(f"localhost:{port}", channel_credentials(stack.tls["caller"]),
                                   options=[("grpc.use_local_subchannel_pool", 1)])


async def _disconnect_once(stack: Stack, stub: pb_grpc.ChatServiceStub, dropper: Dropper, kind: str
                           ) -> tuple[float | None, str]:
    """One stream, abandoned mid-way; returns (seconds from disconnect to upstream close, or None, note)."""
    up = stack.upstream
    closed_before = len(up.closed_early)
    channel = None
    if kind in ("close-channel", "tcp-drop"):
        channel = _channel(dropper.port if kind == "tcp-drop" else dropper.target_port, stack)
        stub = pb_grpc.ChatServiceStub(channel)
    t_start = time.monotonic()
    stream = stub.StreamChat(stream_request(ORG, "gpt-4o-mini"), timeout=DEADLINE if kind == "deadline" else 20)
    got = 0
    try:
        async for _ in stream:
            got += 1
            if got >= READ_FIRST and kind != "deadline":
                break
    except Exception as exc:  # noqa: BLE001 - the deadline kind ends here; anything else is reported
        if kind != "deadline":
            return None, f"stream failed before disconnect: {type(exc).__name__}"
    if kind == "deadline":
        t_gone = t_start + DEADLINE  # the caller's deadline is the disconnect (client and server both know it)
    else:
        if got < READ_FIRST:
            return None, f"stream ended after {got} messages"
        t_gone = time.monotonic()
        if kind == "cancel":
            stream.cancel()
        elif kind == "close-channel":
            assert channel is not None
            await channel.close(grace=None)
        else:
            dropper.drop()
    deadline = t_gone + 2.0
    while len(up.closed_early) <= closed_before and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    if channel is not None:
        await channel.close(grace=None)
        # grpc.aio frees a closed channel's socket only when the channel object is collected (reference
        # cycles): collect now, so the client does not keep connections the proxy would be blamed for.
        del stub, stream, channel
        gc.collect()
    if len(up.closed_early) <= closed_before:
        return None, "upstream stream not closed within 2 s"
    return up.closed_early[closed_before] - t_gone, ""


def _kind(i: int) -> str:
    # Mostly RST_STREAM cancels (the common case), with channel closes, dropped TCP connections and deadlines.
    return {3: "close-channel", 5: "tcp-drop", 7: "deadline"}.get(i % 10, "cancel")


async def run(ctx: Context) -> list[Row]:
    c = Checks(11, TITLE, expected=EXPECTED)
    count = ctx.n(100, 1000)
    vault = ctx.vault()
    stack = await Stack.create(ctx.work, vault)
    stack.kv_prefix = "rel-disconnect"
    stack.upstream.config.frames, stack.upstream.config.frame_delay = FRAMES, FRAME_DELAY
    dropper: Dropper | None = None
    try:
        ks = stack.start_keyservice(f"sqlite:///{ctx.work}/ks.db")
        px = stack.start_proxy(ks)
        admin = stack.admin(ks)
        await add_key(admin, ORG, "sk-test-" + "3" * 40)
        await bind(admin, ORG)
        stub = stack.chat(px)
        up = stack.upstream
        dropper = Dropper(px.port)
        await dropper.start()
        # Warm-up (lease cached, the kept channel and every code path used once), then the baseline.
        for i in range(20):
            await _disconnect_once(stack, stub, dropper, _kind(i))
        await wait_for(lambda: up.open_streams == 0, 3)
        await asyncio.sleep(1.0)
        base_fds, base_socks = _resources(px)
        base_in_flight = await asyncio.to_thread(px.metric, "byok_rpc_in_flight")

        delays: dict[str, list[float]] = {"cancel": [], "close-channel": [], "tcp-drop": [], "deadline": []}
        failures: Counter[str] = Counter()
        peak_fds, peak_socks = base_fds, base_socks
        started = time.monotonic()
        budget = ctx.n(40, 150)  # s: the loop is bounded in time as well as in count
        done = 0
        for i in range(count):
            if time.monotonic() - started > budget:
                break
            kind = _kind(i)
            delay, note = await _disconnect_once(stack, stub, dropper, kind)
            done += 1
            if delay is None:
                failures[note] += 1
            else:
                delays[kind].append(delay)
            if i % 50 == 0:
                fds, socks = _resources(px)
                peak_fds, peak_socks = max(peak_fds, fds), max(peak_socks, socks)
        seconds = time.monotonic() - started
        gc.collect()
        streams_closed = await wait_for(lambda: up.open_streams == 0, 3)
        # Back to baseline: the proxy has closed what it opened (allow a moment for the last closes).
        back = await wait_for(lambda: all(a <= b for a, b in zip(_resources(px), (base_fds, base_socks),
                                                                  strict=True)), 10, interval=0.2)
        end_fds, end_socks = _resources(px)
        end_in_flight = await asyncio.to_thread(px.metric, "byok_rpc_in_flight")

        every = [d for ds in delays.values() for d in ds]
        over = [d for d in every if d > CLOSE_BOUND]
        by_kind = {k: f"{len(v)} (p50 {ms(percentile(v, 50))}, p99 {ms(percentile(v, 99))}, max "
                      f"{ms(max(v) if v else float('nan'))})" for k, v in delays.items()}
        c.check(done == count and not failures and not over,
                f"{len(every)}/{count} disconnects closed upstream within {CLOSE_BOUND * 1000:.0f} ms "
                f"({len(over)} slower, {sum(failures.values())} failed{': ' + str(dict(failures)) if failures else ''}"
                f"); p50 {ms(percentile(every, 50))}, p99 {ms(percentile(every, 99))}, max "
                f"{ms(max(every) if every else float('nan'))}; by kind {by_kind}")
        c.check(back and streams_closed and end_in_flight == base_in_flight,
                f"proxy fds {base_fds} before, peak {peak_fds} (sampled), {end_fds} after; sockets {base_socks} "
                f"before, peak {peak_socks}, {end_socks} after; in-flight RPCs {end_in_flight:.0f}; upstream "
                f"streams open {up.open_streams}")
        c.done = (f"StreamChat through the proxy of a {FRAMES}-frame x {FRAME_DELAY * 1000:.0f} ms provider stream; "
                  f"after {READ_FIRST} messages the caller cancels (7 in 10), closes its channel (1 in 10), loses its "
                  f"TCP connection (RST from a relay, 1 in 10) or its {DEADLINE * 1000:.0f} ms deadline passes "
                  "(1 in 10); one at a time, timed to the upstream's notice")
        c.count = f"{done} disconnects in {seconds:.0f} s"
        c.figures = {"by_kind": {k: len(v) for k, v in delays.items()}, "p99_s": percentile(every, 99),
                     "max_s": max(every) if every else None, "over_bound": len(over), "failures": dict(failures),
                     "fds": [base_fds, peak_fds, end_fds], "sockets": [base_socks, peak_socks, end_socks]}
        return [c.row()]
    finally:
        if dropper is not None:
            await dropper.stop()
        await stack.close()
