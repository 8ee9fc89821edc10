"""The one place that knows which upstream Helm charts the platform deploys, pinned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

VALUES_DIR = Path(__file__).resolve().parent.parent / "values"


@dataclass(frozen=True)
class ChartPin:
    """An upstream chart at an exact version."""

    chart: str
    version: str
    repo: str


TRAEFIK = ChartPin("traefik", "41.3.0", "https://traefik.github.io/charts")
ARGO_CD = ChartPin("argo-cd", "10.1.1", "https://argoproj.github.io/argo-helm")
KUBE_PROMETHEUS_STACK = ChartPin(
    "kube-prometheus-stack", "88.5.3", "https://prometheus-community.github.io/helm-charts"
)
# OpenBao (MPL-2.0), the maintained fork of HashiCorp Vault: README "Secret store: OpenBao in an enclave".
OPENBAO = ChartPin("openbao", "0.29.2", "https://openbao.github.io/openbao-helm")

ALL_CHARTS = (TRAEFIK, ARGO_CD, KUBE_PROMETHEUS_STACK, OPENBAO)


def pinned_release(
    resource_name: str,
    pin: ChartPin,
    *,
    release_name: str,
    namespace: pulumi.Input[str],
    values: pulumi.Input[dict[str, Any]],
    opts: pulumi.ResourceOptions,
    **options: Any,
) -> k8s.helm.v3.Release:
    """A Helm release of `pin`'s chart at its pinned version, named `release_name` (Helm, not Pulumi, names it,
    so Service names the routes point at stay predictable). `options` are further `helm.v3.Release` arguments."""
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=pin.chart,
        version=pin.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=pin.repo),
        namespace=namespace,
        values=values,
        opts=opts,
        **options,
    )


def load_values(name: str) -> dict[str, Any]:
    """Base values of a release from `values/<name>.yaml`."""
    with (VALUES_DIR / f"{name}.yaml").open(encoding="utf-8") as stream:
        return yaml.safe_load(stream) or {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: `override` merged into `base`; nested dicts merge, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
