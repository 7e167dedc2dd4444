"""What the chart runs: services, native gRPC probes, the runtime environment each service reads, scaling and
disruption budgets, certificates, database migrations, monitoring, the helm test and NOTES."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from proxyservice.settings import ProxySettings
from tests.helm.chart import (
    CHART,
    CRD_SCHEMAS_KINDS,
    HTTPS_PORT,
    KUBE_VERSIONS,
    LINT_KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    REPO,
    SERVICE_NAMES,
    VALUE_SETS,
    _render,
    _values,
    config_data,
    env_of,
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

# --- services, probes, runtime contract ------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_expose_grpc_health_and_metrics_and_probe_natively(value_set: str) -> None:
    docs = manifests(value_set)
    front = https_port(value_set)
    for component in ("keyservice", "proxyservice"):
        name = f"{RELEASE}-{component}"
        service = one(docs, "Service", name)
        # proxyservice adds its HTTPS front (mTLS) unless the value set disables it.
        https = {("https", front)} if component == "proxyservice" and front is not None else set()
        assert {(p["name"], p["port"]) for p in service["spec"]["ports"]} == {
            ("grpc", 8443), ("health", 8081), ("metrics", 9090),
        } | https  # fmt: skip
        spec = pod_spec(one(docs, "Deployment", name))
        (main,) = [c for c in spec["containers"] if c["name"] == component]
        assert main["command"] == ["python", "-m", component]
        for probe in ("livenessProbe", "startupProbe"):
            assert main[probe]["grpc"] == {"port": 8081}, f"{component} {probe}"
        # Readiness asks for the service, which follows keyservice's dependencies and both services' drain.
        assert main["readinessProbe"]["grpc"] == {"port": 8081, "service": SERVICE_NAMES[component]}
        assert {(p["name"], p["containerPort"]) for p in main["ports"]} == {
            ("grpc", 8443), ("health", 8081), ("metrics", 9090),
        } | https  # fmt: skip
        for port in service["spec"]["ports"]:
            assert port["targetPort"] == port["name"], f"{component} Service port {port['name']}"
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
    # The HTTPS front listens on every address, like gRPC; no allowlist: every path under each provider's root.
    assert proxy["BYOK_HTTP_ADDR"] == f"0.0.0.0:{HTTPS_PORT}"
    assert proxy["BYOK_HTTP_MAX_BODY_BYTES"] == "33554432"
    assert proxy["BYOK_HTTP_PATH_ALLOWLIST"] == ""
    assert not any(name.startswith("BYOK_HTTP_") for name in ks), "keyservice has no HTTP front"
    # Drain, then grace for RPCs in flight, inside the pod's terminationGracePeriodSeconds with 5 s to spare.
    assert (ks["BYOK_SHUTDOWN_DRAIN_SECONDS"], ks["BYOK_SHUTDOWN_GRACE_SECONDS"]) == ("5", "20")
    assert (proxy["BYOK_SHUTDOWN_DRAIN_SECONDS"], proxy["BYOK_SHUTDOWN_GRACE_SECONDS"]) == ("5", "50")


def test_termination_grace_period_must_cover_the_drain() -> None:
    message = render_error({"proxyservice": {"terminationGracePeriodSeconds": 10, "shutdownDrainSeconds": 5}})
    assert "proxyservice.terminationGracePeriodSeconds must be at least proxyservice.shutdownDrainSeconds + 6" \
        in message


# --- proxyservice's HTTPS front -------------------------------------------------------------------------

PROXY = f"{RELEASE}-proxyservice"


def _proxy_ports(docs: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, Any]], set[int]]:
    """proxyservice's container ports by name, its Service ports by name, and every port its ingress opens."""
    (main,) = [c for c in pod_spec(one(docs, "Deployment", PROXY))["containers"] if c["name"] == "proxyservice"]
    container = {p["name"]: p["containerPort"] for p in main["ports"]}
    service = {p["name"]: p for p in one(docs, "Service", PROXY)["spec"]["ports"]}
    ingress = set().union(*(policy_ports(r) for r in network_policy(docs, "proxyservice")["ingress"]))
    return container, service, ingress


def test_the_https_front_is_on_by_default_in_the_deployment_service_and_network_policy() -> None:
    docs = manifests("defaults")
    container, service, ingress = _proxy_ports(docs)
    assert container["https"] == HTTPS_PORT
    assert service["https"] == {
        "name": "https", "port": HTTPS_PORT, "targetPort": "https", "protocol": "TCP", "appProtocol": "https",
    }  # fmt: skip
    assert HTTPS_PORT in ingress
    # Same certificate as gRPC: one TLS volume, and the front's address and limits in the ConfigMap.
    assert config_data(docs, "proxyservice")["BYOK_HTTP_ADDR"] == f"0.0.0.0:{HTTPS_PORT}"


