"""`cluster`: where the platform runs — a new AKS cluster with an SGX pool, or an existing cluster — and its rules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from components.config.base import (
    InvalidValueError,
    Problem,
    ResourceGroupName,
    Section,
    VmSize,
    check,
    cidr,
    render_value,
    set_but_inapplicable,
)

if TYPE_CHECKING:
    from components.config.settings import Settings

# Enclave Page Cache per SGX VM size in MiB (Azure DCsv2 / DCsv3 / DCdsv3 documentation).
# The single source for "which sizes are SGX sizes" and "how much EPC a node offers".
SGX_EPC_MIB: dict[str, int] = {
    "Standard_DC1s_v2": 28,
    "Standard_DC2s_v2": 56,
    "Standard_DC4s_v2": 112,
    "Standard_DC8_v2": 168,
    **{
        f"Standard_DC{cores}{series}_v3": gib * 1024
        for series in ("s", "ds")
        for cores, gib in ((1, 4), (2, 8), (4, 16), (8, 32), (16, 64), (24, 128), (32, 192), (48, 256))
    },
}

_SGX_SIZE_PATTERN = re.compile(r"^standard_dc\d+d?s?_v[23]$", re.IGNORECASE)
_K8S_VERSION = re.compile(r"^\d+\.\d+$")
_ACR_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/"
    r"[A-Za-z0-9]{5,50}$",
    re.IGNORECASE,
)
_TAG_FORBIDDEN = set("<>%&\\?/")
RESERVED_TAGS = ("environment", "stack", "owner", "expires-at")


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if key.lower() in RESERVED_TAGS:
            raise InvalidValueError(f"tag '{key}' is set by the program", f"any name except {', '.join(RESERVED_TAGS)}")
        if not key or len(key) > 512 or _TAG_FORBIDDEN & set(key):
            raise InvalidValueError(f"tag name '{key}' is not accepted by Azure", "1-512 characters without <>%&\\?/")
    return value


class SystemPool(Section):
    """The AKS System node pool: general-purpose VMs for cluster add-ons and the platform layers."""

    vm_size: VmSize = Field(default="Standard_D4s_v5", description="VM size; general purpose, not an SGX (DC) size.")
    count: int = Field(default=2, ge=1, le=100, description="Number of nodes.")


class SgxPool(Section):
    """The User node pool of SGX-capable DC-series VMs that runs the enclave workloads."""

    vm_size: str = Field(default="Standard_DC2s_v3", description="SGX VM size (DCsv2, DCsv3 or DCdsv3).")
    count: int = Field(default=1, ge=0, le=1000, description="Initial node count.")
    min_count: int | None = Field(
        default=None, ge=0, le=1000, description="Autoscaler lower bound (set with maxCount)."
    )
    max_count: int | None = Field(
        default=None, ge=1, le=1000, description="Autoscaler upper bound (set with minCount)."
    )

    @property
    def autoscaling(self) -> bool:
        return self.min_count is not None and self.max_count is not None

    @property
    def epc_mib(self) -> int:
        return SGX_EPC_MIB[self.vm_size]


class ClusterSettings(Section):
    """Where the platform runs: a new AKS cluster with SGX nodes, or an existing cluster."""

    provider: Literal["aks", "existing"] = Field(
        default="aks", description="`aks` creates the cluster; `existing` uses a kubeconfig."
    )
    location: str = Field(default="westeurope", description="Azure region (must offer the SGX VM size).")
    resource_group_name: ResourceGroupName | None = Field(
        default=None, description="Resource group to create; default `cv-<stack>`."
    )
    kubernetes_version: (
        Annotated[
            str,
            check(
                _K8S_VERSION,
                "is not a Kubernetes minor version (patches come from the auto-upgrade channel)",
                "MAJOR.MINOR, e.g. 1.33",
            ),
        ]
        | None
    ) = Field(default=None, description="Kubernetes minor version; unset means the AKS default.")
    system_pool: SystemPool = Field(default_factory=lambda: SystemPool(), description="System node pool.")
    sgx_pool: SgxPool = Field(default_factory=lambda: SgxPool(), description="SGX node pool.")
    sgx_quote_helper: bool = Field(default=False, description="Enable the SGX quote helper of the confcom add-on.")
    authorized_ip_ranges: list[Annotated[str, AfterValidator(cidr)]] = Field(
        default_factory=list, description="CIDRs allowed to reach the API server; empty means any."
    )
    acr_pull_registry_ids: list[
        Annotated[
            str,
            check(
                _ACR_ID,
                "is not an Azure Container Registry resource ID",
                "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ContainerRegistry/registries/<name>",
            ),
        ]
    ] = Field(
        default_factory=list,
        description="Container registries (resource IDs) the nodes may pull from, e.g. the EGo-Vault image's ACR.",
    )
    tags: Annotated[dict[str, str], AfterValidator(_tags)] = Field(
        default_factory=dict, description="Extra Azure tags for every resource."
    )
    kubeconfig: SecretStr | None = Field(
        default=None, description="`existing`: kubeconfig contents (set with --secret)."
    )
    kubeconfig_path: str | None = Field(default=None, description="`existing`: path to a kubeconfig file.")
    kubeconfig_context: str | None = Field(default=None, description="`existing`: context in the kubeconfig to use.")


def cluster_problems(settings: Settings) -> list[Problem]:
    """Rules of the cluster section that relate several keys or depend on the provider."""
    if settings.cluster.provider == "aks":
        return _aks_problems(settings)
    return _existing_problems(settings.cluster)


def _aks_problems(settings: Settings) -> list[Problem]:
    cluster = settings.cluster
    problems: list[Problem] = []
    sgx = cluster.sgx_pool

    if sgx.vm_size not in SGX_EPC_MIB:
        problems.append(
            Problem(
                "cluster.sgxPool.vmSize",
                "is not an SGX VM size (DCsv2, DCsv3 or DCdsv3, Gen2)",
                render_value(sgx.vm_size),
                ", ".join(SGX_EPC_MIB),
            )
        )
    if _SGX_SIZE_PATTERN.match(cluster.system_pool.vm_size):
        problems.append(
            Problem(
                "cluster.systemPool.vmSize",
                "must not be an SGX size: the System pool runs add-ons on general-purpose VMs",
                render_value(cluster.system_pool.vm_size),
                "a general-purpose size, e.g. Standard_D4s_v5",
            )
        )

    if (sgx.min_count is None) != (sgx.max_count is None):
        missing = "minCount" if sgx.min_count is None else "maxCount"
        problems.append(
            Problem(
                f"cluster.sgxPool.{missing}",
                "is required when the other autoscaling bound is set",
                allowed="both minCount and maxCount, or neither",
            )
        )
    if sgx.min_count is not None and sgx.max_count is not None:
        if sgx.min_count > sgx.max_count:
            problems.append(
                Problem(
                    "cluster.sgxPool.minCount",
                    f"is greater than maxCount ({sgx.max_count})",
                    str(sgx.min_count),
                    f"0..{sgx.max_count}",
                )
            )
        elif not sgx.min_count <= sgx.count <= sgx.max_count:
            problems.append(
                Problem(
                    "cluster.sgxPool.count",
                    "is outside the autoscaling bounds",
                    str(sgx.count),
                    f"{sgx.min_count}..{sgx.max_count}",
                )
            )

    if settings.owner is None:
        problems.append(
            Problem(
                "owner",
                "is required for AKS stacks (Azure `owner` tag)",
                allowed="a team or person, e.g. platform-team",
            )
        )
    problems += set_but_inapplicable(
        cluster,
        "cluster",
        ("kubeconfig", "kubeconfig_path", "kubeconfig_context"),
        "only applies to provider existing",
        "unset with provider aks",
    )
    return problems


def _existing_problems(cluster: ClusterSettings) -> list[Problem]:
    problems: list[Problem] = []
    if (cluster.kubeconfig is None) == (cluster.kubeconfig_path is None):
        problems.append(
            Problem(
                "cluster.kubeconfig",
                "provider existing needs exactly one of kubeconfig (secret) or kubeconfigPath",
                allowed="kubeconfig or kubeconfigPath",
            )
        )
    aks_only = (
        "resource_group_name",
        "kubernetes_version",
        "system_pool",
        "sgx_pool",
        "sgx_quote_helper",
        "authorized_ip_ranges",
        "tags",
        "location",
        "acr_pull_registry_ids",
    )
    problems += set_but_inapplicable(
        cluster, "cluster", aks_only, "only applies to provider aks", "unset with provider existing", show_value=False
    )
    return problems
