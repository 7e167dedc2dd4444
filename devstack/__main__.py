"""`python -m devstack` (make run): start the local stack and wait for Ctrl-C; `--demo` runs the story once."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from devstack.stack import banner, start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--demo", action="store_true", help="run the demo story once, then stop")
    args = parser.parse_args(argv)
    stack = start()
    try:
        if args.demo:
            from devstack.demo import run_demo

            return run_demo(stack)
        print(banner(stack), flush=True)
        stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopped.set())
        while not stopped.wait(1.0):
            for name, process in stack.processes.children:
                if process.poll() is not None:
                    print(f"{name} exited with {process.returncode}; see {stack.state}/logs/{name}.log",
                          file=sys.stderr)
                    return 1
        print("stopping…", flush=True)
        return 0
    finally:
        stack.processes.stop()


if __name__ == "__main__":
    sys.exit(main())
