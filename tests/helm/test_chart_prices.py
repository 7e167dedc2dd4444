"""The chart's price values (keyservice.prices), rendered with the real Helm engine: none by default (the shipped
table only: no file, no volume, no ConfigMap); `entries` become a ConfigMap whose file keyservice's own loader reads
to the same prices, mounted where BYOK_PRICES_FILE points and checksummed so a change rolls the pods; an existing
ConfigMap is mounted instead; every manifest is valid Kubernetes; and the schema's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from keyservice.usage.pricing import load_price_file
from tests.helm.chart import KUBE_VERSIONS, RELEASE, config_data, find, one, pod_spec, render_docs, render_error

ENTRIES: list[dict[str, Any]] = [
    {"provider": "openai", "model": "gpt-4o-mini", "effective": "2025-08-01", "input": "0.12", "output": "0.48",
     "cached_input": "0.06"},
    {"provider": "anthropic", "model": "claude-sonnet-4", "effective": "2025-08-01T00:00:00Z", "input": 3,
     "output": 15, "cache_write": "3.75"},
]
PRICES = {"keyservice": {"prices": {"entries": ENTRIES}}}
MOUNTED = "/etc/byok/prices/prices.json"


def _keyservice(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment", f"{RELEASE}-keyservice")
    spec = pod_spec(deployment)
    (container,) = [c for c in spec["containers"] if c["name"] == "keyservice"]
    return {"deployment": deployment, "spec": spec, "container": container, "config": config_data(docs, "keyservice")}


def test_no_price_file_by_default() -> None:
    docs = render_docs(None)
    keyservice = _keyservice(docs)
    assert "BYOK_PRICES_FILE" not in keyservice["config"]
    assert "prices" not in {v["name"] for v in keyservice["spec"]["volumes"]}
    assert not find(docs, "ConfigMap", f"{RELEASE}-keyservice-prices")
    assert "checksum/prices" not in keyservice["deployment"]["spec"]["template"]["metadata"]["annotations"]


def test_entries_become_the_file_keyservice_reads(tmp_path: Path) -> None:
    docs = render_docs(PRICES)
    keyservice = _keyservice(docs)
    assert keyservice["config"]["BYOK_PRICES_FILE"] == MOUNTED
    text = one(docs, "ConfigMap", f"{RELEASE}-keyservice-prices")["data"]["prices.json"]
    (tmp_path / "prices.json").write_text(text)
    rows = load_price_file(str(tmp_path / "prices.json"), source="file")  # keyservice's own loader
    assert [(r.provider, r.model, r.input_micros, r.output_micros, r.cached_input_micros, r.cache_write_micros)
            for r in rows] == [("openai", "gpt-4o-mini", 120_000, 480_000, 60_000, None),
                               ("anthropic", "claude-sonnet-4", 3_000_000, 15_000_000, None, 3_750_000)]
    volumes = {v["name"]: v for v in keyservice["spec"]["volumes"]}
    assert volumes["prices"]["configMap"] == {"name": f"{RELEASE}-keyservice-prices", "defaultMode": 0o444,
                                              "items": [{"key": "prices.json", "path": "prices.json"}]}
    mounts = {m["name"]: m for m in keyservice["container"]["volumeMounts"]}
    assert mounts["prices"] == {"name": "prices", "mountPath": "/etc/byok/prices", "readOnly": True}
    annotations = keyservice["deployment"]["spec"]["template"]["metadata"]["annotations"]
    changed = {"keyservice": {"prices": {"entries": [{**ENTRIES[0], "input": "0.13"}]}}}
    again = _keyservice(render_docs(changed))["deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/prices"] != again["checksum/prices"]  # a new price rolls the pods


def test_an_existing_configmap_is_mounted_instead() -> None:
    values = {"keyservice": {"prices": {"existingConfigMap": {"name": "finance-prices", "key": "table.json"}}}}
    docs = render_docs(values)
    keyservice = _keyservice(docs)
    assert keyservice["config"]["BYOK_PRICES_FILE"] == MOUNTED
    volumes = {v["name"]: v for v in keyservice["spec"]["volumes"]}
    assert volumes["prices"]["configMap"]["name"] == "finance-prices"
    assert volumes["prices"]["configMap"]["items"] == [{"key": "table.json", "path": "prices.json"}]
    assert not find(docs, "ConfigMap", f"{RELEASE}-keyservice-prices")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_with_prices_is_valid_kubernetes(kube_version: str) -> None:
    for doc in render_docs(PRICES):
        if doc["kind"] in ("Certificate", "ServiceMonitor"):
            continue  # CRDs: test_chart_validity checks their shapes, untouched by these values
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize(("prices", "expected"), [
    ({"entries": [{**ENTRIES[0], "input": "-1"}]}, "input"),
    ({"entries": [{**ENTRIES[0], "input": "0.0000001"}]}, "input"),
    ({"entries": [{"provider": "openai", "model": "x", "input": "1", "output": "1"}]}, "effective"),
    ({"entries": [{**ENTRIES[0], "currency": "EUR"}]}, "additional properties"),
    ({"entries": [{**ENTRIES[0], "provider": "Open AI"}]}, "provider"),
    ({"file": "/etc/prices.json"}, "additional properties"),
    ({"entries": ENTRIES, "existingConfigMap": {"name": "finance-prices", "key": "prices.json"}}, "not both"),
])
def test_the_schema_and_the_chart_refuse_bad_prices(prices: dict[str, Any], expected: str) -> None:
    assert expected in render_error({"keyservice": {"prices": prices}})


def test_the_values_document_every_price_field() -> None:
    values = (Path(__file__).resolve().parents[2] / "deploy/helm/byok/values.yaml").read_text()
    block = values[values.index("  prices:\n"):values.index("  # -- Extra environment variables")]
    for field in ("provider", "model", "effective", "input", "output", "cached_input", "cache_write", "reasoning"):
        assert f"`{field}`" in block, field
    assert json.dumps(ENTRIES)  # the test's entries are JSON as the ConfigMap holds them
