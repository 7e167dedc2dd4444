"""The usage RPCs of KeyServicer (ReportUsage for proxies; QueryUsage, prices, repricing and budgets for admins):
protobuf in, checked, the blocking work in the servicer's pool, protobuf out. Role checks happen before, in the
interceptor (keyservice/authz.py)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from byok.keys.v1 import key_service_pb2 as pb
from byokcommon.tls import peer_identity
from keyservice import audit, convert, validation
from keyservice.errors import InvalidArgument, KeyServiceError, Unavailable
from keyservice.providers import PROVIDERS
from keyservice.store import PriceRow, UsageFilter, UsageGroup
from keyservice.usage import UsageService
from keyservice.usage.budgets import BudgetState
from keyservice.usage.pricing import MAX_PRICE_DOLLARS, Tokens
from keyservice.usage.query import UsageQuery, run_query
from keyservice.usage.ratelimit_rpcs import rate_limit_usage_pb
from keyservice.usage.rollup import UsageEvent

T = TypeVar("T")

KEY_SOURCES = {pb.KEY_SOURCE_TENANT: "tenant", pb.KEY_SOURCE_PLATFORM: "platform"}
KEY_SOURCES_PB = {name: number for number, name in KEY_SOURCES.items()}
GROUPINGS = {pb.USAGE_GROUPING_UNSPECIFIED: "total", pb.USAGE_GROUPING_HOUR: "hour", pb.USAGE_GROUPING_DAY: "day",
             pb.USAGE_GROUPING_TOTAL: "total"}
DIMENSIONS = {pb.USAGE_DIMENSION_ORG: "org_id", pb.USAGE_DIMENSION_PROJECT: "project_id",
              pb.USAGE_DIMENSION_USER: "user_id", pb.USAGE_DIMENSION_CREDENTIAL: "credential_id",
              pb.USAGE_DIMENSION_PROVIDER: "provider", pb.USAGE_DIMENSION_MODEL: "model",
              pb.USAGE_DIMENSION_KEY_SOURCE: "key_source"}
PERIODS = {pb.BUDGET_PERIOD_DAY: "day", pb.BUDGET_PERIOD_MONTH: "month"}
PERIODS_PB = {name: number for number, name in PERIODS.items()}
_TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
_MAX_TOKENS = 1 << 40  # far beyond any request; a larger count is a bug, not usage
_MAX_MICROS = int(MAX_PRICE_DOLLARS) * 1_000_000
_MAX_BUDGET_MICROS = 1 << 62
_BUDGET_ID = re.compile(r"bud_[0-9a-f]{24}")


class UsageRpcs:
    """Mixed into KeyServicer, which provides `usage` (None: the RPCs answer UNAVAILABLE) and `_run`."""

    usage: UsageService | None

    if TYPE_CHECKING:
        async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...

    def _usage(self) -> UsageService:
        if self.usage is None:
            raise Unavailable("usage is not kept by this keyservice")
        return self.usage

    async def ReportUsage(self, request: pb.ReportUsageRequest, context: grpc.aio.ServicerContext
                          ) -> pb.ReportUsageResponse:
        usage = self._usage()
        actor, now = peer_identity(context), audit.now()

        def report() -> Any:  # the records' checks too run in the pool: a batch is up to 5000 of them
            return usage.ingest.report(actor, request.batch_id, [event(record, now) for record in request.records])
        result = await self._run(report)
        return pb.ReportUsageResponse(accepted_count=result.accepted, duplicate=result.duplicate,
                                      org_ids=result.org_ids, rate_limits=rate_limit_usage_pb(result.rate_limits))

    async def QueryUsage(self, request: pb.QueryUsageRequest, context: grpc.aio.ServicerContext
                         ) -> pb.QueryUsageResponse:
        usage = self._usage()
        query = UsageQuery(
            where=UsageFilter(
                org_id=validation.scope_id(request.org_id, "org_id"),
                project_id=validation.scope_id(request.project_id, "project_id"),
                user_id=validation.scope_id(request.user_id, "user_id"),
                credential_id=validation.credential_id(request.credential_id) if request.credential_id else "",
                provider=_provider(request.provider) if request.provider else "",
                model=validation.model(request.model, "model"),
                key_source=KEY_SOURCES.get(request.key_source, "")),
            grouping=GROUPINGS.get(request.grouping, ""),
            start=_time(request, "start_time"), end=_time(request, "end_time"),
            dimensions=tuple(_dimension(d) for d in request.dimensions))
        answer = await self._run(run_query, usage.store, query)
        return pb.QueryUsageResponse(rows=[usage_row(g) for g in answer.groups],
                                     start_time=convert.timestamp(answer.start), end_time=convert.timestamp(answer.end))

    async def ListPrices(self, request: pb.ListPricesRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ListPricesResponse:
        usage = self._usage()
        book = usage.prices.book(await self._run(usage.store.list_prices))
        return pb.ListPricesResponse(prices=[
            price_pb(e) for e in book.entries()
            if request.provider in ("", e.provider) and request.model in ("", e.model)])

    async def SetPrice(self, request: pb.SetPriceRequest, context: grpc.aio.ServicerContext) -> pb.SetPriceResponse:
        usage = self._usage()
        p = request.price
        row = PriceRow(
            provider=_provider(p.provider, "price.provider"),
            model=validation.model(p.model, "price.model") or _required("price.model"),
            effective_from=_time(p, "effective_time", "price.effective_time") or audit.now(),
            input_micros=_micros(p.input_micros, "price.input_micros"),
            output_micros=_micros(p.output_micros, "price.output_micros"),
            cached_input_micros=_micros(p.cached_input_micros, "price.cached_input_micros")
            if p.HasField("cached_input_micros") else None,
            cache_write_micros=_micros(p.cache_write_micros, "price.cache_write_micros")
            if p.HasField("cache_write_micros") else None,
            reasoning_micros=_micros(p.reasoning_micros, "price.reasoning_micros")
            if p.HasField("reasoning_micros") else None)
        event = audit.event(peer_identity(context), "price.set", provider=row.provider, model=row.model,
                            effective_time=row.effective_from.isoformat(), input_micros=row.input_micros,
                            output_micros=row.output_micros, cached_input_micros=row.cached_input_micros,
                            cache_write_micros=row.cache_write_micros, reasoning_micros=row.reasoning_micros)
        stored = await self._run(usage.store.set_price, row, audit=event)
        return pb.SetPriceResponse(price=price_pb(stored))

    async def RepriceUsage(self, request: pb.RepriceUsageRequest, context: grpc.aio.ServicerContext
                           ) -> pb.RepriceUsageResponse:
        usage = self._usage()
        provider = _provider(request.provider)
        model = validation.model(request.model, "model")
        start = _time(request, "start_time") or _required("start_time")
        result = await self._run(usage.repricing.run, peer_identity(context), provider, model, start)
        return pb.RepriceUsageResponse(
            hourly_rows=result.hourly_rows, daily_rows=result.daily_rows, straddled_hours=result.straddled_hours,
            spend_micros_before=result.spend_before, spend_micros_after=result.spend_after,
            start_time=convert.timestamp(result.start))

    async def SetBudget(self, request: pb.SetBudgetRequest, context: grpc.aio.ServicerContext
                        ) -> pb.SetBudgetResponse:
        usage = self._usage()
        b = request.budget
        if b.period not in PERIODS:
            raise InvalidArgument("budget.period", "must be BUDGET_PERIOD_DAY or BUDGET_PERIOD_MONTH")
        if b.key_source not in (pb.KEY_SOURCE_UNSPECIFIED, *KEY_SOURCES):
            raise InvalidArgument("budget.key_source", "must be tenant, platform or unspecified (both)")
        if b.limit_micros > _MAX_BUDGET_MICROS:
            raise InvalidArgument("budget.limit_micros", "is too large")
        state = await self._run(
            usage.budgets.set, peer_identity(context),
            validation.scope_id(b.scope.org_id, "budget.scope.org_id", required=True),
            validation.scope_id(b.scope.project_id, "budget.scope.project_id"),
            validation.scope_id(b.scope.user_id, "budget.scope.user_id"),
            KEY_SOURCES.get(b.key_source, ""), PERIODS[b.period], b.limit_micros, b.soft_limit_micros)
        return pb.SetBudgetResponse(budget=budget_pb(state))

    async def ListBudgets(self, request: pb.ListBudgetsRequest, context: grpc.aio.ServicerContext
                          ) -> pb.ListBudgetsResponse:
        usage = self._usage()
        states = await self._run(usage.budgets.list, validation.scope_id(request.org_id, "org_id"))
        return pb.ListBudgetsResponse(budgets=[budget_pb(s) for s in states])

    async def DeleteBudget(self, request: pb.DeleteBudgetRequest, context: grpc.aio.ServicerContext
                           ) -> pb.DeleteBudgetResponse:
        usage = self._usage()
        if not _BUDGET_ID.fullmatch(request.budget_id):
            raise InvalidArgument("budget_id", "must look like bud_ followed by 24 hex digits")
        await self._run(usage.budgets.delete, peer_identity(context), request.budget_id)
        return pb.DeleteBudgetResponse()


def event(record: pb.UsageRecord, now: dt.datetime) -> UsageEvent | None:
    """A record as an event, or None when it fails a check (ingest counts it as skipped)."""
    try:
        org_id = validation.scope_id(record.scope.org_id, "org_id", required=True)
        project_id = validation.scope_id(record.scope.project_id, "project_id")
        user_id = validation.scope_id(record.scope.user_id, "user_id")
        credential_id = validation.credential_id(record.credential_id) if record.credential_id else ""
    except KeyServiceError:
        return None
    try:
        model = validation.model(record.model[:256], "model")
    except KeyServiceError:
        model = ""  # the provider's name for it is not one we can store or query: counted, as no model
    key_source = KEY_SOURCES.get(record.key_source)
    counts = [getattr(record, name) if record.HasField(name) else 0 for name in _TOKEN_FIELDS]
    if record.provider not in PROVIDERS or key_source is None or not all(0 <= c < _MAX_TOKENS for c in counts):
        return None
    try:
        at = record.time.ToDatetime(tzinfo=dt.UTC) if record.HasField("time") else now
    except (ValueError, OverflowError):
        return None
    status = record.status
    return UsageEvent(time=at, org_id=org_id, project_id=project_id, user_id=user_id, provider=record.provider,
                      model=model, credential_id=credential_id, key_source=key_source, tokens=Tokens(*counts),
                      failed=not (status == "OK" or (len(status) == 3 and status.startswith("2"))),
                      duration_ms=max(0, min(record.duration_ms, 1 << 31)))


def usage_row(group: UsageGroup) -> pb.UsageRow:
    d, c = group.dimensions, group.counts
    return pb.UsageRow(
        bucket_start_time=convert.timestamp(group.bucket_start), org_id=d.get("org_id", ""),
        project_id=d.get("project_id", ""), user_id=d.get("user_id", ""), credential_id=d.get("credential_id", ""),
        provider=d.get("provider", ""), model=d.get("model", ""),
        key_source=KEY_SOURCES_PB.get(d.get("key_source", ""), pb.KEY_SOURCE_UNSPECIFIED),
        requests=c.requests, failed_requests=c.failed_requests, input_tokens=c.input_tokens,
        output_tokens=c.output_tokens, cached_input_tokens=c.cached_input_tokens,
        cache_write_tokens=c.cache_write_tokens, reasoning_tokens=c.reasoning_tokens, spend_micros=c.spend_micros,
        unpriced_requests=c.unpriced_requests)


def price_pb(row: PriceRow) -> pb.Price:
    return pb.Price(provider=row.provider, model=row.model, effective_time=convert.timestamp(row.effective_from),
                    input_micros=row.input_micros, output_micros=row.output_micros,
                    cached_input_micros=row.cached_input_micros, cache_write_micros=row.cache_write_micros,
                    reasoning_micros=row.reasoning_micros, source=row.source)


def budget_pb(state: BudgetState) -> pb.Budget:
    b = state.budget
    return pb.Budget(
        budget_id=b.budget_id, scope=pb.Scope(org_id=b.org_id, project_id=b.project_id, user_id=b.user_id),
        key_source=KEY_SOURCES_PB.get(b.key_source, pb.KEY_SOURCE_UNSPECIFIED), period=PERIODS_PB[b.period],
        limit_micros=b.limit_micros, soft_limit_micros=b.soft_limit_micros, spend_micros=state.spend_micros,
        period_start_time=convert.timestamp(state.period_start), exhausted=state.exhausted,
        create_time=convert.timestamp(b.created_at), update_time=convert.timestamp(b.updated_at))


def _provider(name: str, field: str = "provider") -> str:
    if name not in PROVIDERS:  # not echoed: a key pasted into the field would land in the error
        raise InvalidArgument(field, f"unknown provider; known: {', '.join(sorted(PROVIDERS))}")
    return name


def _required(field: str) -> Any:
    raise InvalidArgument(field, "is required")


def _dimension(value: Any) -> str:
    if value not in DIMENSIONS:
        raise InvalidArgument("dimensions", "must be USAGE_DIMENSION_ORG, _PROJECT, _USER, _CREDENTIAL, _PROVIDER, "
                                            "_MODEL or _KEY_SOURCE")
    return DIMENSIONS[value]


def _micros(value: int, field: str) -> int:
    if not 0 <= value <= _MAX_MICROS:
        raise InvalidArgument(field, f"must be between 0 and {_MAX_MICROS} micro-dollars per million tokens")
    return value


def _time(message: Any, name: str, field: str = "") -> dt.datetime | None:
    """A Timestamp field as a datetime (None when unset); one outside 0001-9999 is the caller's error."""
    if not message.HasField(name):
        return None
    try:
        return getattr(message, name).ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(field or name, "must be a timestamp between years 1 and 9999") from None
