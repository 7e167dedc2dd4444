"""The chart's tracing values (proxyservice.tracing, networkPolicy.otlp), rendered with the real Helm engine: off by
default (no setting, no volume, no egress rule); on, the proxy's settings as the proxy itself reads them, the headers
Secret and the collector's CA mounted as files (the token never in the environment or a ConfigMap), the egress to
the collector in the NetworkPolicy, every manifest valid Kubernetes; and the schema's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from proxyservice.settings import ProxySettings
from tests.helm.chart import (
    KUBE_VERSIONS,
    RELEASE,
    config_data,
    env_of,
    network_policy,
    one,
    pod_spec,
    policy_ports,
    render_docs,
    render_error,
)

COLLECTOR = "http://otel-collector.observability.svc:4317"
OBSERVABILITY = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
TRACING = {
    "proxyservice": {"tracing": {"otlpEndpoint": COLLECTOR, "sampleRatio": 0.25,
                                 "headers": {"secretName": "otlp-auth", "key": "token-headers"},
                                 "caCert": {"secretName": "", "configMapName": "otel-ca", "key": "ca.pem"}}},
    "networkPolicy": {"otlp": {"peers": [OBSERVABILITY], "ports": [4317, 14317]}},
}


def _proxy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec = pod_spec(one(docs, "Deployment", f"{RELEASE}-proxyservice"))
    (container,) = [c for c in spec["containers"] if c["name"] == "proxyservice"]
    return {"spec": spec, "container": container, "config": config_data(docs, "proxyservice")}


def test_tracing_is_off_by_default() -> None:
    docs = render_docs(None)
    proxy = _proxy(docs)
    assert not [k for k in proxy["config"] if k.startswith(("BYOK_OTLP", "BYOK_TRACE", "OTEL_"))]
    assert {v["name"] for v in proxy["spec"]["volumes"]} == {"tls", "tmp"}
    egress_ports = [policy_ports(rule) for rule in network_policy(docs, "proxyservice")["egress"]]
    assert {4317} not in egress_ports


def test_tracing_on_gives_the_proxy_its_settings_as_it_reads_them(tmp_path: Path) -> None:
    proxy = _proxy(render_docs(TRACING))
    config = proxy["config"]
    assert config["BYOK_OTLP_ENDPOINT"] == COLLECTOR and config["BYOK_TRACE_SAMPLE_RATIO"] == "0.25"
    assert config["BYOK_OTLP_HEADERS_FILE"] == "/etc/byok/otlp-headers/headers"
    assert config["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"] == "/etc/byok/otlp-ca/ca.pem"
    # The proxy's own loader, with the mounted files where the pod has them (here: under tmp_path).
    (tmp_path / "headers").write_text("authorization=Bearer%20not-a-real-token")
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("x")
    env = {**config, "BYOK_OTLP_HEADERS_FILE": str(tmp_path / "headers"), "BYOK_TLS_CERT": str(tmp_path / "tls.crt"),
           "BYOK_TLS_KEY": str(tmp_path / "tls.key"), "BYOK_TLS_CA": str(tmp_path / "ca.crt")}
    settings = ProxySettings.from_env(env)
    assert (settings.otlp_endpoint, settings.trace_sample_ratio) == (COLLECTOR, 0.25)
    assert settings.otlp_headers == (("authorization", "Bearer not-a-real-token"),)


def test_the_headers_secret_and_the_ca_are_mounted_files_never_environment() -> None:
    proxy = _proxy(render_docs(TRACING))
    volumes = {v["name"]: v for v in proxy["spec"]["volumes"]}
    assert volumes["otlp-headers"]["secret"] == {"secretName": "otlp-auth", "defaultMode": 0o440,
                                                 "items": [{"key": "token-headers", "path": "headers"}]}
    assert volumes["otlp-ca"]["configMap"] == {"name": "otel-ca", "defaultMode": 0o444,
                                               "items": [{"key": "ca.pem", "path": "ca.pem"}]}
    mounts = {m["name"]: m for m in proxy["container"]["volumeMounts"]}
    assert mounts["otlp-headers"] == {"name": "otlp-headers", "mountPath": "/etc/byok/otlp-headers", "readOnly": True}
    assert mounts["otlp-ca"] == {"name": "otlp-ca", "mountPath": "/etc/byok/otlp-ca", "readOnly": True}
    assert not [e for e in env_of(proxy["container"]) if "OTLP" in e]
    assert "BYOK_OTLP_HEADERS" not in proxy["config"]


def test_a_ca_from_a_secret_and_no_headers() -> None:
    values = {"proxyservice": {"tracing": {"otlpEndpoint": "https://otel.example.com:4317",
                                           "caCert": {"secretName": "otel-ca"}}}}
    proxy = _proxy(render_docs(values))
    volumes = {v["name"]: v for v in proxy["spec"]["volumes"]}
    assert volumes["otlp-ca"]["secret"]["secretName"] == "otel-ca" and "otlp-headers" not in volumes
    assert "BYOK_OTLP_HEADERS_FILE" not in proxy["config"]
    assert proxy["config"]["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"] == "/etc/byok/otlp-ca/ca.crt"


def test_the_network_policy_lets_the_proxy_reach_the_collector_and_nothing_more() -> None:
    egress = network_policy(render_docs(TRACING), "proxyservice")["egress"]
    (otlp,) = [rule for rule in egress if 4317 in policy_ports(rule)]
    assert otlp == {"ports": [{"protocol": "TCP", "port": 4317}, {"protocol": "TCP", "port": 14317}],
                    "to": [OBSERVABILITY]}
    assert egress[-1]["ports"][0]["port"] == 53, "DNS stays the last rule"
    anywhere = network_policy(render_docs({"proxyservice": {"tracing": {"otlpEndpoint": COLLECTOR}}}),
                              "proxyservice")["egress"]
    (otlp,) = [rule for rule in anywhere if 4317 in policy_ports(rule)]
    assert "to" not in otlp  # neither cidrs nor peers: the port to any address, as for Vault and the database


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_with_tracing_is_valid_kubernetes(kube_version: str) -> None:
    for doc in render_docs(TRACING):
        if doc["kind"] in ("Certificate", "ServiceMonitor"):
            continue  # CRDs: test_chart_validity checks their shapes, untouched by these values
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize(("tracing", "expected"), [
    ({"otlpEndpoint": "otel:4317"}, "otlpEndpoint"),
    ({"otlpEndpoint": "https://user:s3cr3t@otel:4317"}, "otlpEndpoint"),
    ({"otlpEndpoint": "http://otel:4318/v1/traces"}, "otlpEndpoint"),
    ({"sampleRatio": 1.5}, "sampleRatio"),
    ({"headers": {"value": "authorization=Bearer%20s3cr3t"}}, "additional properties"),
    ({"token": "s3cr3t"}, "additional properties"),
])
def test_the_schema_refuses_bad_tracing_values_and_has_no_place_for_a_token(tracing: dict[str, Any],
                                                                            expected: str) -> None:
    assert expected in render_error({"proxyservice": {"tracing": tracing}})
