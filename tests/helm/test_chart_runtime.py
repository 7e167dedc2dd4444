"""What the chart runs: services, native gRPC probes, the runtime environment each service reads, scaling and
disruption budgets, certificates, database migrations, monitoring, the helm test and NOTES."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from tests.helm.chart import (
    CHART,
    CRD_SCHEMAS_KINDS,
    KUBE_VERSIONS,
    LINT_KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    REPO,
    SERVICE_NAMES,
    VALUE_SETS,
    _render,
    config_data,
    env_of,
    find,
    manifests,
    network_policy,
    one,
    pod_spec,
    policy_ports,
    render_docs,
    render_error,
)

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
    test_policy = network_policy(docs, "test")
    assert policy_ports(test_policy["egress"][0]) == {8081}


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


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_setting_the_chart_sets_is_one_the_service_reads(value_set: str) -> None:
    """A misspelt variable in a ConfigMap would be ignored silently and the default used instead."""
    docs = manifests(value_set)
    for component in ("keyservice", "proxyservice"):
        source = "\n".join(p.read_text() for p in (REPO / component).glob("*.py")) + \
            (REPO / "byokcommon" / "settings.py").read_text()
        for name in config_data(docs, component):
            assert f'"{name}"' in source, f"{component} never reads {name}"


def test_the_api_base_allowlist_reaches_both_services() -> None:
    """Issue 11 finding 2: ops' allowlist of api_base hosts and internal networks is a chart value, read by both
    services (keyservice validates and verifies, the proxy sends); unset, neither carries it."""
    docs = render_docs({"apiBaseAllowlist": ["llm.corp.example", "10.20.0.0/16"]})
    for component in ("keyservice", "proxyservice"):
        assert config_data(docs, component)["BYOK_API_BASE_ALLOWLIST"] == "llm.corp.example,10.20.0.0/16"
        assert "BYOK_API_BASE_ALLOWLIST" not in config_data(manifests("defaults"), component)
    assert "apiBaseAllowlist" in render_error({"apiBaseAllowlist": ["bad host!"]})
