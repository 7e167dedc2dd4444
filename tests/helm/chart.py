"""What the chart tests share: rendering deploy/helm/byok with the real Helm engine (Helm's Go SDK through
`helm_python`), finding documents in the result, and the schemas of the two CRDs the chart renders (data files
in crd_schemas/: cert-manager `Certificate` and Prometheus Operator `ServiceMonitor`, which kubernetes-validate
has no schema for; the fields the chart sets, closed like the Kubernetes schemas)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "byok"
VALUES_DIR = Path(__file__).resolve().parent / "values"
DOCKERFILE = REPO / "Dockerfile"

RELEASE = "byok"
NAMESPACE = "byok"
# The chart's minimum (native gRPC probes are GA from 1.27) is covered by a recent-but-old version, plus the
# newest schema the pinned kubernetes-validate ships.
KUBE_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
LINT_KUBE_VERSION = "v1.31.0"

# Value sets: None is the chart's defaults; the others are files in tests/helm/values/.
VALUE_SETS = ["defaults", "ha-postgres", "existing-secrets", "approle-minimal"]

# The chart's default port of proxyservice's HTTPS front (mTLS, beside gRPC on 8443).
HTTPS_PORT = 8444

POD_KINDS = {"Deployment", "Job", "Pod"}
SERVICE_NAMES = {"keyservice": "byok.keys.v1.KeyService", "proxyservice": "byok.proxy.v1.ChatService"}
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
# Shapes of real secrets; none may appear in values or rendered manifests.
SECRET_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_-]{8,}|hvs\.[A-Za-z0-9_-]{8,}|s\.[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_-]{20,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|postgres(?:ql)?(?:\+\w+)?://[^/\s:@]+:[^@\s]+@)"
)
# Environment variable names whose value is a credential: only ever injected by reference.
SECRET_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|API_KEY|ROLE_ID)$")

def _values(value_set: str) -> dict[str, Any] | None:
    if value_set == "defaults":
        return None
    loaded: dict[str, Any] = yaml.safe_load((VALUES_DIR / f"{value_set}.yaml").read_text())
    return loaded


def https_port(value_set: str) -> int | None:
    """The port of proxyservice's HTTPS front in a value set; None when the set disables the front."""
    http = (_values(value_set) or {}).get("proxyservice", {}).get("http", {})
    return int(http.get("port", HTTPS_PORT)) if http.get("enabled", True) else None


def _render(values: dict[str, Any] | None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render_docs(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders for these values (NOTES.txt left out)."""
    docs: list[dict[str, Any]] = []
    for template, text in sorted(_render(values).items()):
        if not template.endswith("NOTES.txt"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@functools.cache
def _manifests_json(value_set: str) -> str:
    """Rendered manifests of a value set, as JSON so the cache hands out fresh copies."""
    return json.dumps(render_docs(_values(value_set)))


def manifests(value_set: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = json.loads(_manifests_json(value_set))
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return spec


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def config_data(docs: list[dict[str, Any]], component: str) -> dict[str, str]:
    data: dict[str, str] = one(docs, "ConfigMap", f"{RELEASE}-{component}")["data"]
    return data


def render_error(values: dict[str, Any]) -> str:
    """Render values that must be refused; returns Helm's message."""
    with pytest.raises(helm.HelmError) as refused:
        _render(values)
    return str(refused.value)


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in sorted((Path(__file__).resolve().parent / "crd_schemas").glob("*.json")):
        data = json.loads(path.read_text())
        found[(data["apiVersion"], data["kind"])] = data["schema"]
    return found


CRD_SCHEMAS = _crd_schemas()
CRD_SCHEMAS_KINDS = {kind for _, kind in CRD_SCHEMAS}


def network_policy(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "NetworkPolicy", f"{RELEASE}-{component}")["spec"]
    return spec


def policy_ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}
