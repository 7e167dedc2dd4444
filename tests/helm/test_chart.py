"""Tests of the Helm chart (deploy/helm/byok) and the container image recipe (Dockerfile).

Kubernetes and Docker cannot run here, so the chart is rendered offline with the real Helm engine (Helm's Go
SDK through `helm_python`, the `helm-python-sdk` package), linted by the same SDK, and every rendered manifest
is validated in strict mode against the Kubernetes OpenAPI schemas `kubernetes-validate` ships. cert-manager
`Certificate` and Prometheus Operator `ServiceMonitor` are CRDs with no schema in that package: their shape is
checked here against a small schema of the fields the chart uses. The Dockerfile is parsed as text.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
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


# --- rendering -------------------------------------------------------------------------------------------


def _values(value_set: str) -> dict[str, Any] | None:
    if value_set == "defaults":
        return None
    loaded: dict[str, Any] = yaml.safe_load((VALUES_DIR / f"{value_set}.yaml").read_text())
    return loaded


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


# --- lint and Kubernetes schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean(value_set: str) -> None:
    report = helm.lint(CHART, _values(value_set), strict=True, namespace=NAMESPACE, kube_version=LINT_KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


# Shapes of the two CRDs the chart renders (fields the chart sets), closed like the Kubernetes schemas.
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name", "namespace", "labels"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _LABELS},
}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["secretName", "issuerRef", "uris", "dnsNames"],
                "additionalProperties": False,
                "properties": {
                    "secretName": {"type": "string", "minLength": 1},
                    "secretTemplate": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"labels": _LABELS},
                    },
                    "duration": {"type": "string", "pattern": r"^(\d+(h|m|s))+$"},
                    "renewBefore": {"type": "string", "pattern": r"^(\d+(h|m|s))+$"},
                    "privateKey": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                            "size": {"type": "integer"},
                            "encoding": {"enum": ["PKCS1", "PKCS8"]},
                            "rotationPolicy": {"enum": ["Never", "Always"]},
                        },
                    },
                    "usages": {
                        "type": "array",
                        "items": {"enum": ["digital signature", "key encipherment", "server auth", "client auth"]},
                    },
                    "uris": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    "issuerRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                            "group": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": _META,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchLabels": _LABELS},
                    },
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                    },
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": {"type": "string"},
                                "scrapeTimeout": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}

CRD_SCHEMAS_KINDS = {kind for _, kind in CRD_SCHEMAS}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_manifest_is_valid_kubernetes(value_set: str, kube_version: str) -> None:
    for doc in manifests(value_set):
        crd_schema = CRD_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if crd_schema is not None:
            jsonschema.validate(doc, crd_schema)
            continue
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_strict_validation_catches_an_unknown_field() -> None:
    """Guards the test above: a misspelt field in a rendered Deployment must not validate."""
    deployment = one(manifests("defaults"), "Deployment", f"{RELEASE}-keyservice")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def test_every_kind_is_rendered_by_some_value_set() -> None:
    kinds = {d["kind"] for value_set in VALUE_SETS for d in manifests(value_set)}
    assert kinds >= {
        "Deployment", "Service", "ServiceAccount", "ConfigMap", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy", "Certificate", "ServiceMonitor", "Job", "Pod",
        "PersistentVolumeClaim",
    }  # fmt: skip


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


# --- services, probes, runtime contract ------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_expose_grpc_health_and_metrics_and_probe_natively(value_set: str) -> None:
    docs = manifests(value_set)
    for component in ("keyservice", "proxyservice"):
        name = f"{RELEASE}-{component}"
        service = one(docs, "Service", name)
        assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {
            ("grpc", 8443), ("health", 8081), ("metrics", 9090),
        }  # fmt: skip
        spec = pod_spec(one(docs, "Deployment", name))
        (main,) = [c for c in spec["containers"] if c["name"] == component]
        assert main["command"] == ["python", "-m", component]
        for probe in ("livenessProbe", "startupProbe"):
            assert main[probe]["grpc"] == {"port": 8081}, f"{component} {probe}"
        # Readiness asks for the service, which follows keyservice's dependencies and both services' drain.
        assert main["readinessProbe"]["grpc"] == {"port": 8081, "service": SERVICE_NAMES[component]}
        assert {p["containerPort"] for p in main["ports"]} == {8443, 8081, 9090}
        assert service["spec"]["selector"] == one(docs, "Deployment", name)["spec"]["selector"]["matchLabels"]


def test_runtime_contract_environment() -> None:
    docs = manifests("defaults")
    for component in ("keyservice", "proxyservice"):
        data = config_data(docs, component)
        assert data["BYOK_GRPC_ADDR"] == "0.0.0.0:8443"
        assert data["BYOK_HEALTH_ADDR"] == "0.0.0.0:8081"
        assert data["BYOK_METRICS_ADDR"] == "0.0.0.0:9090"
        assert data["BYOK_TLS_CERT"] == "/etc/byok/tls/tls.crt"
        assert data["BYOK_TLS_KEY"] == "/etc/byok/tls/tls.key"
        assert data["BYOK_TLS_CA"] == "/etc/byok/tls/ca.crt"
        assert data["BYOK_LOG_LEVEL"] == "info"
    ks = config_data(docs, "keyservice")
    assert ks["VAULT_ADDR"] == "https://vault.vault.svc:8200"
    assert ks["BYOK_VAULT_AUTH"] == "kubernetes"
    assert ks["BYOK_VAULT_K8S_ROLE"] == "byok-keyservice" and ks["BYOK_VAULT_K8S_MOUNT"] == "kubernetes"
    assert ks["BYOK_VAULT_KV_MOUNT"] == "secret" and ks["BYOK_VAULT_KV_PREFIX"] == "byok"
    assert ks["BYOK_VAULT_TRANSIT_MOUNT"] == "transit" and ks["BYOK_VAULT_TRANSIT_KEY"] == ""
    assert ks["BYOK_LEASE_TTL_SECONDS"] == "60"
    assert ks["BYOK_ROLES"] == f"spiffe://cluster.local/ns/{NAMESPACE}/sa/{RELEASE}-proxyservice=proxy"
    keyservice = pod_spec(one(docs, "Deployment", f"{RELEASE}-keyservice"))["containers"][0]
    assert env_of(keyservice)["BYOK_DATABASE_URL"]["value"] == "sqlite:////var/lib/byok/keyservice.db"
    proxy = config_data(docs, "proxyservice")
    assert proxy["BYOK_KEYSERVICE_ADDR"] == f"dns:///{RELEASE}-keyservice-headless.{NAMESPACE}.svc:8443"
    assert proxy["BYOK_KEYSERVICE_SERVER_NAME"] == f"{RELEASE}-keyservice.{NAMESPACE}.svc"
    assert proxy["BYOK_UPSTREAM_TIMEOUT_SECONDS"] == "300"
    assert proxy["BYOK_UPSTREAM_CONNECT_TIMEOUT_SECONDS"] == "5"
    assert proxy["BYOK_WORKERS"] == "1"
    assert (proxy["BYOK_MAX_CONNECTION_AGE_SECONDS"], proxy["BYOK_MAX_CONNECTION_AGE_GRACE_SECONDS"]) == ("300", "600")
    # Drain, then grace for RPCs in flight, inside the pod's terminationGracePeriodSeconds with 5 s to spare.
    assert (ks["BYOK_SHUTDOWN_DRAIN_SECONDS"], ks["BYOK_SHUTDOWN_GRACE_SECONDS"]) == ("5", "20")
    assert (proxy["BYOK_SHUTDOWN_DRAIN_SECONDS"], proxy["BYOK_SHUTDOWN_GRACE_SECONDS"]) == ("5", "50")


def test_termination_grace_period_must_cover_the_drain() -> None:
    message = render_error({"proxyservice": {"terminationGracePeriodSeconds": 10, "shutdownDrainSeconds": 5}})
    assert "proxyservice.terminationGracePeriodSeconds must be at least proxyservice.shutdownDrainSeconds + 6" \
        in message


def test_production_values_reach_keyservice() -> None:
    docs = manifests("ha-postgres")
    ks = config_data(docs, "keyservice")
    assert ks["BYOK_VAULT_TRANSIT_KEY"] == "byok"
    assert ks["VAULT_CACERT"] == "/etc/byok/vault-ca/ca.crt"
    assert ks["BYOK_VAULT_K8S_MOUNT"] == "k8s-prod"
    assert ks["BYOK_ROLES"].split(",") == [
        f"spiffe://prod.example.com/ns/{NAMESPACE}/sa/{RELEASE}-proxyservice=proxy",
        "spiffe://prod.example.com/ns/platform/sa/byok-admin=admin",
    ]
    deployment = one(docs, "Deployment", f"{RELEASE}-keyservice")
    spec = pod_spec(deployment)
    keyservice = spec["containers"][0]
    assert keyservice["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    assert env_of(keyservice)["BYOK_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "byok-database", "key": "url"}
    }
    assert {"secretRef": {"name": "byok-platform-keys"}} in keyservice["envFrom"]
    assert deployment["spec"]["replicas"] == 3 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "initContainers" not in spec
    ca_volume = next(v for v in spec["volumes"] if v["name"] == "vault-ca")
    assert ca_volume["secret"]["secretName"] == "vault-ca"


def test_existing_secrets_are_only_referenced() -> None:
    docs = manifests("existing-secrets")
    assert find(docs, "Certificate") == []
    for component in ("keyservice", "proxyservice"):
        spec = pod_spec(one(docs, "Deployment", f"{RELEASE}-{component}"))
        tls = next(v for v in spec["volumes"] if v["name"] == "tls")
        assert tls["secret"]["secretName"] == f"byok-{component}-tls-external"
    spec = pod_spec(one(docs, "Deployment", f"{RELEASE}-keyservice"))
    env = env_of(spec["containers"][0])
    assert env["VAULT_TOKEN"] == {
        "name": "VAULT_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "byok-vault-token", "key": "token"}},
    }
    assert config_data(docs, "keyservice")["VAULT_CACERT"] == "/etc/byok/vault-ca/vault-ca.pem"
    assert next(v for v in spec["volumes"] if v["name"] == "vault-ca")["configMap"]["name"] == "vault-ca-bundle"
    assert "BYOK_VAULT_K8S_ROLE" not in config_data(docs, "keyservice")


def test_approle_credentials_come_from_the_secret() -> None:
    docs = manifests("approle-minimal")
    spec = pod_spec(one(docs, "Deployment", f"{RELEASE}-keyservice"))
    env = env_of(spec["containers"][0])
    assert env["BYOK_VAULT_ROLE_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "byok-vault-approle", "key": "role_id",
    }  # fmt: skip
    assert env["BYOK_VAULT_SECRET_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "byok-vault-approle", "key": "secret_id",
    }  # fmt: skip
    assert config_data(docs, "keyservice")["BYOK_VAULT_AUTH"] == "approle"
    assert find(docs, "NetworkPolicy") == [] and find(docs, "Pod") == []
    assert find(docs, "PodDisruptionBudget") == [] and find(docs, "PersistentVolumeClaim") == []
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == "byok-data"
    assert "topologySpreadConstraints" not in spec


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


# --- schema: typos and wrong types fail ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_expression", "expected"),
    [
        ("keyservice.replica=3", "additional properties 'replica' not allowed"),
        ("imge.tag=v2", "additional properties 'imge' not allowed"),
        ("networkPolicy.providers.cidr={1.2.3.4/32}", "additional properties 'cidr' not allowed"),
        ("proxyservice.autoscaling.enabled=yes", "want boolean"),
        ("proxyservice.workers=0", "minimum"),
        ("logLevel=verbose", "at '/logLevel': value must be one of"),
        ("database.type=mysql", "at '/database/type'"),
        ("vault.auth.method=userpass", "at '/vault/auth/method'"),
        ("tls.mode=existingSecret", "minLength"),
        ("vault.auth.method=token", "minLength"),
        ("database.type=postgresql", "minLength"),
        ("keyservice.replicas=2", "maximum"),
        ("keyservice.roles.admins={admin}", "at '/keyservice/roles/admins/0'"),
    ],
)
def test_schema_rejects_bad_set_values(set_expression: str, expected: str) -> None:
    """Values as `helm install --set` parses them; Helm's schema validation refuses each one."""
    assert expected in render_error(helm.parse_set_string(set_expression))


