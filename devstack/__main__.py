"""`python -m devstack` (make run): start the local stack and wait for Ctrl-C, SIGTERM or SIGHUP (a closed
terminal); `--demo` runs the story once in a directory of its own; `--stop` (make stop) stops a running stack."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from devstack.stack import STATE_DIR, Stack, StackRunning, banner, start, stop_running

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(BaseException):
    """Raised in the main thread by a stop signal, wherever it is (starting, waiting), so cleanup runs."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    _ignore_stop_signals()
    raise Stop(signum)


def _ignore_stop_signals() -> None:
    """While stopping: a second signal (Ctrl-C twice, SIGHUP then SIGTERM) must not cut the cleanup short."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _stop_stack(stack: Stack) -> None:
    _ignore_stop_signals()
    stack.stop()


def say(text: str, *, err: bool = False) -> None:
    """Print, unless the terminal is gone (after SIGHUP writes fail): stopping the stack matters more."""
    try:
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--demo", action="store_true",
                      help="run the demo story once on a stack of its own (a temporary directory, any free ports), "
                           "beside a running `make run` without touching it, then stop")
    mode.add_argument("--stop", action="store_true", help="stop the stack running from the state directory")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where the stack keeps its state")
    args = parser.parse_args(argv)
    if args.stop:
        say(stop_running(args.state_dir))
        return 0
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    if args.demo:
        return _demo()
    try:
        stack = start(args.state_dir)
    except StackRunning as running:
        say(f"make run: {running}", err=True)
        return 1
    except Stop:
        return 0
    try:
        say(banner(stack))
        return _watch(stack)
    except Stop:
        say("stopping…")
        return 0
    finally:
        _stop_stack(stack)


def _watch(stack: Stack) -> int:
    """Wait for a stop signal; a child that exits on its own ends the stack (with where its log is)."""
    while True:
        for name, process in stack.processes.children:
            if process.poll() is not None:
                say(f"{name} exited with {process.returncode}; see {stack.state}/logs/{name}.log", err=True)
                return 1
        time.sleep(1.0)  # a stop signal's handler raises Stop out of the sleep at once


def _demo() -> int:
    from devstack.demo import run_demo

    state = Path(tempfile.mkdtemp(prefix="byok-demo-"))
    result = 1
    try:
        stack = start(state, stable_ports=False)
        try:
            result = run_demo(stack)
        finally:
            _stop_stack(stack)
    except Stop:
        pass
    finally:
        if result == 0:
            shutil.rmtree(state, ignore_errors=True)
        else:
            say(f"the demo's state and logs are kept in {state}", err=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