def test_the_https_front_is_never_probed_readiness_covers_it() -> None:
    """The kubelet cannot present a client certificate: every probe stays on the plaintext health port, whose
    proxyservice health is NOT_SERVING until both listeners are up."""
    (main,) = pod_spec(one(manifests("defaults"), "Deployment", PROXY))["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert set(main[probe]) - {"periodSeconds", "timeoutSeconds", "failureThreshold"} == {"grpc"}, probe
        assert main[probe]["grpc"]["port"] == 8081, probe
    assert main["readinessProbe"]["grpc"]["service"] == SERVICE_NAMES["proxyservice"]


def test_disabling_the_https_front_removes_its_port_and_empties_its_address() -> None:
    docs = render_docs({"proxyservice": {"http": {"enabled": False, "pathAllowlist": {"openai": ["/embeddings"]}}}})
    container, service, ingress = _proxy_ports(docs)
    assert "https" not in container and HTTPS_PORT not in container.values()
    assert "https" not in service
    assert ingress == {8443, 8081, 9090}
    data = config_data(docs, "proxyservice")
    assert data["BYOK_HTTP_ADDR"] == ""
    assert "BYOK_HTTP_PATH_ALLOWLIST" not in data and "BYOK_HTTP_MAX_BODY_BYTES" not in data
    notes = _render({"proxyservice": {"http": {"enabled": False}}})["byok/templates/NOTES.txt"]
    assert f"https://{PROXY}" not in notes and "proxyservice.http.enabled=false" in notes
    for doc in docs:
        if doc["kind"] not in CRD_SCHEMAS_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSIONS[0], strict=True)


def test_another_https_port_moves_the_container_service_and_network_policy_ports() -> None:
    docs = manifests("ha-postgres")
    container, service, ingress = _proxy_ports(docs)
    assert container["https"] == 9443 and service["https"]["port"] == 9443
    assert 9443 in ingress and HTTPS_PORT not in ingress
    data = config_data(docs, "proxyservice")
    assert data["BYOK_HTTP_ADDR"] == "0.0.0.0:9443"
    # 1 GiB stays an integer (Helm reads YAML numbers as floats: 1.073741824e+09 would fail the service's parse).
    assert data["BYOK_HTTP_MAX_BODY_BYTES"] == "1073741824"


@pytest.mark.parametrize(
    ("allowlist", "expected"),
    [
        ({}, ""),
        ({"openai": ["/chat/completions"]}, "openai=/chat/completions"),
        (
            {"openai": ["/chat/completions", "/embeddings", "/responses*"], "anthropic": ["/v1/messages*"]},
            "anthropic=/v1/messages*;openai=/chat/completions,/embeddings,/responses*",
        ),
    ],
)
def test_the_path_allowlist_map_renders_into_the_env_syntax(allowlist: dict[str, list[str]], expected: str) -> None:
    """provider=pattern,pattern;provider=… with providers in name order (a stable ConfigMap checksum)."""
    docs = render_docs({"proxyservice": {"http": {"pathAllowlist": allowlist}}})
    assert config_data(docs, "proxyservice")["BYOK_HTTP_PATH_ALLOWLIST"] == expected


@pytest.mark.parametrize("value_set", ["defaults", "ha-postgres", "existing-secrets"])
def test_the_rendered_https_front_settings_are_what_the_proxy_reads(value_set: str, tmp_path: Path) -> None:
    """The ConfigMap's BYOK_HTTP_* values, through the proxy's own settings loader: address, body limit and the
    allowlist parsed into rules (a syntax slip in the template would fail the service at start)."""
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    data = config_data(manifests(value_set), "proxyservice")
    env = {**data, "BYOK_TLS_CERT": str(tmp_path / "tls.crt"), "BYOK_TLS_KEY": str(tmp_path / "tls.key"),
           "BYOK_TLS_CA": str(tmp_path / "ca.crt")}
    settings = ProxySettings.from_env(env)
    front = https_port(value_set)
    assert settings.http_addr == ("" if front is None else f"0.0.0.0:{front}")
    if value_set == "ha-postgres":
        assert settings.http_max_body_bytes == 1 << 30
        assert dict(settings.http_path_allowlist.rules) == {
            "openai": ("/chat/completions", "/embeddings", "/responses*"),
            "anthropic": ("/v1/messages*",),
        }
        assert settings.http_path_allowlist.allows("openai", "/responses/resp_1")
        assert not settings.http_path_allowlist.allows("openai", "/files")
    else:
        assert settings.http_max_body_bytes == 32 << 20
        assert dict(settings.http_path_allowlist.rules) == {}


def test_the_https_port_cannot_take_another_ports_number_even_without_the_schema(tmp_path: Path) -> None:
    assert "/proxyservice/http/port" in render_error({"proxyservice": {"http": {"port": 8081}}})
    unchecked = tmp_path / "byok"
    shutil.copytree(CHART, unchecked, ignore=shutil.ignore_patterns("values.schema.json"))
    with helm.Chart.load(unchecked) as chart, pytest.raises(helm.HelmRenderError, match="proxyservice.http.port=8443"):
        chart.render({"proxyservice": {"http": {"port": 8443}}}, name=RELEASE, namespace=NAMESPACE)


def test_notes_show_the_https_front_and_its_allowlist() -> None:
    notes = _render(_values("ha-postgres"))["byok/templates/NOTES.txt"]
    assert f"https://{PROXY}.{NAMESPACE}.svc:9443/<provider>" in notes
    assert "anthropic=/v1/messages*;openai=/chat/completions,/embeddings,/responses*" in notes
    assert "both listeners are up" in notes


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