def test_schema_rejects_a_wrong_type_given_as_a_string() -> None:
    assert "want integer" in render_error(helm.parse_set_string_values("keyservice.replicas=3"))


def test_sqlite_with_several_keyservice_replicas_is_refused_even_without_the_schema(tmp_path: Path) -> None:
    """The template `fail` backs the schema up (`--skip-schema-validation`): render a copy without it.

    (Helm's lint cannot show this: in lint mode `fail` and `required` only log.)"""
    unchecked = tmp_path / "byok"
    shutil.copytree(CHART, unchecked, ignore=shutil.ignore_patterns("values.schema.json"))
    with helm.Chart.load(unchecked) as chart, pytest.raises(helm.HelmRenderError, match="database.type=postgresql"):
        chart.render({"keyservice": {"replicas": 2}}, name=RELEASE, namespace=NAMESPACE)


def _schema_nodes(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _schema_nodes(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schema_nodes(value, f"{path}/{index}")


# Kubernetes types passed through verbatim; the API server (and kubernetes-validate above) checks them.
PASS_THROUGH = {"affinity/properties/", "autoscaling/properties/behavior/properties/"}


def test_schema_is_closed_at_every_object_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    checked = 0
    for path, node in _schema_nodes(schema):
        is_object = node.get("type") == "object" or "properties" in node and "type" in node
        if not is_object:
            continue
        checked += 1
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path} must set additionalProperties: false"
        elif extra is None:
            assert any(p in path for p in PASS_THROUGH), f"{path} is an open object"
        else:
            assert isinstance(extra, dict) and extra.get("type"), f"{path}: maps must type their values"
    assert checked > 40


def _documented_leaf_keys(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, key, documented) for every value in values.yaml that is not a section heading.

    A value is documented by a comment block containing a `# --` line right above it, or by such a comment
    on an enclosing value (the keys inside a documented `resources:` need no comment of their own)."""
    lines = text.splitlines()
    documented_parents: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w./-]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while documented_parents and documented_parents[-1][0] >= indent:
            documented_parents.pop()
        previous = index - 1
        comment: list[str] = []
        while previous >= 0 and lines[previous].strip().startswith("#"):
            comment.insert(0, lines[previous].strip())
            previous -= 1
        documented = any(c.startswith("# --") for c in comment) or any(d for _, d in documented_parents)
        documented_parents.append((indent, documented))
        following = next((n for n in lines[index + 1 :] if n.strip() and not n.lstrip().startswith("#")), "")
        nested = len(following) - len(following.lstrip()) > indent and not following.lstrip().startswith("- ")
        if not rest and nested:
            continue  # a section heading: its values carry the comments
        yield index + 1, key, documented


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    leaves = list(_documented_leaf_keys(text))
    assert len(leaves) > 80
    undocumented = [f"line {n}: {key}" for n, key, documented in leaves if not documented]
    assert undocumented == []


# --- scaling and disruption ------------------------------------------------------------------------------


def test_proxyservice_is_scaled_by_the_hpa() -> None:
    docs = manifests("ha-postgres")
    deployment = one(docs, "Deployment", f"{RELEASE}-proxyservice")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one(docs, "HorizontalPodAutoscaler", f"{RELEASE}-proxyservice")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": f"{RELEASE}-proxyservice",
    }  # fmt: skip
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 30)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 60, "memory": 80}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    fixed = manifests("existing-secrets")
    assert find(fixed, "HorizontalPodAutoscaler") == []
    assert one(fixed, "Deployment", f"{RELEASE}-proxyservice")["spec"]["replicas"] == 3


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_disruption_budgets_never_block_a_drain(value_set: str) -> None:
    docs = manifests(value_set)
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in find(docs, "HorizontalPodAutoscaler")}
    for pdb in find(docs, "PodDisruptionBudget"):
        name = pdb["metadata"]["name"]
        deployment = one(docs, "Deployment", name)
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
        replicas = hpas[name]["spec"]["minReplicas"] if name in hpas else deployment["spec"]["replicas"]
        if "minAvailable" in pdb["spec"]:
            assert 1 < replicas and pdb["spec"]["minAvailable"] < replicas, name
        else:
            assert pdb["spec"]["maxUnavailable"] >= 1, name


@pytest.mark.parametrize(
    "values",
    [
        {"keyservice": {"pdb": {"minAvailable": 1}}},
        {"proxyservice": {"autoscaling": {"enabled": False}, "replicas": 2, "pdb": {"minAvailable": 2}}},
    ],
)
def test_a_blocking_pod_disruption_budget_is_refused(values: dict[str, Any]) -> None:
    assert "block node drains" in render_error(values)


def test_pods_are_spread_over_zones_and_nodes() -> None:
    for component in ("keyservice", "proxyservice"):
        spec = pod_spec(one(manifests("defaults"), "Deployment", f"{RELEASE}-{component}"))
        constraints = spec["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        for constraint in constraints:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component


# --- certificates ----------------------------------------------------------------------------------------


def test_certificates_carry_spiffe_ids_and_rotate_without_restarts() -> None:
    docs = manifests("ha-postgres")
    for component in ("keyservice", "proxyservice"):
        name = f"{RELEASE}-{component}"
        certificate = one(docs, "Certificate", name)
        spec = certificate["spec"]
        deployment = one(docs, "Deployment", name)
        pod = pod_spec(deployment)
        assert spec["uris"] == [f"spiffe://prod.example.com/ns/{NAMESPACE}/sa/{pod['serviceAccountName']}"]
        assert f"{name}.{NAMESPACE}.svc" in spec["dnsNames"]
        issuer = {"keyservice": "vault-pki", "proxyservice": "vault-pki-proxyservice"}[component]
        assert spec["issuerRef"] == {"name": issuer, "kind": "Issuer", "group": "cert-manager.io"}
        assert (spec["duration"], spec["renewBefore"]) == ("48h", "16h")
        assert {"server auth", "client auth"} <= set(spec["usages"])
        tls = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert tls["secret"]["secretName"] == spec["secretName"]
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "tls")
        assert mount["mountPath"] == "/etc/byok/tls" and "subPath" not in mount, "subPath mounts never update"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert set(annotations) == {"checksum/config"}, "no checksum of certificates: they reload from disk"
    server_name = config_data(docs, "proxyservice")["BYOK_KEYSERVICE_SERVER_NAME"]
    assert server_name in one(docs, "Certificate", f"{RELEASE}-keyservice")["spec"]["dnsNames"]


# --- database and migrations -----------------------------------------------------------------------------


def test_postgresql_migrations_run_as_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = manifests("ha-postgres")
    job = one(docs, "Job", f"{RELEASE}-migrate")
    hook = {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
    }
    assert hook.items() <= job["metadata"]["annotations"].items()
    spec = pod_spec(job)
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "keyservice.migrate"]
    assert env_of(container)["BYOK_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "byok-database"
    assert spec["restartPolicy"] == "Never"
    # At pre-install nothing else of the release exists yet: its ServiceAccount is an earlier hook.
    account = one(docs, "ServiceAccount", spec["serviceAccountName"])
    assert hook.items() <= account["metadata"]["annotations"].items()
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert find(docs, "PersistentVolumeClaim") == []


def test_sqlite_migrates_in_keyservice_on_its_own_volume() -> None:
    docs = manifests("defaults")
    assert find(docs, "Job") == []
    deployment = one(docs, "Deployment", f"{RELEASE}-keyservice")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    spec = pod_spec(deployment)
    (migrate,) = spec["initContainers"]
    assert migrate["command"] == ["python", "-m", "keyservice.migrate"]
    assert {"name": "data", "mountPath": "/var/lib/byok"} in migrate["volumeMounts"]
    pvc = one(docs, "PersistentVolumeClaim", f"{RELEASE}-keyservice-data")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


# --- network policies ------------------------------------------------------------------------------------


def _policy(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "NetworkPolicy", f"{RELEASE}-{component}")["spec"]
    return spec


def _ports(rule: dict[str, Any]) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


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

    keyservice = _policy(docs, "keyservice")
    grpc_in = [r for r in keyservice["ingress"] if 8443 in _ports(r)]
    assert len(grpc_in) == 1 and _ports(grpc_in[0]) == {8443}
    assert grpc_in[0]["from"][0] == _component_peer("proxyservice")
    assert [r["ports"] for r in keyservice["egress"][:1]][0][0]["port"] == 8200

    proxy = _policy(docs, "proxyservice")
    assert {8443, 8081, 9090} == set().union(*(_ports(r) for r in proxy["ingress"]))
    to_keyservice, to_providers = proxy["egress"][0], proxy["egress"][1]
    assert to_keyservice == {"to": [_component_peer("keyservice")], "ports": [{"protocol": "TCP", "port": 8443}]}
    assert _ports(to_providers) == {443}
    (block,) = [peer["ipBlock"] for peer in to_providers["to"]]
    assert block["cidr"] == "0.0.0.0/0" and PRIVATE_RANGES <= set(block["except"])


def test_network_policies_follow_configured_peers() -> None:
    docs = manifests("ha-postgres")
    proxy = _policy(docs, "proxyservice")
    callers = next(r for r in proxy["ingress"] if _ports(r) == {8443})
    assert callers["from"] == _values("ha-postgres")["networkPolicy"]["callers"]  # type: ignore[index]
    keyservice = _policy(docs, "keyservice")
    admins = next(r for r in keyservice["ingress"] if _ports(r) == {8443})
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform"}}} in admins["from"]
    vault, database = keyservice["egress"][0], keyservice["egress"][1]
    assert vault["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}] and _ports(vault) == {8200}
    assert database["to"] == [{"ipBlock": {"cidr": "10.30.0.10/32"}}] and _ports(database) == {5432}
    assert keyservice["egress"][2] == proxy["egress"][1], "keyservice verifies keys against the providers"
    migrate = _policy(docs, "migrate")
    assert migrate["egress"][0] == database and "ingress" not in migrate
    for rule in keyservice["egress"] + proxy["egress"]:
        for peer in rule.get("to", []):
            if "ipBlock" in peer:
                ipaddress.ip_network(peer["ipBlock"]["cidr"])  # a well-formed CIDR


def test_keyservice_provider_egress_can_be_closed() -> None:
    docs = render_docs({"networkPolicy": {"providers": {"fromKeyservice": False}}})
    egress_ports = [_ports(rule) for rule in _policy(docs, "keyservice")["egress"]]
    assert {443} not in egress_ports and {8200} in egress_ports


# --- monitoring, helm test, NOTES ------------------------------------------------------------------------


def test_service_monitors_scrape_the_metrics_port() -> None:
    docs = manifests("ha-postgres")
    for component in ("keyservice", "proxyservice"):
        monitor = one(docs, "ServiceMonitor", f"{RELEASE}-{component}")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        service = one(docs, "Service", f"{RELEASE}-{component}")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert find(manifests("defaults"), "ServiceMonitor") == []


def test_helm_test_pod_checks_both_health_endpoints() -> None:
    docs = manifests("defaults")
    (pod,) = find(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    commands = [c["command"] for c in pod["spec"]["containers"]]
    assert commands == [
        ["python", "-m", "byokcommon.healthcheck", "--addr", f"{RELEASE}-{component}.{NAMESPACE}.svc:8081"]
        for component in ("keyservice", "proxyservice")
    ]
    test_policy = _policy(docs, "test")
    assert _ports(test_policy["egress"][0]) == {8081}


def test_notes_tell_how_to_reach_the_proxy_and_run_byokctl() -> None:
    notes = _render(None)["byok/templates/NOTES.txt"]
    assert f"{RELEASE}-proxyservice.{NAMESPACE}.svc:8443" in notes
    assert "byokctl" in notes and "helm test" in notes


@pytest.mark.parametrize("doc_file", ["docs/helm.md", "README.md"])
def test_the_minimal_values_file_in_the_docs_installs(doc_file: str) -> None:
    """The README's and docs/helm.md's example must stay valid as the chart evolves."""
    text = (REPO / doc_file).read_text()
    example = re.search(r"A minimal `my-values.yaml`.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    values = yaml.safe_load(example.group(1))
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=LINT_KUBE_VERSION)
    assert report["errors"] == [], report
    docs = render_docs(values)
    assert one(docs, "Job", f"{RELEASE}-migrate")
    for doc in docs:
        if doc["kind"] not in CRD_SCHEMAS_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)


# --- container image -------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, arguments = stripped.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_and_runs_as_uid_10001() -> None:
    stages = _stages()
    assert len(stages) >= 2
    # Each stage's own FROM line names the base, with the global ARG defaults (before the first FROM) applied.
    args = dict(a.split("=", 1) for k, a in _dockerfile_instructions() if k == "ARG" and "=" in a)
    images = [re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), stage[0][1].split()[0])
              for stage in stages]
    assert all(image.startswith("python:3.11-slim") for image in images), images
    final = stages[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users and re.fullmatch(r"10001(:\d+)?", users[-1]), "the final USER must be numeric 10001"
    assert any(k == "COPY" and "--from=" in a and "/app/.venv" in a for k, a in final)
    assert any(k in ("CMD", "ENTRYPOINT") for k, _ in final)
    assert any(k == "RUN" and "pip install --no-cache-dir ." in a for k, a in stages[0])


def test_dockerfile_has_no_remote_add_healthcheck_compilers_or_secrets() -> None:
    instructions = _dockerfile_instructions()
    assert not [a for k, a in instructions if k == "ADD" and re.search(r"https?://", a)]
    assert "HEALTHCHECK" not in {k for k, _ in instructions}
    final_runs = " ".join(a for k, a in _stages()[-1] if k == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|clang)\b", final_runs)
    for keyword, arguments in instructions:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(TOKEN|SECRET|PASSWORD|API_KEY)", arguments, re.IGNORECASE), arguments
    assert not SECRET_SHAPES.search(DOCKERFILE.read_text())


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    # Benchmark virtualenvs (LiteLLM's is ~750 MB), harnesses and caches are not the services.
    assert {".venv", ".git", "tests", ".byok", ".bench-venv*", "bench", "reliability", ".hypothesis"} <= patterns


def _python_modules() -> set[str]:
    """Every `python -m X` the image or the chart (any value set) runs."""
    found = re.findall(r'python"?\s*,?\s*"?-m"?\s*,?\s*"?([\w.]+)', DOCKERFILE.read_text())
    # The standard library's own (`python -m venv` in the builder) are not the project's.
    modules = {m for m in found if m.split(".")[0] not in sys.stdlib_module_names}
    for value_set in VALUE_SETS:
        for doc in manifests(value_set):
            if doc["kind"] not in POD_KINDS:
                continue
            for container in containers(pod_spec(doc)):
                command = container.get("command", [])
                if command[:2] == ["python", "-m"]:
                    modules.add(command[2])
    return modules


def test_every_module_the_image_and_chart_run_exists() -> None:
    modules = _python_modules()
    assert {"keyservice", "proxyservice", "keyservice.migrate", "byokcommon.healthcheck"} <= modules
    missing = []
    for module in sorted(modules):
        base = REPO.joinpath(*module.split("."))
        if not ((base / "__main__.py").is_file() or base.with_suffix(".py").is_file()):
            missing.append(module)
    assert missing == [], f"modules run by the image or chart but absent from the repo: {missing}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_setting_the_chart_sets_is_one_the_service_reads(value_set: str) -> None:
    """A misspelt variable in a ConfigMap would be ignored silently and the default used instead."""
    docs = manifests(value_set)
    for component in ("keyservice", "proxyservice"):
        source = "\n".join(p.read_text() for p in (REPO / component).glob("*.py")) + \
            (REPO / "byokcommon" / "settings.py").read_text()
        for name in config_data(docs, component):
            assert f'"{name}"' in source, f"{component} never reads {name}"
