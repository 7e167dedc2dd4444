"""The mTLS channel to keyservice or the proxy, from the connection options."""

from __future__ import annotations

import argparse
import os

import grpc

from byokctl.inputs import UsageError

# Where `make run` writes the local stack's connection settings (absolute paths, so any directory works).
LOCAL_ENV_HINT = "for the local stack, `source .byok/env` in the repository first (`make run` writes it)"


def open_channel(addr: str, args: argparse.Namespace) -> grpc.Channel:
    paths = {"--cert": args.cert, "--key": args.key, "--ca": args.ca}
    missing = [flag for flag, path in paths.items() if not path]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or BYOK_CLIENT_CERT, BYOK_CLIENT_KEY, BYOK_CA); "
                         f"{LOCAL_ENV_HINT}")
    try:
        blobs = {flag: open(path, "rb").read() for flag, path in paths.items()}
    except OSError as exc:
        where = "" if os.path.isabs(exc.filename) else f" (relative to {os.getcwd()})"
        raise UsageError(f"cannot read certificate file: {exc.filename}{where}: {exc.strerror}; "
                         f"{LOCAL_ENV_HINT}") from None
    creds = grpc.ssl_channel_credentials(blobs["--ca"], blobs["--key"], blobs["--cert"])
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(addr, creds, options=options)
