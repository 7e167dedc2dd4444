"""The chart renders valid Kubernetes: helm lint, strict validation against the Kubernetes OpenAPI schemas
(kubernetes-validate) and the CRD schemas, and values.schema.json refusing typos and wrong types."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from tests.helm.chart import (
    CHART,
    CRD_SCHEMAS,
    KUBE_VERSIONS,
    LINT_KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    _values,
    manifests,
    one,
    render_error,
)

# --- lint and Kubernetes schemas -------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean(value_set: str) -> None:
    report = helm.lint(CHART, _values(value_set), strict=True, namespace=NAMESPACE, kube_version=LINT_KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


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
        ("proxyservice.http.port=70000", "at '/proxyservice/http/port': maximum"),
        ("proxyservice.http.port=443", "at '/proxyservice/http/port': minimum"),  # non-root cannot bind it
        ("proxyservice.http.port=8443", "at '/proxyservice/http/port': 'not' failed"),
        ("proxyservice.http.enabled=no", "at '/proxyservice/http/enabled': got string, want boolean"),
        ("proxyservice.http.maxBodyBytes=1023", "at '/proxyservice/http/maxBodyBytes': minimum"),
        ("proxyservice.http.maxBodyBytes=1073741825", "at '/proxyservice/http/maxBodyBytes': maximum"),
        ("proxyservice.http.prot=8444", "additional properties 'prot' not allowed"),
    ],
)
def test_schema_rejects_bad_set_values(set_expression: str, expected: str) -> None:
    """Values as `helm install --set` parses them; Helm's schema validation refuses each one."""
    assert expected in render_error(helm.parse_set_string(set_expression))


@pytest.mark.parametrize(
    ("allowlist", "expected"),
    [
        ({"openai": ["chat/completions"]}, "at '/proxyservice/http/pathAllowlist/openai/0'"),  # not under the root
        ({"openai": ["/v1/*/messages"]}, "at '/proxyservice/http/pathAllowlist/openai/0'"),  # '*' not at the end
        ({"openai": ["/a**"]}, "at '/proxyservice/http/pathAllowlist/openai/0'"),
        ({"openai": ["/ok", "/a,/b"]}, "at '/proxyservice/http/pathAllowlist/openai/1'"),  # would split in the env
        ({"openai": ["/a;anthropic=/b"]}, "at '/proxyservice/http/pathAllowlist/openai/0'"),
        ({"openai": ["/a b"]}, "at '/proxyservice/http/pathAllowlist/openai/0'"),
        ({"openai": []}, "at '/proxyservice/http/pathAllowlist/openai': minItems"),  # would forbid every path
        ({"OpenAI": ["/chat/completions"]}, "'OpenAI' does not match pattern"),
        ({"open-ai": ["/chat/completions"]}, "'open-ai' does not match pattern"),
        ({"openai": "/chat/completions"}, "at '/proxyservice/http/pathAllowlist/openai': got string, want array"),
    ],
)
def test_schema_rejects_a_bad_path_allowlist(allowlist: dict[str, Any], expected: str) -> None:
    assert expected in render_error({"proxyservice": {"http": {"pathAllowlist": allowlist}}})


def test_schema_accepts_the_documented_path_allowlist() -> None:
    """Guards the test above: the pattern shapes the proxy takes (exact paths, a trailing '*') pass."""
    allowlist = {
        "openai": ["/chat/completions", "/embeddings", "/responses*"],
        "anthropic": ["/v1/messages*"],
        "azure_openai": ["/"],
        "gemini": ["/v1beta/models*"],
    }
    with helm.Chart.load(CHART) as chart:
        chart.render({"proxyservice": {"http": {"pathAllowlist": allowlist}}}, name=RELEASE, namespace=NAMESPACE)


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
