"""What the user gave, read and checked: secrets from stdin or a prompt (never argv), times, scopes."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys

from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as kpb


class UsageError(Exception):
    pass


def read_secret(prompt: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise UsageError("no key given on stdin")
    return value


def parse_since(text: str) -> Timestamp | None:
    if not text:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    ts = Timestamp()
    if text[-1] in units and text[:-1].isdigit():
        ts.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(text[:-1]) * units[text[-1]]))
    else:
        try:
            ts.FromDatetime(dt.datetime.fromisoformat(text))
        except ValueError:
            raise UsageError("--since: expected a duration like 15m, 2h, 7d or an ISO 8601 time") from None
    return ts


def scope_of(args: argparse.Namespace) -> kpb.Scope:
    return kpb.Scope(org_id=args.org, project_id=args.project or "", user_id=args.user or "")
