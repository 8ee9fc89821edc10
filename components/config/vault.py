"""`vault`: the secret store (OpenBao in an SGX enclave, the EGo-OpenBao image), and its rules.

The keys keep the name `vault`: OpenBao is API-compatible with HashiCorp Vault and clients call it a vault.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

from components.config.base import (
    InvalidValueError,
    KubernetesName,
    Problem,
    Quantity,
    Section,
    check,
    quantity_mib,
    render_value,
)
from components.config.cluster import SGX_EPC_MIB
from components.config.database import DatabaseSettings, StorageKind
from components.config.seal import VaultUnsealSettings

if TYPE_CHECKING:
    from components.config.settings import Settings

IMAGE_EXAMPLE = "myregistry.azurecr.io/ego-openbao"
# The reference grammar of distribution/reference (what `docker pull` and the kubelet accept): an optional
# registry host[:port], then lower-case path components.
_REGISTRY = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::\d+)?/)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_REGISTRY}?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


def _repository(value: str) -> str:
    # The chart renders `repository:tag`: a tag or digest here as well deploys `…:1.2:1.2`, which no registry has.
    if "@" in value:
        raise InvalidValueError(
            "contains a digest: set it in vault.image.digest", f"the repository alone, e.g. {IMAGE_EXAMPLE}"
        )
    if ":" in value.rsplit("/", 1)[-1]:
        raise InvalidValueError(
            "contains a tag: set it in vault.image.tag", f"the repository alone, e.g. {IMAGE_EXAMPLE}"
        )
    if not _REPOSITORY.match(value):
        raise InvalidValueError("is not an image repository", f"[registry/]lower-case path, e.g. {IMAGE_EXAMPLE}")
    return value


def _tag(value: str) -> str:
    if not value:
        raise InvalidValueError("is empty: the image would be pulled as `latest`", "a tag, e.g. 2.6.2-ego1.9.0")
    if not _TAG.match(value):
        raise InvalidValueError(
            "is not an image tag", "up to 128 of letters, digits, '_', '.', '-', not starting with . or -"
        )
    return value


class VaultImage(Section):
    """The signed EGo-OpenBao image (built from images/ego-openbao)."""

    repository: Annotated[str, AfterValidator(_repository)] = Field(
        min_length=1, description=f"Image repository without tag or digest, e.g. {IMAGE_EXAMPLE}."
    )
    tag: Annotated[str, AfterValidator(_tag)] | None = Field(
        default=None, description="Image tag, e.g. 2.6.2-ego1.9.0."
    )
    digest: (
        Annotated[str, check(re.compile(r"^sha256:[0-9a-f]{64}$"), "is not an image digest", "sha256:<64 hex digits>")]
        | None
    ) = Field(default=None, description="Image digest (preferred: immutable).")


class VaultSgx(Section):
    """How the secret store uses SGX."""

    simulation: bool = Field(default=False, description="Run the enclave in simulation mode (no SGX; never on prod).")


EnclaveMeasurement = Annotated[
    str, check(re.compile(r"^[0-9a-f]{64}$"), "is not an enclave measurement", "64 lower-case hex digits")
]


# SGX keeps the product ID and the security version in 16 bits (ISVPRODID, ISVSVN); 0 is what an enclave.json without
# them gets, never a deliberate release.
SGX_UINT16_MAX = 65535
# The lowest security version anything may trust: builds before 3 let the host replace the enclave's configuration
# (EGo's MarbleRun premain) and attest neither the store nor the previous seal key (images/ego-openbao/README.md).
MIN_SECURITY_VERSION = 3


class VaultEnclave(Section):
    """The enclave identity clients expect (printed by the image build); scripts/verify.py checks it."""

    unique_id: EnclaveMeasurement | None = Field(
        default=None, description="MRENCLAVE (`ego uniqueid`): pins one exact build; optional."
    )
    signer_id: EnclaveMeasurement | None = Field(
        default=None, description="MRSIGNER (`ego signerid`); required on prod."
    )
    product_id: int | None = Field(
        default=None,
        ge=1,
        le=SGX_UINT16_MAX,
        description="SGX product ID (enclave.json `productID`); required on prod.",
    )
    security_version: int | None = Field(
        default=None,
        ge=MIN_SECURITY_VERSION,
        le=SGX_UINT16_MAX,
        description="Lowest SGX security version clients accept (enclave.json `securityVersion`); required on prod.",
    )


# Regional shared providers of Microsoft Azure Attestation: the table "Regional shared provider" of MicrosoftDocs
# azure-docs `articles/attestation/basic-concepts.md` (2021 revisions; later ones dropped the table). Every region has
# one; for a region not listed, ask Azure (README "Attested endpoint and threat model" says how) and set
# `vault.attestation.providerUrl`.
SHARED_ATTESTATION_PROVIDERS: dict[str, str] = {
    "eastus": "https://sharedeus.eus.attest.azure.net",
    "eastus2": "https://sharedeus2.eus2.attest.azure.net",
    "centralus": "https://sharedcus.cus.attest.azure.net",
    "westus": "https://sharedwus.wus.attest.azure.net",
    "canadacentral": "https://sharedcac.cac.attest.azure.net",
    "canadaeast": "https://sharedcae.cae.attest.azure.net",
    "northeurope": "https://sharedneu.neu.attest.azure.net",
    "westeurope": "https://sharedweu.weu.attest.azure.net",
    "uksouth": "https://shareduks.uks.attest.azure.net",
    "ukwest": "https://sharedukw.ukw.attest.azure.net",
}
PROVIDER_EXAMPLE = "https://<provider>.<region>.attest.azure.net, e.g. https://sharedweu.weu.attest.azure.net"


def _provider_url(value: str) -> str:
    # MAA writes this URL as the token's issuer: the form clients compare against, so no path and no trailing slash.
    try:
        parsed = urllib.parse.urlsplit(value)
        parsed.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        raise InvalidValueError("is not a URL", PROVIDER_EXAMPLE) from None
    if parsed.scheme != "https" or not parsed.hostname or "@" in parsed.netloc:
        raise InvalidValueError("is not an https URL naming a host", PROVIDER_EXAMPLE)
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise InvalidValueError("has a path, query or fragment", f"the provider's base URL, {PROVIDER_EXAMPLE}")
    return f"https://{parsed.netloc.lower()}"


class VaultAttestation(Section):
    """Microsoft Azure Attestation, which vouches for the enclave's listener key (README, threat model)."""

    provider_url: Annotated[str, AfterValidator(_provider_url)] | None = Field(
        default=None,
        description="MAA provider URL; default: the regional shared provider of `cluster.location` (aks).",
    )


