"""`vault`: the secret store in its SGX enclave, and its rules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from components.config.base import KubernetesName, Problem, Quantity, Section, check, quantity_mib, render_value
from components.config.cluster import SGX_EPC_MIB

if TYPE_CHECKING:
    from components.config.settings import Settings


class VaultImage(Section):
    """The signed EGo-Vault image (see images/ego-vault)."""

    repository: str = Field(min_length=1, description="Image repository, e.g. myregistry.azurecr.io/ego-vault.")
    tag: str | None = Field(default=None, description="Image tag.")
    digest: (
        Annotated[str, check(re.compile(r"^sha256:[0-9a-f]{64}$"), "is not an image digest", "sha256:<64 hex digits>")]
        | None
    ) = Field(default=None, description="Image digest (preferred: immutable).")


class VaultSgx(Section):
    """How Vault uses SGX."""

    simulation: bool = Field(default=False, description="Run the enclave in simulation mode (no SGX; never on prod).")


EnclaveMeasurement = Annotated[
    str, check(re.compile(r"^[0-9a-f]{64}$"), "is not an enclave measurement", "64 lower-case hex digits")
]


class VaultEnclave(Section):
    """The enclave identity clients should expect (printed by the image build)."""

    unique_id: EnclaveMeasurement | None = Field(default=None, description="MRENCLAVE (`ego uniqueid`).")
    signer_id: EnclaveMeasurement | None = Field(default=None, description="MRSIGNER (`ego signerid`).")


class VaultSettings(Section):
    """HashiCorp Vault in an SGX enclave."""

    mode: Literal["server", "dev"] = Field(
        default="server", description="`server` (persistent) or `dev` (dev/ephemeral only)."
    )
    image: VaultImage | None = Field(default=None, description="The EGo-Vault image (required).")
    epc: Quantity = Field(
        default="1536Mi",
        description="Enclave page cache requested by the Vault pod: about the enclave's size (heap + binary).",
    )
    sgx: VaultSgx = Field(default_factory=lambda: VaultSgx(), description="SGX options.")
    enclave: VaultEnclave = Field(default_factory=lambda: VaultEnclave(), description="Expected enclave identity.")
    storage_size: Quantity = Field(default="10Gi", description="Size of Vault's data volume.")
    injector: bool = Field(default=False, description="Deploy the Vault agent injector.")
    client_namespaces: list[KubernetesName] = Field(
        default_factory=list,
        description="Namespaces whose pods may call Vault on port 8200 directly (besides Traefik and Prometheus).",
    )

    @property
    def exposes_metrics(self) -> bool:
        """Only the server has Prometheus telemetry; the dev server's metrics need a token."""
        return self.mode == "server"


def vault_problems(settings: Settings) -> list[Problem]:
    """Vault rules that depend on the environment or on the cluster."""
    problems: list[Problem] = []
    env = settings.environment
    cluster = settings.cluster
    vault = settings.vault
    if vault.image is None:
        problems.append(
            Problem(
                "vault.image",
                "is required: the signed EGo-Vault image (see images/ego-vault)",
                allowed="{repository, tag or digest}",
            )
        )
    elif vault.image.tag is None and vault.image.digest is None:
        problems.append(Problem("vault.image", "needs a tag or a digest", allowed="tag: <tag> or digest: sha256:<hex>"))
    if env == "prod" and vault.mode == "dev":
        problems.append(Problem("vault.mode", "dev mode is refused on prod stacks", render_value(vault.mode), "server"))
    if env == "prod" and vault.sgx.simulation:
        problems.append(
            Problem("vault.sgx.simulation", "simulation is refused on prod stacks (no SGX protection)", "true", "false")
        )
    if cluster.provider == "aks" and not vault.sgx.simulation and cluster.sgx_pool.vm_size in SGX_EPC_MIB:
        capacity = cluster.sgx_pool.epc_mib
        if quantity_mib(vault.epc) > capacity:
            problems.append(
                Problem(
                    "vault.epc",
                    f"exceeds the EPC of one {cluster.sgx_pool.vm_size} node",
                    render_value(vault.epc),
                    f"at most {capacity}Mi",
                )
            )
    return problems
