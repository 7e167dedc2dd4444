"""Prices and what a request cost.

Three sources make one table: the entries shipped with keyservice (`keyservice/data/prices.json`), the file ops
mount (BYOK_PRICES_FILE, the chart's `keyservice.prices`), and the overrides set with `byokctl prices set` (the
database). Each entry prices one provider and model from its effective time on. The price in force for a request
is the entry with the latest effective time at or before the request's time; on equal times an override beats the
file, which beats the shipped entry. A model is priced by the longest entry that is its name or a prefix of it
ending at a '-' ("gpt-4o-mini" prices "gpt-4o-mini-2024-07-18"; "gpt-4o" does not price "gpt-4o-mini" when
"gpt-4o-mini" has an entry).

Amounts are integers: prices in micro-dollars per million tokens, so tokens × price is in pico-dollars, summed
exactly and rounded to micro-dollars once per rollup row and batch.

Providers count tokens differently, and the cost follows each family's meaning (the proxy relays the counts as
the provider reported them, proxyservice's Usage message):
- cached input: OpenAI-compatible and Gemini count it inside input tokens; Anthropic and Bedrock beside them;
- reasoning: OpenAI, Anthropic and Bedrock count it inside output tokens; Gemini beside them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any

from keyservice.errors import InvalidArgument
from keyservice.store import PriceRow

# Families whose input count includes the tokens read from the prompt cache; whose output count includes reasoning.
_CACHE_INSIDE_INPUT = frozenset({"openai", "gemini"})
_REASONING_INSIDE_OUTPUT = frozenset({"openai", "anthropic", "bedrock"})
_SOURCE_RANK = {"builtin": 0, "file": 1, "override": 2}
_MICROS = Decimal(1_000_000)
PICOS_PER_MICRO = 1_000_000
# Largest price accepted, in dollars per million tokens (a typo's extra zeros should fail, not bill).
MAX_PRICE_DOLLARS = Decimal(100_000)


@dataclass(frozen=True, slots=True)
class Tokens:
    """A request's counts as the provider reported them (0 when it did not report one)."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def any(self) -> bool:
        return bool(self.input or self.output or self.cached_input or self.cache_write or self.reasoning)


def cost_picos(family: str, tokens: Tokens, price: PriceRow) -> int:
    """What `tokens` cost at `price`, in pico-dollars (micro-dollars per million tokens × tokens)."""
    uncached = max(0, tokens.input - tokens.cached_input) if family in _CACHE_INSIDE_INPUT else tokens.input
    plain_output = max(0, tokens.output - tokens.reasoning) if family in _REASONING_INSIDE_OUTPUT else tokens.output
    cached = price.input_micros if price.cached_input_micros is None else price.cached_input_micros
    cache_write = price.input_micros if price.cache_write_micros is None else price.cache_write_micros
    reasoning = price.output_micros if price.reasoning_micros is None else price.reasoning_micros
    return (uncached * price.input_micros + tokens.cached_input * cached + tokens.cache_write * cache_write
            + plain_output * price.output_micros + tokens.reasoning * reasoning)


