"""serve_until_signalled: on SIGTERM it drains first, keeps serving for the drain period, then stops with the
grace period; a second signal cuts the drain short. Signals are real (sent to this process) and handled by the
running loop; the handlers are removed afterwards."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time

from byokcommon.runner import serve_until_signalled


class FakeApp:
    port = 1234

    def __init__(self) -> None:
        self.events: list[tuple[str, float]] = []
        self.stopped = asyncio.Event()
        self.grace: float | None = None

    async def drain(self) -> None:
        self.events.append(("drain", time.monotonic()))

    async def stop(self, grace: float = 5.0) -> None:
        self.events.append(("stop", time.monotonic()))
        self.grace = grace
        self.stopped.set()


async def _signal_when_listening(sig: signal.Signals, times: int = 1) -> None:
    await asyncio.sleep(0)  # let serve_until_signalled install its handlers
    for _ in range(times):
        os.kill(os.getpid(), sig)
        await asyncio.sleep(0.01)


async def test_drains_then_waits_then_stops_with_grace(capsys) -> None:  # type: ignore[no-untyped-def]
    app = FakeApp()
    serving = asyncio.create_task(serve_until_signalled("svc", app, "0.0.0.0:8443", drain=0.3, grace=7.0))
    await _signal_when_listening(signal.SIGTERM)
    assert await asyncio.wait_for(serving, 10) == 0
    (first, drained_at), (second, stopped_at) = app.events
    assert (first, second) == ("drain", "stop")
    assert stopped_at - drained_at >= 0.3  # served on through the whole drain period
    assert app.grace == 7.0
    assert "svc listening on 0.0.0.0:1234" in capsys.readouterr().out


async def test_a_second_signal_skips_the_rest_of_the_drain() -> None:
    app = FakeApp()
    serving = asyncio.create_task(serve_until_signalled("svc", app, "0.0.0.0:8443", drain=600.0, grace=0.0))
    await _signal_when_listening(signal.SIGINT, times=2)
    assert await asyncio.wait_for(serving, 10) == 0  # not 600 s: the second signal ended the drain
    assert [name for name, _ in app.events] == ["drain", "stop"]


async def test_what_startup_built_is_frozen_out_of_full_collections() -> None:
    gc.unfreeze()
    app = FakeApp()
    serving = asyncio.create_task(serve_until_signalled("svc", app, "0.0.0.0:8443", drain=0.0, grace=0.0))
    try:
        await asyncio.sleep(0)  # serving: startup is over
        assert gc.get_freeze_count() > 0  # a full collection no longer walks the startup heap
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(serving, 10) == 0
        gc.unfreeze()  # give this test process its heap back