# OpenBao's cluster_id (`uuid.GenerateUUID`): lower-case 8-4-4-4-12 hex, as `bao read sys/health` prints it (`\Z`:
# `$` would let a trailing newline through).
CLUSTER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
CLUSTER_ID_ALLOWED = "the store's cluster id as `scripts/verify.py --record-cluster-id` prints it (a lower-case UUID)"


class VaultSettings(Section):
    """OpenBao, the secret store, in an SGX enclave (the signed EGo-OpenBao image)."""

    mode: Literal["server", "dev"] = Field(
        default="server", description="`server` (persistent) or `dev` (dev/ephemeral only)."
    )
    image: VaultImage | None = Field(default=None, description="The EGo-OpenBao image (required).")
    epc: Quantity = Field(
        default="1536Mi",
        description="Enclave page cache requested by the OpenBao pod: about the enclave's size (heap + binary).",
    )
    sgx: VaultSgx = Field(default_factory=lambda: VaultSgx(), description="SGX options.")
    enclave: VaultEnclave = Field(default_factory=lambda: VaultEnclave(), description="Expected enclave identity.")
    cluster_id: Annotated[str, check(CLUSTER_ID, "is not a store cluster id", CLUSTER_ID_ALLOWED)] | None = Field(
        default=None,
        description="The store clients trust: OpenBao's cluster id, set after the first `bao operator init` "
        "(`scripts/verify.py --record-cluster-id` prints the command); unset: not pinned, clients refuse an "
        "initialised store.",
    )
    attestation: VaultAttestation = Field(
        default_factory=lambda: VaultAttestation(), description="Remote attestation of the enclave."
    )
    unseal: VaultUnsealSettings = Field(
        default_factory=lambda: VaultUnsealSettings(),
        description="How OpenBao unseals: Shamir shares or the attested Key Vault key.",
    )
    storage_size: Quantity = Field(default="10Gi", description="Size of OpenBao's data volume.")
    storage: StorageKind | None = Field(
        default=None,
        description="`postgresql` (HA, managed backups) or `file` (deprecated: one server, removed in OpenBao 2.7); "
        "default postgresql on AKS in server mode, else file.",
    )
    database: DatabaseSettings = Field(
        default_factory=lambda: DatabaseSettings(), description="PostgreSQL for `storage: postgresql`."
    )
    injector: bool = Field(default=False, description="Deploy the OpenBao agent injector.")
    client_namespaces: list[KubernetesName] = Field(
        default_factory=list,
        description="Namespaces whose pods may call OpenBao on port 8200 directly (besides Traefik and Prometheus).",
    )

    @property
    def exposes_metrics(self) -> bool:
        """Only the server has Prometheus telemetry; the dev server's metrics need a token."""
        return self.mode == "server"

    @property
    def tls_in_enclave(self) -> bool:
        """Server mode: TLS ends inside the enclave on its attested key. The dev server listens in plain HTTP."""
        return self.mode == "server"

    @property
    def attests(self) -> bool:
        """Whether the enclave obtains attestation tokens (server mode on SGX hardware)."""
        return self.tls_in_enclave and not self.sgx.simulation


