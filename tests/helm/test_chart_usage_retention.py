"""The chart's usage retention values (keyservice.usageRetention), rendered with the real Helm engine: the defaults
reach keyservice's environment as the settings keyservice itself parses to its defaults, a value set is passed on,
and the schema refuses a daily horizon shorter than a monthly budget's month."""

from __future__ import annotations

import pytest

from keyservice.settings import _usage_retention
from keyservice.usage.retention import UsageRetention
from tests.helm.chart import config_data, render_docs, render_error


def test_the_defaults_are_keyservices_own() -> None:
    config = config_data(render_docs(None), "keyservice")
    assert _usage_retention(config) == UsageRetention()


def test_set_values_reach_keyservice() -> None:
    values = {"keyservice": {"usageRetention": {"hourlyDays": 30, "dailyDays": 400, "batchDays": 60}}}
    config = config_data(render_docs(values), "keyservice")
    assert _usage_retention(config) == UsageRetention(hourly_days=30, daily_days=400, batch_days=60)


@pytest.mark.parametrize("retention", [{"dailyDays": 10}, {"batchDays": 0}, {"hourlyDays": -1}, {"weeks": 2}])
def test_the_schema_refuses_bad_horizons(retention: dict[str, int]) -> None:
    message = render_error({"keyservice": {"usageRetention": retention}})
    assert "usageRetention" in message
