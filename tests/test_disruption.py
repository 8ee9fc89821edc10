"""PodDisruptionBudgets of every release, as Helm renders them: each protects a workload it can leave running
during a node drain (node-image or AKS upgrade), and none blocks a drain for good.

A budget whose minimum equals the workload's replica count (or whose maxUnavailable is 0) lets no pod be evicted:
`kubectl drain` and AKS upgrades then wait until their timeout and fail, leaving the node cordoned. Single-replica
workloads (Traefik: one ACME writer; Grafana and Prometheus: one ReadWriteOnce disk; the secret store: one sealed
server) therefore get no budget; Alertmanager runs twice so that one budget keeps alert delivery alive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from harness import STACKS, ProgramRun
from tools.render import RELEASE_TYPE, render_releases

# Pods the prometheus-operator creates for its custom resources carry these labels besides spec.podMetadata's
# (makeSelectorLabels in pkg/alertmanager/operator.go and pkg/prometheus/server/operator.go, v0.93.0).
OPERATOR_POD_LABELS = {
    "Alertmanager": lambda name: {
        "app.kubernetes.io/name": "alertmanager",
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/instance": name,
        "alertmanager": name,
    },
    "Prometheus": lambda name: {
        "app.kubernetes.io/name": "prometheus",
        "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/instance": name,
        "operator.prometheus.io/name": name,
        "prometheus": name,
    },
}
WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def workloads(objects: list[dict[str, Any]], namespace: str) -> list[tuple[str, dict[str, str], int]]:
    """(id, pod labels, replicas) of every replicated workload among one release's rendered objects."""
    found = []
    for obj in objects:
        kind = str(obj.get("kind"))
        spec = obj.get("spec") or {}
        name = obj["metadata"]["name"]
        if kind in WORKLOAD_KINDS:
            labels = spec["template"]["metadata"].get("labels") or {}
        elif kind in OPERATOR_POD_LABELS:
            labels = {**((spec.get("podMetadata") or {}).get("labels") or {}), **OPERATOR_POD_LABELS[kind](name)}
        else:
            continue
        replicas = spec.get("replicas")
        obj_namespace = obj["metadata"].get("namespace") or namespace
        found.append((f"{kind} {obj_namespace}/{name}", labels, 1 if replicas is None else int(replicas)))
    return found


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    if selector.get("matchExpressions"):
        raise AssertionError(f"matchExpressions are not evaluated here: {selector}")
    match = selector.get("matchLabels") or {}
    return bool(match) and all(labels.get(key) == value for key, value in match.items())


def evictable(budget: Mapping[str, Any], replicas: int) -> int:
    """How many of `replicas` healthy pods the budget lets a drain evict at once."""
    if "maxUnavailable" in budget:
        value = budget["maxUnavailable"]
        if isinstance(value, str) and value.endswith("%"):
            return math.ceil(replicas * int(value[:-1]) / 100)
        return int(value)
    value = budget.get("minAvailable", 0)
    if isinstance(value, str) and value.endswith("%"):
        value = math.ceil(replicas * int(value[:-1]) / 100)
    return replicas - int(value)


@pytest.fixture(scope="module")
def rendered(stack_runs: dict[str, ProgramRun]) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
    """Per stack: (release namespace, rendered objects) of every release."""
    result = {}
    for stack in STACKS:
        inputs = [release.inputs for release in stack_runs[stack].of_type(RELEASE_TYPE)]
        result[stack] = [
            (str(release["namespace"]), objects)
            for release, objects in zip(inputs, render_releases(inputs), strict=True)
        ]
    return result


@pytest.mark.parametrize("stack", STACKS)
def test_every_budget_protects_a_workload_and_never_blocks_a_drain(
    rendered: dict[str, list[tuple[str, list[dict[str, Any]]]]], stack: str
) -> None:
    budgets = 0
    for namespace, objects in rendered[stack]:
        candidates = workloads(objects, namespace)
        for budget in (obj for obj in objects if obj.get("kind") == "PodDisruptionBudget"):
            budgets += 1
            name = budget["metadata"]["name"]
            budget_namespace = budget["metadata"].get("namespace") or namespace
            protected = [
                (workload, replicas)
                for workload, labels, replicas in candidates
                if workload.split(" ")[1].startswith(f"{budget_namespace}/")
                and selects(budget["spec"]["selector"], labels)
            ]
            assert len(protected) == 1, f"PodDisruptionBudget {name} selects {protected or 'no workload'}"
            ((workload, replicas),) = protected
            allowed = evictable(budget["spec"], replicas)
            assert allowed >= 1, f"{name} lets no pod of {workload} ({replicas} replicas) be evicted: drains block"
            assert allowed < replicas, f"{name} lets every pod of {workload} go at once: it protects nothing"
    assert budgets, "no PodDisruptionBudget rendered"


@pytest.mark.parametrize("stack", STACKS)
def test_alert_delivery_survives_a_drain(
    rendered: dict[str, list[tuple[str, list[dict[str, Any]]]]], stack: str
) -> None:
    objects = [obj for _, release_objects in rendered[stack] for obj in release_objects]
    (alertmanager,) = [obj for obj in objects if obj.get("kind") == "Alertmanager"]
    assert alertmanager["spec"]["replicas"] >= 2
    # Spread over nodes where possible, so draining one node takes at most one of them.
    assert alertmanager["spec"]["affinity"]["podAntiAffinity"]
    labels = OPERATOR_POD_LABELS["Alertmanager"](alertmanager["metadata"]["name"])
    assert [
        obj for obj in objects if obj.get("kind") == "PodDisruptionBudget" and selects(obj["spec"]["selector"], labels)
    ]