def attestation_provider_url(settings: Settings) -> str | None:
    """The MAA provider the enclave asks and clients trust: configured, else the shared one of the AKS region."""
    configured = settings.vault.attestation.provider_url
    if configured is not None:
        return configured
    if settings.cluster.provider != "aks":
        return None
    return SHARED_ATTESTATION_PROVIDERS.get(settings.cluster.location)


def vault_image_problems(settings: Settings) -> list[Problem]:
    """The secret store needs its signed image, pinned by a tag or a digest."""
    image = settings.vault.image
    if image is None:
        return [
            Problem(
                "vault.image",
                "is required: the signed EGo-OpenBao image (see images/ego-openbao)",
                allowed="{repository, tag or digest}",
            )
        ]
    if image.tag is None and image.digest is None:
        return [Problem("vault.image", "needs a tag or a digest", allowed="tag: <tag> or digest: sha256:<hex>")]
    return []


def vault_environment_problems(settings: Settings) -> list[Problem]:
    """Prod stacks get the persistent server with SGX protection, nothing less."""
    vault = settings.vault
    if settings.environment != "prod":
        return []
    problems: list[Problem] = []
    if vault.mode == "dev":
        problems.append(Problem("vault.mode", "dev mode is refused on prod stacks", render_value(vault.mode), "server"))
    if vault.sgx.simulation:
        problems.append(
            Problem("vault.sgx.simulation", "simulation is refused on prod stacks (no SGX protection)", "true", "false")
        )
    identity = (
        ("signerId", vault.enclave.signer_id, "64 lower-case hex digits (`ego signerid`, printed by the image build)"),
        ("productId", vault.enclave.product_id, "enclave.json `productID` of the image, 1 to 65535"),
        (
            "securityVersion",
            vault.enclave.security_version,
            f"the lowest enclave.json `securityVersion` clients accept, {MIN_SECURITY_VERSION} to {SGX_UINT16_MAX}",
        ),
    )
    problems += [
        Problem(
            f"vault.enclave.{key}", "is required on prod stacks: clients verify the enclave against it", None, allowed
        )
        for key, value, allowed in identity
        if value is None
    ]
    return problems


def vault_attestation_problems(settings: Settings) -> list[Problem]:
    """An enclave that attests needs a provider: the configured one, or the shared provider of the AKS region."""
    if not settings.vault.attests or attestation_provider_url(settings) is not None:
        return []
    cluster = settings.cluster
    if cluster.provider != "aks":
        reason = "is required on existing clusters (no cluster.location to take the regional shared provider from)"
    else:
        location = settings.shown("cluster.location", cluster.location)
        reason = f"is required: no shared provider is listed here for cluster.location {location}"
    return [Problem("vault.attestation.providerUrl", reason, allowed=PROVIDER_EXAMPLE)]


def vault_epc_problems(settings: Settings) -> list[Problem]:
    """The enclave must fit the EPC of one node of the SGX pool, or its pod is never scheduled."""
    cluster = settings.cluster
    vault = settings.vault
    if cluster.provider != "aks" or vault.sgx.simulation or cluster.sgx_pool.vm_size not in SGX_EPC_MIB:
        return []
    capacity = cluster.sgx_pool.epc_mib
    if quantity_mib(vault.epc) <= capacity:
        return []
    vm_size = settings.shown("cluster.sgxPool.vmSize", cluster.sgx_pool.vm_size)
    return [
        Problem(
            "vault.epc",
            f"exceeds the EPC of one {vm_size} node",
            render_value(vault.epc),
            f"at most {settings.shown('cluster.sgxPool.vmSize', capacity)}Mi",
        )
    ]