def picos_to_micros(picos: int) -> int:
    """Rounded half up to whole micro-dollars."""
    return (picos + PICOS_PER_MICRO // 2) // PICOS_PER_MICRO


class PriceBook:
    """The entries of every source, indexed for `price(provider, model, at)`."""

    def __init__(self, entries: Iterable[PriceRow]) -> None:
        self._by_model: dict[tuple[str, str], list[PriceRow]] = {}
        for entry in entries:
            self._by_model.setdefault((entry.provider, entry.model), []).append(entry)
        for versions in self._by_model.values():
            versions.sort(key=lambda e: (e.effective_from, _SOURCE_RANK.get(e.source, 0)))

    def entries(self) -> list[PriceRow]:
        return [e for key in sorted(self._by_model) for e in self._by_model[key]]

    def price(self, provider: str, model: str, at: dt.datetime) -> PriceRow | None:
        """The entry in force at `at` for the longest matching model name; None if none is."""
        name = model
        while name:
            versions = self._by_model.get((provider, name))
            if versions:
                in_force = None
                for entry in versions:  # few versions per model: a scan beats bisect's bookkeeping
                    if entry.effective_from > at:
                        break
                    in_force = entry
                if in_force is not None:
                    return in_force
            cut = name.rfind("-")
            name = name[:cut] if cut > 0 else ""
        return None


class PriceCatalog:
    """The shipped entries and ops' file, read once at start; `book(overrides)` adds the database's."""

    def __init__(self, *, file: str = "") -> None:
        self.static = builtin_prices() + (load_price_file(file, source="file") if file else [])

    def book(self, overrides: Iterable[PriceRow]) -> PriceBook:
        return PriceBook([*self.static, *overrides])


def builtin_prices() -> list[PriceRow]:
    text = resources.files("keyservice").joinpath("data/prices.json").read_text(encoding="utf-8")
    return parse_prices(json.loads(text), source="builtin", where="keyservice/data/prices.json")


def load_price_file(path: str, *, source: str) -> list[PriceRow]:
    """Ops' price file (the same format as the shipped one); InvalidArgument naming the file and the entry."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise InvalidArgument("BYOK_PRICES_FILE", f"cannot read {path} ({exc.strerror})") from None
    except ValueError:
        raise InvalidArgument("BYOK_PRICES_FILE", f"{path} is not JSON") from None
    return parse_prices(document, source=source, where=path)


def parse_prices(document: Any, *, source: str, where: str) -> list[PriceRow]:
    """The entries of a price document: {"prices": [{"provider", "model", "effective", "input", "output",
    optional "cached_input", "cache_write", "reasoning"}, …]} in dollars per million tokens."""
    entries = document.get("prices") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidArgument(where, 'expected an object with a "prices" list')
    rows = []
    for position, entry in enumerate(entries):
        field = f"{where}: prices[{position}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(field, "must be an object")
        rows.append(PriceRow(
            provider=_text(entry, "provider", field), model=_text(entry, "model", field),
            effective_from=_date(entry.get("effective"), f"{field}.effective"),
            input_micros=dollars_to_micros(entry.get("input"), f"{field}.input"),
            output_micros=dollars_to_micros(entry.get("output"), f"{field}.output"),
            cached_input_micros=_optional(entry, "cached_input", field),
            cache_write_micros=_optional(entry, "cache_write", field),
            reasoning_micros=_optional(entry, "reasoning", field), source=source))
    return rows


def dollars_to_micros(value: Any, field: str) -> int:
    """Dollars per million tokens (a number or a decimal string) as whole micro-dollars per million tokens."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidArgument(field, "must be a price in dollars per million tokens, e.g. 0.15")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidArgument(field, "must be a price in dollars per million tokens, e.g. 0.15") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_PRICE_DOLLARS:
        raise InvalidArgument(field, f"must be between 0 and {MAX_PRICE_DOLLARS} dollars per million tokens")
    micros = amount * _MICROS
    if micros != micros.to_integral_value():
        raise InvalidArgument(field, "must not be finer than a millionth of a dollar per million tokens")
    return int(micros)


def micros_to_dollars(micros: int) -> str:
    """Micro-dollars as a plain decimal dollar amount ("0.075", "12.5", "0")."""
    text = format(Decimal(micros) / _MICROS, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _text(entry: Mapping[str, Any], name: str, field: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidArgument(f"{field}.{name}", "must be a non-empty string")
    return value


def _optional(entry: Mapping[str, Any], name: str, field: str) -> int | None:
    return None if entry.get(name) is None else dollars_to_micros(entry[name], f"{field}.{name}")


def _date(value: Any, field: str) -> dt.datetime:
    """A date (midnight UTC) or an ISO 8601 time with its offset."""
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be a date (2025-01-31) or an ISO 8601 time")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(field, "must be a date (2025-01-31) or an ISO 8601 time") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
