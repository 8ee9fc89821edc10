"""The one place that knows which upstream Helm charts the platform deploys, pinned.

Each pinned chart is vendored as `charts/<chart>-<version>.tgz`, its sha256 in `charts/charts.lock.json`
(`scripts/vendor_charts.py` pulls, checks and records it; tools/vendored.py reads it). A Release installs that archive
from the checkout, never from the chart repository: the bytes the tests render are the bytes the cluster gets, and a
repository outage or a re-published version cannot change a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
VALUES_DIR = PROJECT_DIR / "values"
CHARTS_DIR = PROJECT_DIR / "charts"


@dataclass(frozen=True)
class ChartPin:
    """An upstream chart at an exact version; `repo` is where scripts/vendor_charts.py pulls it from."""

    chart: str
    version: str
    repo: str

    @property
    def path(self) -> str:
        """The vendored archive as a Release's `chart`: relative to the project directory, where Pulumi runs the
        program and its providers, so the state records the same path on every machine."""
        return f"./charts/{self.chart}-{self.version}.tgz"


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
    """A Helm release of `pin`'s vendored chart archive, named `release_name` (Helm, not Pulumi, names it,
    so Service names the routes point at stay predictable). `options` are further `helm.v3.Release` arguments.

    No `repository_opts`: with none, pulumi-kubernetes' Helm loads a `chart` that exists as a file and never asks a
    repository. `version` is what Helm records for the release (the archive's own Chart.yaml says the same).
    """
    archive = PROJECT_DIR / pin.path
    if not archive.is_file():
        # Found from this file's location, so the check holds whatever the working directory of the caller.
        raise pulumi.RunError(
            f"chart {pin.chart} {pin.version}: {archive} is missing; run scripts/vendor_charts.py {pin.chart} "
            f"{pin.version}"
        )
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=pin.path,
        version=pin.version,
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
