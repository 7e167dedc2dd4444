"""The chart's security: Pod Security "restricted", service-account tokens only where Vault auth needs them, no
secret in values or manifests, and network policies that deny by default."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest

from tests.helm.chart import (
    CHART,
    POD_KINDS,
    PRIVATE_RANGES,
    RELEASE,
    SECRET_ENV,
    SECRET_SHAPES,
    VALUE_SETS,
    _values,
    containers,
    find,
    https_port,
    manifests,
    network_policy,
    one,
    pod_spec,
    policy_ports,
    render_docs,
    render_error,
)

# --- Pod security ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_pod_meets_pod_security_restricted(value_set: str) -> None:
    docs = manifests(value_set)
    pods = [d for d in docs if d["kind"] in POD_KINDS]
    assert pods
    for doc in pods:
        spec = pod_spec(doc)
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in containers(spec):
            csc = container["securityContext"]
            cwhere = f"{where} container {container['name']}"
            assert csc["runAsNonRoot"] is True and csc["runAsUser"] == 10001, cwhere
            assert csc["allowPrivilegeEscalation"] is False, cwhere
            assert csc["readOnlyRootFilesystem"] is True, cwhere
            assert csc["capabilities"] == {"drop": ["ALL"]}, cwhere
            assert csc["seccompProfile"] == {"type": "RuntimeDefault"}, cwhere
            assert csc.get("privileged") is not True, cwhere
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in tmp_volumes, f"{cwhere}: /tmp must be an emptyDir"
            assert container["resources"].get("requests"), f"{cwhere}: no resource requests"
            assert container["resources"].get("limits", {}).get("memory"), f"{cwhere}: no memory limit"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_service_account_token_only_for_vault_kubernetes_auth(value_set: str) -> None:
    docs = manifests(value_set)
    method = (_values(value_set) or {}).get("vault", {}).get("auth", {}).get("method", "kubernetes")
    k8s_auth = method == "kubernetes"
    for sa in find(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False
    for doc in docs:
        if doc["kind"] not in POD_KINDS:
            continue
        expected = k8s_auth and doc["metadata"]["name"] == f"{RELEASE}-keyservice"
        assert pod_spec(doc)["automountServiceAccountToken"] is expected, doc["metadata"]["name"]


# --- secrets never in values or manifests ----------------------------------------------------------------


def _leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, f"{path}[{index}]")
    else:
        yield path, node


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_no_secret_material_in_values_or_manifests(value_set: str) -> None:
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(_values(value_set))
    for path, value in _leaves(merged):
        assert not SECRET_SHAPES.search(str(value)), f"secret-shaped value at {path}"
    docs = manifests(value_set)
    assert find(docs, "Secret") == [], "the chart must never render a Secret"
    assert not SECRET_SHAPES.search(json.dumps(docs))
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                assert not SECRET_ENV.search(key), f"credential {key} in a ConfigMap"
        if doc["kind"] not in POD_KINDS:
            continue
        for container in containers(pod_spec(doc)):
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]) or (
                    env["name"] == "BYOK_DATABASE_URL" and not env.get("value", "").startswith("sqlite:")
                ):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], env["name"]


@pytest.mark.parametrize(
    "inline",
    [
        {"vault": {"auth": {"token": {"value": "hvs.not-a-real-token"}}}},
        {"vault": {"token": "hvs.not-a-real-token"}},
        {"database": {"postgresql": {"url": "postgresql://u:not-a-password@db/byok"}}},
        {"keyservice": {"platformKeys": {"OPENAI_API_KEY": "sk-test-not-a-key"}}},
        {"tls": {"existingSecret": {"key": "-----BEGIN PRIVATE KEY-----"}}},
    ],
)
def test_values_have_no_place_for_a_secret(inline: dict[str, Any]) -> None:
    assert "additional properties" in render_error(inline)


# --- network policies ------------------------------------------------------------------------------------






def _component_peer(component: str) -> dict[str, Any]:
    return {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "byok",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": component,
            }
        }
    }


@pytest.mark.parametrize("value_set", ["defaults", "ha-postgres", "existing-secrets"])
def test_network_policies_deny_by_default_and_allow_only_the_design(value_set: str) -> None:
    docs = manifests(value_set)
    deny = one(docs, "NetworkPolicy", f"{RELEASE}-default-deny")["spec"]
    assert deny["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "byok", "app.kubernetes.io/instance": RELEASE}
    }
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    for doc in find(docs, "NetworkPolicy"):
        assert doc["spec"]["policyTypes"] == ["Ingress", "Egress"]
        dns = doc["spec"]["egress"][-1] if "egress" in doc["spec"] else None
        if dns is not None:
            assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
            assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}

    keyservice = network_policy(docs, "keyservice")
    grpc_in = [r for r in keyservice["ingress"] if 8443 in policy_ports(r)]
    assert len(grpc_in) == 1 and policy_ports(grpc_in[0]) == {8443}
    assert grpc_in[0]["from"][0] == _component_peer("proxyservice")
    assert [r["ports"] for r in keyservice["egress"][:1]][0][0]["port"] == 8200

    proxy = network_policy(docs, "proxyservice")
    front = https_port(value_set)
    https = set() if front is None else {front}
    assert {8443, 8081, 9090} | https == set().union(*(policy_ports(r) for r in proxy["ingress"]))
    # The HTTPS front is open to exactly the gRPC port's callers, in the same rule, and to no one else.
    (callers,) = [r for r in proxy["ingress"] if 8443 in policy_ports(r)]
    assert policy_ports(callers) == {8443} | https
    assert all(policy_ports(r).isdisjoint(https) for r in proxy["ingress"] if r is not callers)
    to_keyservice, to_providers = proxy["egress"][0], proxy["egress"][1]
    assert to_keyservice == {"to": [_component_peer("keyservice")], "ports": [{"protocol": "TCP", "port": 8443}]}
    assert policy_ports(to_providers) == {443}
    (block,) = [peer["ipBlock"] for peer in to_providers["to"]]
    assert block["cidr"] == "0.0.0.0/0" and PRIVATE_RANGES <= set(block["except"])


def test_network_policies_follow_configured_peers() -> None:
    docs = manifests("ha-postgres")
    proxy = network_policy(docs, "proxyservice")
    callers = next(r for r in proxy["ingress"] if policy_ports(r) == {8443, 9443})
    assert callers["from"] == _values("ha-postgres")["networkPolicy"]["callers"]  # type: ignore[index]
    keyservice = network_policy(docs, "keyservice")
    admins = next(r for r in keyservice["ingress"] if policy_ports(r) == {8443})
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform"}}} in admins["from"]
    vault, database = keyservice["egress"][0], keyservice["egress"][1]
    assert vault["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}] and policy_ports(vault) == {8200}
    assert database["to"] == [{"ipBlock": {"cidr": "10.30.0.10/32"}}] and policy_ports(database) == {5432}
    assert keyservice["egress"][2] == proxy["egress"][1], "keyservice verifies keys against the providers"
    migrate = network_policy(docs, "migrate")
    assert migrate["egress"][0] == database and "ingress" not in migrate
    for rule in keyservice["egress"] + proxy["egress"]:
        for peer in rule.get("to", []):
            if "ipBlock" in peer:
                ipaddress.ip_network(peer["ipBlock"]["cidr"])  # a well-formed CIDR


def test_keyservice_provider_egress_can_be_closed() -> None:
    docs = render_docs({"networkPolicy": {"providers": {"fromKeyservice": False}}})
    egress_ports = [policy_ports(rule) for rule in network_policy(docs, "keyservice")["egress"]]
    assert {443} not in egress_ports and {8200} in egress_ports
