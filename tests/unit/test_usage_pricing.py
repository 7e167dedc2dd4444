"""Prices (keyservice/usage/pricing.py) and rollups (keyservice/usage/rollup.py): the price in force at a request's
time, the longest model-name match, source precedence, each family's token meaning, exact integer spend, the shipped
table and ops' file, and the hour and day buckets a batch adds to (late events in their own hour)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import pytest

from keyservice.errors import InvalidArgument
from keyservice.store import PriceRow, RollupKey
from keyservice.usage.ingest import family_of
from keyservice.usage.pricing import (
    PriceBook,
    PriceCatalog,
    Tokens,
    builtin_prices,
    cost_picos,
    dollars_to_micros,
    load_price_file,
    micros_to_dollars,
    picos_to_micros,
)
from keyservice.usage.rollup import UsageEvent, bucket_end, bucket_start, roll_up

T = dt.datetime(2025, 6, 1, 12, 30, tzinfo=dt.UTC)


def price(model: str = "gpt-4o", effective: dt.datetime = T - dt.timedelta(days=1), source: str = "builtin",
          **kw: int | None) -> PriceRow:
    values: dict[str, int | None] = {"input_micros": 2_500_000, "output_micros": 10_000_000, **kw}
    return PriceRow(provider="openai", model=model, effective_from=effective, source=source, **values)  # type: ignore[arg-type]


def test_the_price_in_force_is_the_latest_at_or_before_the_time() -> None:
    old, new = price(input_micros=1), price(effective=T, input_micros=2)
    book = PriceBook([new, old])
    assert book.price("openai", "gpt-4o", T - dt.timedelta(seconds=1)) == old
    assert book.price("openai", "gpt-4o", T) == new
    assert book.price("openai", "gpt-4o", T - dt.timedelta(days=2)) is None  # before any entry: unpriced


def test_on_equal_times_an_override_beats_the_file_beats_the_shipped_entry() -> None:
    entries = [price(source="override", input_micros=3), price(source="builtin", input_micros=1),
               price(source="file", input_micros=2)]
    assert PriceBook(entries).price("openai", "gpt-4o", T).input_micros == 3  # type: ignore[union-attr]
    assert PriceBook(entries[1:]).price("openai", "gpt-4o", T).input_micros == 2  # type: ignore[union-attr]


def test_the_longest_entry_on_a_dash_boundary_prices_a_model() -> None:
    book = PriceBook([price("gpt-4o"), price("gpt-4o-mini", input_micros=150_000)])
    assert book.price("openai", "gpt-4o-mini-2024-07-18", T).model == "gpt-4o-mini"  # type: ignore[union-attr]
    assert book.price("openai", "gpt-4o-2024-08-06", T).model == "gpt-4o"  # type: ignore[union-attr]
    assert book.price("openai", "gpt-4oo", T) is None  # not on a boundary
    assert book.price("anthropic", "gpt-4o", T) is None  # per provider


def test_costs_follow_each_familys_meaning_of_its_counts() -> None:
    p = price(input_micros=1_000_000, output_micros=4_000_000, cached_input_micros=100_000,
              cache_write_micros=1_250_000, reasoning_micros=8_000_000)
    # OpenAI: 1000 input of which 400 cached; 300 output of which 100 reasoning.
    openai = Tokens(input=1000, output=300, cached_input=400, reasoning=100)
    assert cost_picos("openai", openai, p) == 600 * 1_000_000 + 400 * 100_000 + 200 * 4_000_000 + 100 * 8_000_000
    # Anthropic: input excludes cache reads and writes; output includes thinking.
    anthropic = Tokens(input=1000, output=300, cached_input=400, cache_write=50, reasoning=100)
    assert cost_picos("anthropic", anthropic, p) == (1000 * 1_000_000 + 400 * 100_000 + 50 * 1_250_000
                                                     + 200 * 4_000_000 + 100 * 8_000_000)
    # Gemini: cached inside input, thoughts beside output.
    gemini = Tokens(input=1000, output=300, cached_input=400, reasoning=100)
    assert cost_picos("gemini", gemini, p) == 600 * 1_000_000 + 400 * 100_000 + 300 * 4_000_000 + 100 * 8_000_000
    assert family_of("bedrock") == "bedrock" and family_of("mistral") == "openai"


def test_missing_cache_and_reasoning_prices_fall_back_to_input_and_output() -> None:
    p = price(input_micros=1_000_000, output_micros=4_000_000)
    tokens = Tokens(input=10, output=10, cached_input=5, cache_write=3, reasoning=2)
    assert cost_picos("anthropic", tokens, p) == (10 + 5 + 3) * 1_000_000 + (8 + 2) * 4_000_000


def test_spend_is_exact_in_picos_and_rounded_once_to_micros() -> None:
    # 7 tokens at $0.15 per million = 1.05 micro-dollars: 1 when rounded per request, 3.15 → 3 for three.
    p = price(input_micros=150_000, output_micros=0)
    assert cost_picos("openai", Tokens(input=7), p) == 1_050_000
    assert picos_to_micros(3 * 1_050_000) == 3
    assert picos_to_micros(500_000) == 1 and picos_to_micros(499_999) == 0


@pytest.mark.parametrize(("text", "micros"), [("0.15", 150_000), (2.5, 2_500_000), ("0", 0), (60, 60_000_000),
                                              ("0.000001", 1)])
def test_dollars_parse_to_whole_micros(text: object, micros: int) -> None:
    assert dollars_to_micros(text, "x") == micros
    assert dollars_to_micros(micros_to_dollars(micros), "x") == micros


@pytest.mark.parametrize("bad", ["0.0000001", "-1", "1e9", "NaN", "cheap", True, None, [1]])
def test_bad_prices_are_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidArgument) as caught:
        dollars_to_micros(bad, "prices[3].input")
    assert caught.value.field == "prices[3].input"


def test_the_shipped_table_loads_is_dated_and_documented() -> None:
    entries = builtin_prices()
    assert len(entries) >= 20 and {e.source for e in entries} == {"builtin"}
    assert len({(e.provider, e.model, e.effective_from) for e in entries}) == len(entries)
    document = json.loads((Path(__file__).resolve().parents[2] / "keyservice/data/prices.json").read_text())
    assert "examples to be kept current" in document["about"] and document["checked"]
    from keyservice.providers import PROVIDERS
    assert {e.provider for e in entries} <= set(PROVIDERS)


def test_ops_file_adds_entries_and_a_bad_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"prices": [{"provider": "openai", "model": "gpt-4o", "effective": "2030-01-01",
                                            "input": "1", "output": "2"}]}))
    catalog = PriceCatalog(file=str(path))
    later = dt.datetime(2030, 2, 1, tzinfo=dt.UTC)
    in_force = catalog.book([]).price("openai", "gpt-4o", later)
    assert in_force is not None and in_force.source == "file" and in_force.input_micros == 1_000_000
    path.write_text(json.dumps({"prices": [{"provider": "openai", "model": "gpt-4o", "effective": "soon",
                                            "input": "1", "output": "2"}]}))
    with pytest.raises(InvalidArgument, match=r"prices\[0\]\.effective"):
        load_price_file(str(path), source="file")


def test_a_bad_prices_file_stops_keyservice_with_its_name(tmp_path: Path) -> None:
    from byokcommon.settings import SettingsError
    from keyservice.settings import _prices_file

    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(SettingsError, match="BYOK_PRICES_FILE"):
        _prices_file({"BYOK_PRICES_FILE": str(tmp_path / "p.json")})
    with pytest.raises(SettingsError, match="BYOK_PRICES_FILE: cannot read"):
        _prices_file({"BYOK_PRICES_FILE": str(tmp_path / "missing.json")})


def event(at: dt.datetime, **kw: object) -> UsageEvent:
    values: dict[str, object] = dict(org_id="acme", project_id="", user_id="", provider="openai", model="gpt-4o",
                                     credential_id="cred_" + "a" * 24, key_source="tenant",
                                     tokens=Tokens(input=1000, output=100), failed=False, duration_ms=20)
    values.update(kw)
    return UsageEvent(time=at, **values)  # type: ignore[arg-type]


def test_a_batch_adds_to_its_hours_and_days_with_spend_and_last_use() -> None:
    late = T - dt.timedelta(hours=5)  # reported now, made five hours ago: its own hour
    book = PriceBook([price()])
    sums, last_used = roll_up([event(T), event(T + dt.timedelta(minutes=1), failed=True), event(late)], book,
                              family_of)
    hour = RollupKey("hour", bucket_start("hour", T), "acme", "", "", "cred_" + "a" * 24, "openai", "gpt-4o",
                     "tenant")
    assert sums[hour].requests == 2 and sums[hour].failed_requests == 1 and sums[hour].input_tokens == 2000
    # 1000 × $2.50 + 100 × $10 per million = 3500 micro-dollars a request.
    assert sums[hour].spend_micros == 7000 and sums[hour].duration_ms == 40
    day = replace(hour, granularity="day", bucket_start=bucket_start("day", T))
    assert sums[day].requests == 3 and sums[day].spend_micros == 10_500
    assert any(k.granularity == "hour" and k.bucket_start == bucket_start("hour", late) for k in sums)
    assert last_used == {"cred_" + "a" * 24: T + dt.timedelta(minutes=1)}


def test_requests_without_a_price_are_counted_as_unpriced() -> None:
    sums, _ = roll_up([event(T, model="mystery-model"), event(T, model="mystery-model", tokens=Tokens())],
                      PriceBook([price()]), family_of)
    hour = next(k for k in sums if k.granularity == "hour")
    assert (sums[hour].requests, sums[hour].unpriced_requests, sums[hour].spend_micros) == (2, 1, 0)


def test_buckets() -> None:
    assert bucket_start("hour", T) == T.replace(minute=0)
    assert bucket_start("day", T) == T.replace(hour=0, minute=0)
    assert bucket_end("hour", T) == T.replace(hour=13, minute=0)
    assert bucket_end("day", T.replace(hour=0, minute=0)) == T.replace(hour=0, minute=0)  # already a start

