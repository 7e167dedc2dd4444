"""`byokctl usage`, `byokctl prices …` and `byokctl budgets …`: what tenants used and spent, the price table, and
budgets. Amounts are shown in dollars (the API's micro-dollars / 1,000,000); prices per million tokens."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as kpb
from byok.keys.v1 import key_service_pb2_grpc as kpb_grpc
from byokctl.inputs import UsageError, parse_since, scope_of
from byokctl.output import emit_json, emit_table, enum_word, to_dict

GROUPINGS = {"hour": kpb.USAGE_GROUPING_HOUR, "day": kpb.USAGE_GROUPING_DAY, "total": kpb.USAGE_GROUPING_TOTAL}
DIMENSIONS = {"org": kpb.USAGE_DIMENSION_ORG, "project": kpb.USAGE_DIMENSION_PROJECT,
              "user": kpb.USAGE_DIMENSION_USER, "credential": kpb.USAGE_DIMENSION_CREDENTIAL,
              "provider": kpb.USAGE_DIMENSION_PROVIDER, "model": kpb.USAGE_DIMENSION_MODEL,
              "key_source": kpb.USAGE_DIMENSION_KEY_SOURCE}
KEY_SOURCES = {"tenant": kpb.KEY_SOURCE_TENANT, "platform": kpb.KEY_SOURCE_PLATFORM}
PERIODS = {"day": kpb.BUDGET_PERIOD_DAY, "month": kpb.BUDGET_PERIOD_MONTH}
# A dimension's column: its header and the UsageRow field it reads.
_DIMENSION_FIELDS = {"org": "org_id", "project": "project_id", "user": "user_id", "credential": "credential_id",
                     "provider": "provider", "model": "model", "key_source": "key_source"}
_COUNTS = ("requests", "failed_requests", "input_tokens", "output_tokens", "cached_input_tokens",
           "cache_write_tokens", "reasoning_tokens")
_MICROS = Decimal(1_000_000)


def cmd_usage(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    if args.json and args.csv:
        raise UsageError("--json and --csv: choose one")
    dims = _dimensions(args.by or "")
    request = kpb.QueryUsageRequest(
        org_id=args.org or "", project_id=args.project or "", user_id=args.user or "",
        credential_id=args.credential or "", provider=args.provider or "", model=args.model or "",
        key_source=KEY_SOURCES.get(args.key_source or "", kpb.KEY_SOURCE_UNSPECIFIED), grouping=GROUPINGS[args.group],
        dimensions=[DIMENSIONS[d] for d in dims])
    for flag, text, field in (("--since", args.since, "start_time"), ("--until", args.until, "end_time")):
        stamp = _time(flag, text or "")
        if stamp is not None:
            getattr(request, field).CopyFrom(stamp)
    reply = stub.QueryUsage(request, timeout=args.timeout)
    if args.json:
        emit_json({"rows": [to_dict(r) for r in reply.rows], "start_time": _iso(reply.start_time),
                   "end_time": _iso(reply.end_time)})
        return
    headers = (["bucket"] if args.group != "total" else []) + dims + [
        "requests", "failed", "input", "output", "cached", "cache write", "reasoning", "spend usd", "unpriced"]
    rows = [_cells(r, dims, bucketed=args.group != "total") for r in reply.rows]
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([h.replace(" ", "_") for h in headers])
        writer.writerows(rows)
    else:
        emit_table(headers, rows)


def cmd_prices(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    if args.action == "set":
        price = kpb.Price(provider=args.provider, model=args.model, input_micros=micros("--input", args.input),
                          output_micros=micros("--output", args.output))
        for flag, value, field in (("--cached-input", args.cached_input, "cached_input_micros"),
                                   ("--cache-write", args.cache_write, "cache_write_micros"),
                                   ("--reasoning", args.reasoning, "reasoning_micros")):
            if value is not None:
                setattr(price, field, micros(flag, value))
        stamp = _time("--effective", args.effective or "")
        if stamp is not None:
            price.effective_time.CopyFrom(stamp)
        stored = stub.SetPrice(kpb.SetPriceRequest(price=price), timeout=args.timeout).price
        if args.json:
            emit_json(stored)
        else:
            print(f"{stored.provider} {stored.model}: from {_iso(stored.effective_time)}, input "
                  f"${dollars(stored.input_micros)}, output ${dollars(stored.output_micros)} per million tokens")
        return
    if args.action == "reprice":
        stamp = _time("--since", args.since)
        assert stamp is not None  # required by the parser
        reply = stub.RepriceUsage(kpb.RepriceUsageRequest(provider=args.provider, model=args.model or "",
                                                          start_time=stamp), timeout=args.timeout)
        if args.json:
            emit_json(reply)
        else:
            print(f"{args.provider} {args.model or '(every model)'} from {_iso(reply.start_time)}: "
                  f"{reply.hourly_rows} hourly and {reply.daily_rows} daily rows repriced, spend "
                  f"${dollars(reply.spend_micros_before)} -> ${dollars(reply.spend_micros_after)}"
                  + (f"; {reply.straddled_hours} hours left as they were (a price took effect inside them)"
                     if reply.straddled_hours else ""))
        return
    prices = list(stub.ListPrices(kpb.ListPricesRequest(provider=args.provider or "", model=args.model or ""),
                                  timeout=args.timeout).prices)
    if args.json:
        emit_json(prices)
        return
    emit_table(["provider", "model", "effective", "input", "cached input", "cache write", "output", "reasoning",
                "source"],
               [[p.provider, p.model, _iso(p.effective_time)[:10], dollars(p.input_micros),
                 _optional(p, "cached_input_micros"), _optional(p, "cache_write_micros"), dollars(p.output_micros),
                 _optional(p, "reasoning_micros"), p.source] for p in prices])


def cmd_budgets(args: argparse.Namespace, stub: kpb_grpc.KeyServiceStub) -> None:
    if args.action == "set":
        limit = micros("--limit", args.limit)
        budget = kpb.Budget(scope=scope_of(args), period=PERIODS[args.period], limit_micros=limit,
                            key_source=KEY_SOURCES.get(args.key_source or "", kpb.KEY_SOURCE_UNSPECIFIED),
                            soft_limit_micros=_soft(args.soft or "", limit))
        reply: Any = stub.SetBudget(kpb.SetBudgetRequest(budget=budget), timeout=args.timeout)
        _print_budgets(args, [reply.budget])
    elif args.action == "delete":
        stub.DeleteBudget(kpb.DeleteBudgetRequest(budget_id=args.id), timeout=args.timeout)
        emit_json({"deleted": args.id}) if args.json else print(f"deleted {args.id}")
    else:
        reply = stub.ListBudgets(kpb.ListBudgetsRequest(org_id=args.org or ""), timeout=args.timeout)
        _print_budgets(args, list(reply.budgets))


def _print_budgets(args: argparse.Namespace, budgets: list[kpb.Budget]) -> None:
    if args.json:
        emit_json(budgets)
        return
    emit_table(["id", "scope", "keys", "period", "limit usd", "soft usd", "spent usd", "since", "exhausted"],
               [[b.budget_id, "/".join(x for x in (b.scope.org_id, b.scope.project_id, b.scope.user_id) if x),
                 enum_word(kpb.KeySource.DESCRIPTOR, b.key_source) or "all",
                 enum_word(kpb.BudgetPeriod.DESCRIPTOR, b.period), dollars(b.limit_micros),
                 dollars(b.soft_limit_micros) if b.soft_limit_micros else "", dollars(b.spend_micros),
                 _iso(b.period_start_time)[:10], b.exhausted] for b in budgets])


def micros(flag: str, text: str) -> int:
    """Dollars as the user wrote them ("0.15", "$50") in whole micro-dollars."""
    try:
        amount = Decimal(text.strip().removeprefix("$"))
    except InvalidOperation:
        raise UsageError(f"{flag}: expected an amount in dollars, e.g. 0.15") from None
    value = amount * _MICROS
    if not amount.is_finite() or amount < 0 or value != value.to_integral_value():
        raise UsageError(f"{flag}: expected a non-negative amount in dollars, to at most 6 decimals")
    return int(value)


def dollars(value: int) -> str:
    """Micro-dollars as dollars, without trailing zeros ("0.000154", "50")."""
    text = format(Decimal(value) / _MICROS, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _soft(text: str, limit: int) -> int:
    """--soft as dollars, or as a percentage of the limit ("80%")."""
    if not text:
        return 0
    if text.endswith("%"):
        try:
            share = Decimal(text[:-1])
        except InvalidOperation:
            raise UsageError("--soft: expected dollars or a percentage of the limit, e.g. 80%") from None
        if not 0 < share < 100:
            raise UsageError("--soft: a percentage must be between 0 and 100")
        return int(limit * share / 100)
    return micros("--soft", text)


def _dimensions(text: str) -> list[str]:
    names = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in names if d not in DIMENSIONS]
    if unknown:
        raise UsageError(f"--by: unknown {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}")
    return list(dict.fromkeys(names))


def _cells(row: kpb.UsageRow, dims: list[str], *, bucketed: bool) -> list[Any]:
    """One row of the table or CSV: its bucket, its dimensions, its counts, its spend in dollars."""
    return (([_iso(row.bucket_start_time)] if bucketed else []) + [_dimension_value(row, d) for d in dims]
            + [getattr(row, c) for c in _COUNTS] + [dollars(row.spend_micros), row.unpriced_requests])


def _dimension_value(row: kpb.UsageRow, name: str) -> str:
    value = getattr(row, _DIMENSION_FIELDS[name])
    return enum_word(kpb.KeySource.DESCRIPTOR, value) if name == "key_source" else value


def _time(flag: str, text: str) -> Timestamp | None:
    """A duration back from now (15m, 2h, 7d), an ISO 8601 time (UTC when it has no offset), or "now"."""
    if text == "now":
        stamp = Timestamp()
        stamp.GetCurrentTime()
        return stamp
    try:
        return parse_since(text)  # a time without an offset is UTC, as the buckets are
    except UsageError:
        raise UsageError(f"{flag}: expected a duration like 15m, 2h, 7d or an ISO 8601 time") from None


def _iso(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def _optional(price: kpb.Price, field: str) -> str:
    return dollars(getattr(price, field)) if price.HasField(field) else ""
