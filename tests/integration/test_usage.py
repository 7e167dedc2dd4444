"""Usage, prices and budgets in keyservice, on SQLite and the real PostgreSQL (and a real OpenBao for the gRPC
tests): the migration, a batch counted exactly once however often (and however concurrently) it is sent, queries
by filter, bucket and dimension, spend at the price in force when a request was made, last_used_at, the roles, and
budgets enforced at their edges (lease refused naming the budget, the revocation pushed once per period, soft
threshold, late usage, a restart, limits changed both ways, a platform-only budget)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from byok.keys.v1 import key_service_pb2 as pb
from keyservice.store import RollupKey, Store, UsageCounts, UsageFilter
from tests.integration.test_byokctl import Cli, cli  # noqa: F401 - the module's byokctl system, as a fixture
from tests.integration.test_keyservice_features import (
    bind,
    create_request,
    lease_request,
    next_event,
    running,
    watch,
)
from tests.support.bao import BaoDevServer
from tests.support.stack import Identities, keyservice_settings

NOW = dt.datetime.now(dt.UTC)
HOUR = NOW.replace(minute=0, second=0, microsecond=0)
CRED = "cred_" + "c" * 24


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def key(granularity: str = "hour", at: dt.datetime = HOUR, **dims: str) -> RollupKey:
    values = dict(org_id="acme", project_id="", user_id="", credential_id=CRED, provider="openai", model="gpt-4o",
                  key_source="tenant")
    values.update(dims)
    start = at if granularity == "hour" else at.replace(hour=0)
    return RollupKey(granularity, start, **values)


# -- the store ----------------------------------------------------------------------------------------------------

def test_the_migration_creates_exactly_the_usage_tables(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from keyservice.store import metadata

    assert store.schema_revision() == "0007"
    with store._engine.connect() as conn:  # noqa: SLF001 - compares the migrated schema with the tables
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []


def test_a_batch_is_counted_once(store: Store) -> None:
    sums = {key(): UsageCounts(requests=2, input_tokens=10, spend_micros=7)}
    batch = str(uuid.uuid4())
    assert store.record_usage(batch, "proxy", 2, sums, {}) is True
    assert store.record_usage(batch, "proxy", 2, sums, {}) is False  # the retry
    (group,) = store.usage_groups(UsageFilter(org_id="acme"), granularity="hour", start=None, end=None,
                                  by_bucket=False, dimensions=(), limit=10)
    assert (group.counts.requests, group.counts.input_tokens, group.counts.spend_micros) == (2, 10, 7)
    assert store.record_usage(str(uuid.uuid4()), "proxy", 2, sums, {}) is True  # another batch adds
    assert store.usage_groups(UsageFilter(), granularity="hour", start=None, end=None, by_bucket=False,
                              dimensions=(), limit=10)[0].counts.requests == 4


def test_concurrent_deliveries_of_one_batch_count_it_once(store: Store) -> None:
    sums = {key(): UsageCounts(requests=1, output_tokens=3)}
    batch = str(uuid.uuid4())
    start = threading.Barrier(8)
    results: list[bool] = []

    def deliver() -> None:
        start.wait()
        results.append(store.record_usage(batch, "proxy", 1, sums, {}))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert store.usage_groups(UsageFilter(), granularity="hour", start=None, end=None, by_bucket=False,
                              dimensions=(), limit=10)[0].counts.requests == 1


def test_groups_by_bucket_and_dimension_with_filters(store: Store) -> None:
    earlier = HOUR - dt.timedelta(hours=1)
    store.record_usage(str(uuid.uuid4()), "proxy", 3, {
        key(): UsageCounts(requests=1, input_tokens=1),
        key(model="gpt-4o-mini"): UsageCounts(requests=1, input_tokens=2),
        key(at=earlier, key_source="platform", credential_id=""): UsageCounts(requests=1, input_tokens=4),
        key(org_id="other"): UsageCounts(requests=1, input_tokens=8),
    }, {})
    by_hour = store.usage_groups(UsageFilter(org_id="acme"), granularity="hour", start=None, end=None,
                                 by_bucket=True, dimensions=(), limit=10)
    assert [(g.bucket_start, g.counts.input_tokens) for g in by_hour] == [(earlier, 4), (HOUR, 3)]
    by_model = store.usage_groups(UsageFilter(org_id="acme", key_source="tenant"), granularity="hour", start=HOUR,
                                  end=None, by_bucket=False, dimensions=("model",), limit=10)
    assert [(g.dimensions["model"], g.counts.input_tokens) for g in by_model] == [("gpt-4o", 1), ("gpt-4o-mini", 2)]
    assert store.usage_groups(UsageFilter(org_id="nobody"), granularity="hour", start=None, end=None,
                              by_bucket=False, dimensions=(), limit=10) == []


def test_last_used_at_only_moves_forward(store: Store) -> None:
    from tests.integration.test_store import cred

    row = cred()
    store.insert_credential(row)
    assert store.get_credential(row.credential_id).last_used_at is None
    store.record_usage(str(uuid.uuid4()), "proxy", 1, {}, {row.credential_id: NOW})
    store.record_usage(str(uuid.uuid4()), "proxy", 1, {}, {row.credential_id: NOW - dt.timedelta(hours=1)})
    assert store.get_credential(row.credential_id).last_used_at == NOW


# -- keyservice over gRPC -------------------------------------------------------------------------------------------

def usage(org: str, *, tokens: tuple[int, int] = (1000, 100), at: dt.datetime | None = None, model: str = "gpt-4o",
          credential_id: str = "", key_source: Any = pb.KEY_SOURCE_TENANT, **kw: Any) -> pb.UsageRecord:
    stamp = Timestamp()
    stamp.FromDatetime(at or dt.datetime.now(dt.UTC))
    return pb.UsageRecord(time=stamp, scope=pb.Scope(org_id=org), caller_identity="spiffe://byok.local/caller",
                          provider="openai", model=model, credential_id=credential_id, key_source=key_source,
                          input_tokens=tokens[0], output_tokens=tokens[1], status="OK", duration_ms=5,
                          surface="chat", **kw)


def batch(*records: pb.UsageRecord) -> pb.ReportUsageRequest:
    return pb.ReportUsageRequest(batch_id=str(uuid.uuid4()), records=list(records))


async def total(admin: Any, org: str, **kw: Any) -> pb.UsageRow:
    rows = (await admin.QueryUsage(pb.QueryUsageRequest(org_id=org, grouping=pb.USAGE_GROUPING_TOTAL, **kw))).rows
    return rows[0] if rows else pb.UsageRow()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# gpt-4o's shipped price: $2.50 in, $10 out per million: 1000 in + 100 out = 3500 micro-dollars.
SPEND = 3500


async def test_report_usage_counts_a_batch_once_and_queries_agree(bao: BaoDevServer, ids: Identities,
                                                                  database_url: str) -> None:
    org = unique("usage")
    async with running(keyservice_settings(bao, ids, database_url), ids) as ks:
        cred = (await ks.admin.CreateCredential(create_request(org, "main"))).credential
        sent = batch(usage(org, credential_id=cred.credential_id), usage(org, tokens=(10, 1), model="unknown-x"),
                     usage(org, tokens=(0, 0), model="no spaces allowed"),  # counted, as no model
                     usage(""), usage(org, credential_id="cred_bad"))  # the last two fail their checks
        first = await ks.proxy.ReportUsage(sent)
        again = await ks.proxy.ReportUsage(sent)  # the proxy never heard the first answer
        assert (first.accepted_count, first.duplicate) == (3, False)
        assert (again.accepted_count, again.duplicate) == (0, True)
        row = await total(ks.admin, org)
        assert (row.requests, row.input_tokens, row.output_tokens) == (3, 1010, 101)
        assert (row.spend_micros, row.unpriced_requests) == (SPEND, 1)
        by_model = (await ks.admin.QueryUsage(pb.QueryUsageRequest(
            org_id=org, grouping=pb.USAGE_GROUPING_HOUR, dimensions=[pb.USAGE_DIMENSION_MODEL]))).rows
        assert [(r.model, r.requests) for r in by_model] == [("", 1), ("gpt-4o", 1), ("unknown-x", 1)]
        assert by_model[1].bucket_start_time.ToDatetime(dt.UTC) == dt.datetime.now(dt.UTC).replace(
            minute=0, second=0, microsecond=0)
        used = (await ks.admin.GetCredential(pb.GetCredentialRequest(credential_id=cred.credential_id))).credential
        assert used.HasField("last_use_time")
        registry = ks.app.metrics.registry
        assert registry.get_sample_value("byok_usage_records_total", {"outcome": "duplicate"}) == 5
        assert registry.get_sample_value("byok_usage_records_total", {"outcome": "skipped"}) == 2


async def test_roles_and_refusals(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        with pytest.raises(grpc.aio.AioRpcError) as admin_reports:
            await ks.admin.ReportUsage(batch(usage("acme")))
        assert admin_reports.value.code() == grpc.StatusCode.PERMISSION_DENIED
        for call in (ks.proxy.QueryUsage(pb.QueryUsageRequest()), ks.proxy.ListBudgets(pb.ListBudgetsRequest()),
                     ks.proxy.SetPrice(pb.SetPriceRequest())):
            with pytest.raises(grpc.aio.AioRpcError) as proxy_admins:
                await call
            assert proxy_admins.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as bad_id:
            await ks.proxy.ReportUsage(pb.ReportUsageRequest(batch_id="sk-proj-notauuid", records=[usage("a")]))
        assert bad_id.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sk-proj" not in (bad_id.value.details()
                                                                                          or "")


async def test_late_usage_lands_in_its_own_hour(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    org = unique("late")
    made = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        await ks.proxy.ReportUsage(batch(usage(org, at=made)))
        (row,) = (await ks.admin.QueryUsage(pb.QueryUsageRequest(org_id=org, grouping=pb.USAGE_GROUPING_HOUR))).rows
        assert row.bucket_start_time.ToDatetime(dt.UTC) == made.replace(minute=0, second=0, microsecond=0)
        # A proxy clock far ahead is taken as now, not as a future hour no query covers yet.
        await ks.proxy.ReportUsage(batch(usage(org, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=2))))
        rows = (await ks.admin.QueryUsage(pb.QueryUsageRequest(org_id=org, grouping=pb.USAGE_GROUPING_DAY))).rows
        assert sum(r.requests for r in rows) == 2 and max(r.bucket_start_time.ToDatetime(dt.UTC) for r in rows) <= \
            dt.datetime.now(dt.UTC)


async def test_spend_uses_the_price_in_force_when_the_request_was_made(bao: BaoDevServer, ids: Identities,
                                                                       database_url: str) -> None:
    org = unique("price")
    async with running(keyservice_settings(bao, ids, database_url), ids) as ks:
        await ks.proxy.ReportUsage(batch(usage(org)))  # at the shipped price
        since = Timestamp()
        since.FromDatetime(dt.datetime.now(dt.UTC))
        await ks.admin.SetPrice(pb.SetPriceRequest(price=pb.Price(
            provider="openai", model="gpt-4o", effective_time=since, input_micros=1_000_000, output_micros=0)))
        await ks.proxy.ReportUsage(batch(usage(org)))  # 1000 × $1 per million = 1000 micro-dollars
        assert (await total(ks.admin, org)).spend_micros == SPEND + 1000
        listed = (await ks.admin.ListPrices(pb.ListPricesRequest(provider="openai", model="gpt-4o"))).prices
        assert [p.source for p in listed] == ["builtin", "override"]
        assert not listed[1].HasField("cached_input_micros")
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await ks.admin.SetPrice(pb.SetPriceRequest(price=pb.Price(provider="nope", model="m")))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def budget(org: str, limit: int, *, key_source: Any = pb.KEY_SOURCE_UNSPECIFIED, soft: int = 0,
           period: Any = pb.BUDGET_PERIOD_MONTH, **scope: str) -> pb.SetBudgetRequest:
    return pb.SetBudgetRequest(budget=pb.Budget(scope=pb.Scope(org_id=org, **scope), key_source=key_source,
                                                period=period, limit_micros=limit, soft_limit_micros=soft))


async def audit_actions(admin: Any, org: str, action: str) -> list[pb.AuditEvent]:
    return list((await admin.ListAuditEvents(pb.ListAuditEventsRequest(org_id=org, action=action))).events)


async def test_a_budget_refuses_leases_past_its_hard_limit_and_revokes_once(bao: BaoDevServer, ids: Identities,
                                                                             database_url: str) -> None:
    org = unique("budget")
    settings = keyservice_settings(bao, ids, database_url)
    async with running(settings, ids) as ks:
        await ks.admin.CreateCredential(create_request(org, "main"))
        await bind(ks.admin, org)
        set_reply = await ks.admin.SetBudget(budget(org, 2 * SPEND, soft=SPEND))
        budget_id = set_reply.budget.budget_id
        assert budget_id.startswith("bud_") and set_reply.budget.spend_micros == 0
        await ks.proxy.IssueKeyLease(lease_request(org))
        stream = await watch(ks.proxy)
        await ks.proxy.ReportUsage(batch(usage(org)))  # the soft threshold: audit + metric, no revocation
        assert len(await audit_actions(ks.admin, org, "budget.threshold")) == 1
        await ks.proxy.ReportUsage(batch(usage(org)))  # the hard limit
        event = await next_event(stream, lambda e: e.reason == pb.REVOCATION_REASON_BUDGET_EXHAUSTED)
        assert event.org_id == org
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.proxy.IssueKeyLease(lease_request(org))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (refused.value.details() or "").startswith(f"budget {budget_id} (org {org}, all keys, per month)")
        await ks.proxy.ReportUsage(batch(usage(org)))  # a request that was in flight: counted, announced no more
        assert len(await audit_actions(ks.admin, org, "budget.exhausted")) == 1
        assert len(await audit_actions(ks.admin, org, "budget.threshold")) == 1
        registry = ks.app.metrics.registry
        assert registry.get_sample_value("byok_budget_thresholds_total", {"threshold": "hard"}) == 1
        (listed,) = (await ks.admin.ListBudgets(pb.ListBudgetsRequest(org_id=org))).budgets
        assert listed.exhausted and listed.spend_micros == 3 * SPEND
        refusals = await audit_actions(ks.admin, org, "lease.refuse")
        assert [e.outcome for e in refusals] == ["budget_exhausted"]
    async with running(settings, ids) as ks:  # a restart: the state is the database's
        with pytest.raises(grpc.aio.AioRpcError) as still:
            await ks.proxy.IssueKeyLease(lease_request(org))
        assert still.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Raised above the spend: leases at once; lowered below it again: refused and revoked at once.
        await ks.admin.SetBudget(budget(org, 10 * SPEND))
        await ks.proxy.IssueKeyLease(lease_request(org))
        stream = await watch(ks.proxy)
        await ks.admin.SetBudget(budget(org, SPEND))
        await next_event(stream, lambda e: e.reason == pb.REVOCATION_REASON_BUDGET_EXHAUSTED)
        with pytest.raises(grpc.aio.AioRpcError):
            await ks.proxy.IssueKeyLease(lease_request(org))
        await ks.admin.DeleteBudget(pb.DeleteBudgetRequest(budget_id=budget_id))
        await ks.proxy.IssueKeyLease(lease_request(org))


async def test_a_platform_key_budget_leaves_the_tenants_own_keys_alone(bao: BaoDevServer, ids: Identities,
                                                                        sqlite_url: str) -> None:
    org = unique("platform")
    settings = keyservice_settings(bao, ids, sqlite_url, platform_keys={"OPENAI_API_KEY": "sk-platform-" + "p" * 40})
    async with running(settings, ids) as ks:
        await bind(ks.admin, org)
        await ks.admin.SetOrgPolicy(pb.SetOrgPolicyRequest(policy=pb.OrgPolicy(org_id=org,
                                                                               allow_platform_fallback=True)))
        await ks.admin.SetBudget(budget(org, SPEND, key_source=pb.KEY_SOURCE_PLATFORM))
        assert (await ks.proxy.IssueKeyLease(lease_request(org))).key_source == pb.KEY_SOURCE_PLATFORM
        await ks.proxy.ReportUsage(batch(usage(org, key_source=pb.KEY_SOURCE_PLATFORM)))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.proxy.IssueKeyLease(lease_request(org))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "platform keys" in (
            refused.value.details() or "")
        await ks.admin.CreateCredential(create_request(org, "own"))  # the org brings its own key
        assert (await ks.proxy.IssueKeyLease(lease_request(org))).key_source == pb.KEY_SOURCE_TENANT


async def test_a_project_budget_counts_only_that_project(bao: BaoDevServer, ids: Identities,
                                                         sqlite_url: str) -> None:
    org = unique("proj")
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        await ks.admin.CreateCredential(create_request(org, "main"))
        await bind(ks.admin, org)
        await ks.admin.SetBudget(budget(org, SPEND, project_id="web", period=pb.BUDGET_PERIOD_DAY))
        other = usage(org)
        other.scope.project_id = "batch"
        await ks.proxy.ReportUsage(batch(other))
        await ks.proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(scope=pb.Scope(org_id=org, project_id="web"),
                                                             provider="openai", caller_identity=lease_request(
                                                                 org).caller_identity))
        web = usage(org)
        web.scope.project_id = "web"
        # Last month's usage (arriving late) is not this period's spend.
        await ks.proxy.ReportUsage(batch(web, usage(org, at=dt.datetime.now(dt.UTC) - dt.timedelta(days=40))))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ks.proxy.IssueKeyLease(pb.IssueKeyLeaseRequest(
                scope=pb.Scope(org_id=org, project_id="web"), provider="openai",
                caller_identity=lease_request(org).caller_identity))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await ks.proxy.IssueKeyLease(lease_request(org))  # the org's other requests go on


async def test_budget_input_is_checked(bao: BaoDevServer, ids: Identities, sqlite_url: str) -> None:
    async with running(keyservice_settings(bao, ids, sqlite_url), ids) as ks:
        for request, field in ((budget("", 1), "budget.scope.org_id"), (budget("a", 0), "budget.limit_micros"),
                               (budget("a", 5, soft=5), "budget.soft_limit_micros"),
                               (budget("a", 5, period=pb.BUDGET_PERIOD_UNSPECIFIED), "budget.period")):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ks.admin.SetBudget(request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (refused.value.details() or "").startswith(field)
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await ks.admin.DeleteBudget(pb.DeleteBudgetRequest(budget_id="bud_" + "0" * 24))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/ks.db"



# -- byokctl ---------------------------------------------------------------------------------------------------------

def test_byokctl_usage_prices_and_budgets(cli: Cli) -> None:  # noqa: F811 - the fixture imported above
    from tests.integration.test_byokctl import ok, ok_json, table

    org = unique("cli")
    record = usage(org, tokens=(2000, 200))
    cli.services.run(_report(cli, batch(record, usage(org, model="gpt-4o-mini"))))
    rows = table(ok(cli("usage", "--org", org, "--group", "total", "--by", "model,key_source")))
    assert [(r["model"], r["key_source"], r["requests"], r["input"]) for r in rows] == [
        ("gpt-4o", "tenant", "1", "2000"), ("gpt-4o-mini", "tenant", "1", "1000")]
    assert rows[0]["spend usd"] == "0.007"  # 2000 × $2.50 + 200 × $10 per million
    csv_lines = ok(cli("usage", "--org", org, "--group", "day", "--csv")).splitlines()
    assert csv_lines[0].startswith("bucket,requests,failed,input,output") and len(csv_lines) == 2
    assert csv_lines[1].split(",")[1] == "2"
    as_json = ok_json(cli("usage", "--org", org, "--json", "--group", "hour"))
    assert as_json["rows"][0]["requests"] == "2" and as_json["end_time"].endswith("Z")  # int64 as protobuf's JSON
    assert cli("usage", "--json", "--csv").returncode == 2
    assert "--by: unknown colour" in cli("usage", "--by", "colour").stderr

    listed = table(ok(cli("prices", "list", "--provider", "openai")))
    assert {"model": "gpt-4o-mini", "input": "0.15", "cached input": "0.075"}.items() <= next(
        r for r in listed if r["model"] == "gpt-4o-mini").items()
    ok(cli("prices", "set", "--provider", "openai", "--model", "cli-model", "--input", "$1.5", "--output", "2"))
    (override,) = ok_json(cli("prices", "list", "--model", "cli-model", "--json"))
    assert (override["input_micros"], override["source"]) == ("1500000", "override")
    assert cli("prices", "set", "--provider", "openai", "--model", "m", "--input", "0.0000001",
               "--output", "1").returncode == 2
    # A correction back-dated a day, then the usage counted since repriced: 1000 × $1 + 100 × $2 per million.
    ok(cli("prices", "set", "--provider", "openai", "--model", "gpt-4o-mini", "--input", "1", "--output", "2",
           "--effective", "1d"))
    out = ok(cli("prices", "reprice", "--provider", "openai", "--model", "gpt-4o-mini", "--since", "3h"))
    assert "1 hourly and 1 daily rows repriced, spend $0.00021 -> $0.0012" in out
    again = ok_json(cli("prices", "reprice", "--provider", "openai", "--since", "3h", "--json"))
    assert (again["hourly_rows"], again["spend_micros_before"], again["spend_micros_after"]) == (0, "8200", "8200")
    assert cli("prices", "reprice", "--provider", "openai").returncode == 2  # --since is required

    out = ok(cli("budgets", "set", "--org", org, "--key-source", "platform", "--period", "month", "--limit", "50",
                 "--soft", "80%"))
    (row,) = table(out)
    assert (row["keys"], row["period"], row["limit usd"], row["soft usd"], row["exhausted"]) == (
        "platform", "month", "50", "40", "no")
    (listed_budget,) = ok_json(cli("budgets", "list", "--org", org, "--json"))
    assert listed_budget["key_source"] == "platform" and listed_budget["soft_limit_micros"] == "40000000"
    ok(cli("budgets", "delete", listed_budget["budget_id"]))
    assert table(ok(cli("budgets", "list", "--org", org))) == []
    assert cli("budgets", "delete", listed_budget["budget_id"]).returncode == 3  # NOT_FOUND


async def _report(system: Cli, request: pb.ReportUsageRequest) -> None:
    from tests.support.stack import keys_stub, secure_channel

    async with secure_channel(system.keyservice.port, system.ids.proxyservice) as channel:
        await keys_stub(channel).ReportUsage(request)
