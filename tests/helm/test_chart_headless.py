"""The chart's headless Service for keyservice and the proxy's default keyservice target using it: rendered with the
real Helm engine (the helpers of tests/helm/test_chart.py), for every value set the chart is tested with."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxyservice.settings import ProxySettings
from tests.helm.chart import NAMESPACE, RELEASE, VALUE_SETS, config_data, manifests, one


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_keyservice_has_a_headless_service_over_its_ready_pods(value_set: str) -> None:
    docs = manifests(value_set)
    headless = one(docs, "Service", f"{RELEASE}-keyservice-headless")
    spec = headless["spec"]
    assert spec["clusterIP"] == "None" and spec.get("publishNotReadyAddresses") is False
    assert [(p["name"], p["port"], p["targetPort"]) for p in spec["ports"]] == [("grpc", 8443, "grpc")]
    deployment = one(docs, "Deployment", f"{RELEASE}-keyservice")
    assert spec["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The ClusterIP Service stays (byokctl, probes, metrics scraping use it).
    assert one(docs, "Service", f"{RELEASE}-keyservice")["spec"].get("clusterIP") != "None"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_proxy_dials_every_keyservice_replica_by_dns(value_set: str) -> None:
    proxy = config_data(manifests(value_set), "proxyservice")
    target = f"dns:///{RELEASE}-keyservice-headless.{NAMESPACE}.svc:8443"
    assert proxy["BYOK_KEYSERVICE_ADDR"] == target
    # keyservice's certificate names its ClusterIP Service: the proxy checks that name, whatever it dials.
    assert proxy["BYOK_KEYSERVICE_SERVER_NAME"] == f"{RELEASE}-keyservice.{NAMESPACE}.svc"


def test_the_rendered_target_is_accepted_by_the_proxys_settings(tmp_path: Path) -> None:
    directory = tmp_path
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (directory / name).write_text("pem")
    data = config_data(manifests("defaults"), "proxyservice")
    env = {"BYOK_TLS_CERT": str(directory / "tls.crt"), "BYOK_TLS_KEY": str(directory / "tls.key"),
           "BYOK_TLS_CA": str(directory / "ca.crt"), "BYOK_KEYSERVICE_ADDR": data["BYOK_KEYSERVICE_ADDR"]}
    assert ProxySettings.from_env(env).keyservice_addr == data["BYOK_KEYSERVICE_ADDR"]
