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
    set_but_inapplicable,
)

if TYPE_CHECKING:
    from components.config.settings import Settings

# Enclave Page Cache per SGX VM size in MiB (Azure DCsv3 / DCdsv3 documentation).
# The single source for "which sizes are SGX sizes" and "how much EPC a node offers".
# DCsv3 and DCdsv3 take no new subscriptions since 2026-11-01 and retire on 2029-10-31, with no SGX successor
# (README "Prerequisites"): elsewhere, use an SGX cluster of your own with `cluster.provider: existing`.
SGX_EPC_MIB: dict[str, int] = {
    f"Standard_DC{cores}{series}_v3": gib * 1024
    for series in ("s", "ds")
    for cores, gib in ((1, 4), (2, 8), (4, 16), (8, 32), (16, 64), (24, 128), (32, 192), (48, 256))
}
# DCsv2 retired on 2026-06-30 (MicrosoftDocs azure-compute-docs, sizes/retirement/dcsv2-series-retirement.md).
# Its successor is the DCdsv3 size with the same vCPU count: DCsv2 VMs have a temporary disk, so they resize to
# DCdsv3, not to DCsv3.
DCSV2_RETIRED_ON = "2026-06-30"
DCSV2_SUCCESSORS: dict[str, str] = {
    "Standard_DC1s_v2": "Standard_DC1ds_v3",
    "Standard_DC2s_v2": "Standard_DC2ds_v3",
    "Standard_DC4s_v2": "Standard_DC4ds_v3",
    "Standard_DC8_v2": "Standard_DC8ds_v3",
}
# Programmatic names of Azure's public regions, from MicrosoftDocs/reliability-docs
# `articles/reliability/regions-list.md` (2025-09-23; the same names as `az account list-locations --query
# "[?metadata.regionType=='Physical'].name"`). Azure opens regions every year: add a new one here.
AZURE_REGIONS = frozenset(
    {
        "australiacentral",
        "australiacentral2",
        "australiaeast",
        "australiasoutheast",
        "austriaeast",
        "belgiumcentral",
        "brazilsouth",
        "brazilsoutheast",
        "canadacentral",
        "canadaeast",
        "centralindia",
        "centralus",
        "chilecentral",
        "denmarkeast",
        "eastasia",
        "eastus",
        "eastus2",
        "francecentral",
        "francesouth",
        "germanynorth",
        "germanywestcentral",
        "indonesiacentral",
        "israelcentral",
        "italynorth",
        "japaneast",
        "japanwest",
        "koreacentral",
        "koreasouth",
        "malaysiawest",
        "mexicocentral",
        "newzealandnorth",
        "northcentralus",
        "northeurope",
        "norwayeast",
        "norwaywest",
        "polandcentral",
        "qatarcentral",
        "southafricanorth",
        "southafricawest",
        "southcentralus",
        "southeastasia",
        "southindia",
        "spaincentral",
        "swedencentral",
        "switzerlandnorth",
        "switzerlandwest",
        "uaecentral",
        "uaenorth",
        "uksouth",
        "ukwest",
        "westcentralus",
        "westeurope",
        "westindia",
        "westus",
        "westus2",
        "westus3",
    }
)

_SGX_LOWER = {size.lower() for size in SGX_EPC_MIB}
_DCSV2_LOWER = {size.lower() for size in DCSV2_SUCCESSORS}
_SGX_SIZE_PATTERN = re.compile(r"^standard_dc\d+d?s?_v[23]$", re.IGNORECASE)
_K8S_VERSION = re.compile(r"^\d+\.\d+$")
_ACR_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/"
    r"[A-Za-z0-9]{5,50}$",
    re.IGNORECASE,
)
_TAG_FORBIDDEN = set("<>%&\\?/")
RESERVED_TAGS = ("environment", "stack", "owner", "expires-at")
# Azure Resource Manager's limits for tags (Azure docs, "Use tags to organize your Azure resources").
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256


def _region(value: str) -> str:
    if value not in AZURE_REGIONS:
        raise InvalidValueError(
            "is not an Azure region name (lower-case, no spaces)",
            "e.g. westeurope, swedencentral (`az account list-locations --query [].name`)",
        )
    return value


def _tags(value: dict[str, str]) -> dict[str, str]:
    # The messages name no tag: a tag name or value could come from a secret, and `got` shows the map where it
    # can be hidden.
    if any(key.lower() in RESERVED_TAGS for key in value):
        raise InvalidValueError("sets a tag the program sets", f"any name except {', '.join(RESERVED_TAGS)}")
    if any(not key or len(key) > TAG_NAME_MAX or _TAG_FORBIDDEN & set(key) for key in value):
        raise InvalidValueError("has a tag name Azure does not accept", "1-512 characters without <>%&\\?/")
    if any(len(tag_value) > TAG_VALUE_MAX for tag_value in value.values()):
        raise InvalidValueError("has a tag value longer than Azure accepts", f"at most {TAG_VALUE_MAX} characters")
    return value


def _sgx_size(value: str) -> str:
    if value.lower() in _DCSV2_LOWER:
        raise InvalidValueError(
            f"is a DCsv2 size: Azure retired DCsv2 on {DCSV2_RETIRED_ON}",
            "its successor, the DCdsv3 size with the same vCPU count (DCsv2 resizes to DCdsv3, not to DCsv3): "
            + ", ".join(f"{old} → {new}" for old, new in DCSV2_SUCCESSORS.items()),
        )
    if value not in SGX_EPC_MIB:
        spelt_otherwise = value.lower() in _SGX_LOWER
        raise InvalidValueError(
            "is not written as Azure names the size" if spelt_otherwise else "is not an SGX VM size (DCsv3 or DCdsv3)",
            ", ".join(SGX_EPC_MIB),
        )
    return value


def _general_purpose_size(value: str) -> str:
    if _SGX_SIZE_PATTERN.match(value):
        raise InvalidValueError(
            "must not be an SGX size: the System pool runs add-ons on general-purpose VMs",
            "a general-purpose size, e.g. Standard_D4s_v5",
        )
    return value


class SystemPool(Section):
    """The AKS System node pool: general-purpose VMs for cluster add-ons and the platform layers."""

    vm_size: Annotated[VmSize, AfterValidator(_general_purpose_size)] = Field(
        default="Standard_D4s_v5", description="VM size; general purpose, not an SGX (DC) size."
    )
    count: int = Field(default=2, ge=1, le=100, description="Number of nodes.")


class SgxPool(Section):
    """The User node pool of SGX-capable DC-series VMs that runs the enclave workloads."""

    vm_size: Annotated[str, AfterValidator(_sgx_size)] = Field(
        default="Standard_DC2s_v3", description="SGX VM size (DCsv3 or DCdsv3; DCsv2 is retired)."
    )
    count: int = Field(
        default=1, ge=0, le=1000, description="Initial node count; 0 needs autoscaling or `allowZeroCount`."
    )
    min_count: int | None = Field(
        default=None, ge=0, le=1000, description="Autoscaler lower bound (set with maxCount)."
    )
    max_count: int | None = Field(
        default=None, ge=1, le=1000, description="Autoscaler upper bound (set with minCount)."
    )
    allow_zero_count: bool = Field(
        default=False,
        description="Accept count 0 without autoscaling: no SGX node, so the secret store is down (pausing a stack).",
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
    location: Annotated[str, AfterValidator(_region)] = Field(
        default="westeurope", description="Azure region name, e.g. westeurope (must offer the SGX VM size)."
    )
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
        description="Container registries (resource IDs) the nodes may pull from, e.g. the EGo-OpenBao image's ACR.",
    )
    tags: Annotated[dict[str, str], AfterValidator(_tags)] = Field(
        default_factory=dict, description="Extra Azure tags for every resource (values up to 256 characters)."
    )
    kubeconfig: SecretStr | None = Field(
        default=None, min_length=1, description="`existing`: kubeconfig contents (set with --secret)."
    )
    kubeconfig_path: str | None = Field(
        default=None, min_length=1, description="`existing`: path to a kubeconfig file."
    )
    kubeconfig_context: str | None = Field(
        default=None, min_length=1, description="`existing`: context in the kubeconfig to use."
    )


def cluster_problems(settings: Settings) -> list[Problem]:
    """Rules of the cluster section that relate several of its keys or depend on the provider."""
    if settings.cluster.provider == "aks":
        return _pool_count_problems(settings) + _aks_only_problems(settings.cluster)
    return _existing_problems(settings.cluster)


def owner_problems(settings: Settings) -> list[Problem]:
    """AKS resources carry an `owner` tag: someone must answer for what a stack costs."""
    if settings.cluster.provider != "aks" or settings.owner is not None:
        return []
    return [
        Problem(
            "owner", "is required for AKS stacks (Azure `owner` tag)", allowed="a team or person, e.g. platform-team"
        )
    ]


def empty_sgx_pool_problems(settings: Settings) -> list[Problem]:
    """A pool of zero nodes cannot run the secret store: a first deploy waits for its pod until the release times
    out. On a running stack it is the way to stop paying for SGX VMs, so it takes a deliberate second key.
    (In simulation the secret store needs no SGX node.)"""
    sgx = settings.cluster.sgx_pool
    if settings.cluster.provider != "aks" or sgx.count != 0 or sgx.autoscaling or sgx.allow_zero_count:
        return []
    if settings.vault.sgx.simulation:
        return []
    return [
        Problem(
            "cluster.sgxPool.count",
            "is 0 without autoscaling: no SGX node runs the secret store (a first deploy fails at the release timeout)",
            "0",
            "1 or more; or 0 with cluster.sgxPool.allowZeroCount: true to pause a stack's SGX nodes",
        )
    ]


def _pool_count_problems(settings: Settings) -> list[Problem]:
    sgx = settings.cluster.sgx_pool
    problems: list[Problem] = []
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
        max_count = settings.shown("cluster.sgxPool.maxCount", sgx.max_count)
        if sgx.min_count > sgx.max_count:
            problems.append(
                Problem("cluster.sgxPool.minCount", "is greater than maxCount", str(sgx.min_count), f"0 to {max_count}")
            )
        elif not sgx.min_count <= sgx.count <= sgx.max_count:
            min_count = settings.shown("cluster.sgxPool.minCount", sgx.min_count)
            problems.append(
                Problem(
                    "cluster.sgxPool.count",
                    "is outside the autoscaling bounds",
                    str(sgx.count),
                    f"{min_count} to {max_count}",
                )
            )
    if sgx.count != 0 or sgx.autoscaling:
        problems += set_but_inapplicable(
            sgx,
            "cluster.sgxPool",
            ("allow_zero_count",),
            "only applies to count 0 without autoscaling",
            "unset",
        )
    return problems


def _aks_only_problems(cluster: ClusterSettings) -> list[Problem]:
    return set_but_inapplicable(
        cluster,
        "cluster",
        ("kubeconfig", "kubeconfig_path", "kubeconfig_context"),
        "only applies to provider existing",
        "unset with provider aks",
    )


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
