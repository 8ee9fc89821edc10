"""Stack settings: the pydantic models for every `confidential-vault:*` config key.

This is the one place that parses and validates configuration. `load_settings` turns the raw
Pulumi config of a stack into a `Settings` object or raises `ConfigError` listing every problem
as `confidential-vault:<dotted.path>: <what is wrong> (got <value>; allowed: <...>)`.
Components never read `pulumi.Config`; they receive the parts of `Settings` they need.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic.alias_generators import to_camel

NAMESPACE = "confidential-vault"

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
_VM_SIZE_PATTERN = re.compile(r"^Standard_[A-Za-z0-9_]+$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_K8S_VERSION = re.compile(r"^\d+\.\d+$")
_ACR_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.ContainerRegistry/registries/"
    r"[A-Za-z0-9]{5,50}$",
    re.IGNORECASE,
)
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti)$")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TAG_FORBIDDEN = set("<>%&\\?/")
RESERVED_TAGS = ("environment", "stack", "owner", "expires-at")
_QUANTITY_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


class InvalidValueError(ValueError):
    """A field-level problem; `allowed` is shown after the offending value."""

    def __init__(self, message: str, allowed: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.allowed = allowed


def _check(pattern: re.Pattern[str], message: str, allowed: str) -> AfterValidator:
    def validate(value: str) -> str:
        if not pattern.match(value):
            raise InvalidValueError(message, allowed)
        return value

    return AfterValidator(validate)


def _dns_name(value: str) -> str:
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        raise InvalidValueError(
            "is not a valid DNS name",
            "lower-case labels of a-z, 0-9 and '-', at least two labels, at most 253 characters",
        )
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise InvalidValueError(f"is not a valid CIDR range ({error})", "e.g. 203.0.113.0/24") from None
    return value


def _tags(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if key.lower() in RESERVED_TAGS:
            raise InvalidValueError(f"tag '{key}' is set by the program", f"any name except {', '.join(RESERVED_TAGS)}")
        if not key or len(key) > 512 or _TAG_FORBIDDEN & set(key):
            raise InvalidValueError(f"tag name '{key}' is not accepted by Azure", "1-512 characters without <>%&\\?/")
    return value


def quantity_mib(quantity: str) -> float:
    """Convert a Kubernetes binary quantity such as `64Mi` to MiB."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"not a binary quantity: {quantity}")
    return int(match.group(1)) * _QUANTITY_MIB[match.group(2)]


DnsName = Annotated[str, AfterValidator(_dns_name)]
Quantity = Annotated[str, _check(_QUANTITY, "is not a Kubernetes quantity", "e.g. 64Mi, 10Gi")]
Duration = Annotated[str, _check(_DURATION, "is not a duration", "e.g. 15d, 12h, 4w")]
VmSize = Annotated[str, _check(_VM_SIZE_PATTERN, "is not an Azure VM size name", "e.g. Standard_D4s_v5")]
KubernetesName = Annotated[
    str, _check(_K8S_NAME, "is not a valid Kubernetes name", "lower-case a-z, 0-9 and '-', at most 63 characters")
]


class _Section(BaseModel):
    """Base for every config object: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        hide_input_in_errors=False,
    )


class SystemPool(_Section):
    """The AKS System node pool: general-purpose VMs for cluster add-ons and the platform layers."""

    vm_size: VmSize = Field(default="Standard_D4s_v5", description="VM size; general purpose, not an SGX (DC) size.")
    count: int = Field(default=2, ge=1, le=100, description="Number of nodes.")


class SgxPool(_Section):
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


class ClusterSettings(_Section):
    """Where the platform runs: a new AKS cluster with SGX nodes, or an existing cluster."""

    provider: Literal["aks", "existing"] = Field(
        default="aks", description="`aks` creates the cluster; `existing` uses a kubeconfig."
    )
    location: str = Field(default="westeurope", description="Azure region (must offer the SGX VM size).")
    resource_group_name: (
        Annotated[str, _check(_RESOURCE_GROUP, "is not a valid resource group name", "1-90 of letters, digits, -._()")]
        | None
    ) = Field(default=None, description="Resource group to create; default `cv-<stack>`.")
    kubernetes_version: (
        Annotated[
            str,
            _check(
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
    authorized_ip_ranges: list[Annotated[str, AfterValidator(_cidr)]] = Field(
        default_factory=list, description="CIDRs allowed to reach the API server; empty means any."
    )
    acr_pull_registry_ids: list[
        Annotated[
            str,
            _check(
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


class AcmeSettings(_Section):
    """Let's Encrypt certificates for the public routes."""

    email: Annotated[str, _check(_EMAIL, "is not an e-mail address", "name@domain")] | None = Field(
        default=None, description="Contact address registered with Let's Encrypt (required)."
    )
    server: Literal["staging", "production"] | None = Field(
        default=None, description="Let's Encrypt CA; default production on prod stacks, staging elsewhere."
    )
    challenge: Literal["tls", "http"] = Field(default="tls", description="ACME challenge type.")


class DnsSettings(_Section):
    """An Azure DNS zone in which the program maintains the platform's A records (AKS stacks only)."""

    zone_name: DnsName = Field(description="DNS zone name; the stack domain must be in it.")
    resource_group_name: Annotated[
        str, _check(_RESOURCE_GROUP, "is not a valid resource group name", "1-90 of letters, digits, -._()")
    ] = Field(description="Resource group of the DNS zone.")


def _dashboard_password(value: SecretStr) -> SecretStr:
    # bcrypt (>= 5) refuses passwords over 72 bytes; the dashboard faces the internet, so no short ones.
    if not 12 <= len(value.get_secret_value().encode()) <= 72:
        raise InvalidValueError("has the wrong length", "12 to 72 bytes")
    return value


class EdgeSettings(_Section):
    """Traefik: the single entry point and its dashboard."""

    dashboard_user: Annotated[
        str, _check(re.compile(r"^[^:\s]{1,64}$"), "is not a valid BasicAuth user", "1-64 characters, no ':' or spaces")
    ] = Field(default="admin", description="BasicAuth user of the Traefik dashboard.")
    dashboard_password: Annotated[SecretStr, AfterValidator(_dashboard_password)] | None = Field(
        default=None, description="Dashboard password, 12-72 bytes (--secret); generated if unset."
    )


class MonitoringSettings(_Section):
    """kube-prometheus-stack: Prometheus, Alertmanager and Grafana."""

    enabled: bool = Field(default=True, description="Deploy the monitoring stack.")
    grafana_admin_user: str = Field(default="admin", min_length=1, description="Grafana admin user name.")
    grafana_admin_password: SecretStr | None = Field(
        default=None, description="Grafana admin password (--secret); generated if unset."
    )
    prometheus_retention: Duration = Field(default="15d", description="How long Prometheus keeps samples.")
    prometheus_storage_size: Quantity = Field(
        default="20Gi", description="Prometheus volume size; samples are also dropped at 85% of it."
    )
    grafana_storage_size: Quantity = Field(default="5Gi", description="Grafana volume size.")
    storage_class: KubernetesName | None = Field(
        default=None, description="Storage class of the Prometheus and Grafana volumes; unset means the default."
    )


# Argo CD clones over HTTPS or SSH; plain http:// and local paths are refused (no integrity, not reachable).
_GIT_URL = re.compile(r"^(https://[^\s/]+/\S+|ssh://[^\s/]+/\S+|[\w.-]+@[\w.-]+:[^\s/]\S*)$")
# Namespaces of the cluster and of the platform itself: GitOps applications must not deploy into them.
PLATFORM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "argocd", "traefik", "monitoring", "vault")


def _git_url(value: str) -> str:
    # URLs with credentials pass here and are refused by `_argocd_problems`, which can hide them in the message.
    if not _GIT_URL.match(value):
        raise InvalidValueError(
            "is not a Git repository URL",
            "https://host/org/repo.git, git@host:org/repo.git or ssh://git@host/org/repo.git",
        )
    return value


def _repo_path(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise InvalidValueError("must be a path inside the repository", "a relative path without '..', e.g. apps/web")
    return value


class ArgoApplication(_Section):
    """One Argo CD Application managed by the program."""

    name: KubernetesName = Field(description="Application name (unique).")
    repo_url: Annotated[str, AfterValidator(_git_url)] = Field(
        alias="repoURL", description="Git repository URL (https:// or SSH)."
    )
    path: Annotated[str, AfterValidator(_repo_path)] = Field(
        default=".", min_length=1, description="Path inside the repository."
    )
    target_revision: str = Field(default="HEAD", min_length=1, description="Branch, tag or commit.")
    namespace: KubernetesName = Field(description="Destination namespace (created on sync; not a platform namespace).")
    automated: bool = Field(default=True, description="Automated sync with prune and self-heal.")


def _bcrypt_password(value: SecretStr) -> SecretStr:
    # bcrypt ignores (bcrypt>=5: refuses) bytes beyond 72; 8 is the minimum of Argo CD's own password policy.
    if not 8 <= len(value.get_secret_value().encode()) <= 72:
        raise InvalidValueError("has the wrong length", "8 to 72 bytes")
    return value


class ArgoCdSettings(_Section):
    """Argo CD and the GitOps applications it manages."""

    enabled: bool = Field(default=True, description="Deploy Argo CD.")
    admin_password: Annotated[SecretStr, AfterValidator(_bcrypt_password)] | None = Field(
        default=None, description="Admin password (--secret, 8-72 bytes); generated if unset."
    )
    applications: list[ArgoApplication] = Field(
        default_factory=list, description="GitOps applications, all in one AppProject limited to their namespaces."
    )


class VaultImage(_Section):
    """The signed EGo-Vault image (see images/ego-vault)."""

    repository: str = Field(min_length=1, description="Image repository, e.g. myregistry.azurecr.io/ego-vault.")
    tag: str | None = Field(default=None, description="Image tag.")
    digest: (
        Annotated[str, _check(re.compile(r"^sha256:[0-9a-f]{64}$"), "is not an image digest", "sha256:<64 hex digits>")]
        | None
    ) = Field(default=None, description="Image digest (preferred: immutable).")


class VaultSgx(_Section):
    """How Vault uses SGX."""

    simulation: bool = Field(default=False, description="Run the enclave in simulation mode (no SGX; never on prod).")


EnclaveMeasurement = Annotated[
    str, _check(re.compile(r"^[0-9a-f]{64}$"), "is not an enclave measurement", "64 lower-case hex digits")
]


class VaultEnclave(_Section):
    """The enclave identity clients should expect (printed by the image build)."""

    unique_id: EnclaveMeasurement | None = Field(default=None, description="MRENCLAVE (`ego uniqueid`).")
    signer_id: EnclaveMeasurement | None = Field(default=None, description="MRSIGNER (`ego signerid`).")


class VaultSettings(_Section):
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


class Settings(_Section):
    """The whole stack configuration under the `confidential-vault:` namespace."""

    environment: Literal["dev", "prod", "ephemeral"] = Field(description="Kind of stack; drives safe defaults.")
    domain: DnsName = Field(description="Base domain; services are published as <service>.<domain>.")
    owner: str | None = Field(
        default=None, min_length=1, description="Team or person owning the stack (Azure `owner` tag)."
    )
    expires_at: datetime | None = Field(default=None, description="Ephemeral stacks: UTC expiry time (ISO 8601).")
    cluster: ClusterSettings = Field(default_factory=lambda: ClusterSettings(), description="Cluster settings.")
    acme: AcmeSettings = Field(default_factory=lambda: AcmeSettings(), description="Let's Encrypt settings.")
    dns: DnsSettings | None = Field(
        default=None, description="Azure DNS zone to manage records in; unset means manual DNS."
    )
    edge: EdgeSettings = Field(default_factory=lambda: EdgeSettings(), description="Traefik settings.")
    monitoring: MonitoringSettings = Field(
        default_factory=lambda: MonitoringSettings(), description="Monitoring settings."
    )
    argocd: ArgoCdSettings = Field(default_factory=lambda: ArgoCdSettings(), description="Argo CD settings.")
    vault: VaultSettings = Field(default_factory=lambda: VaultSettings(), description="Vault settings.")

    @property
    def protected(self) -> bool:
        """Prod resources are protected so `pulumi destroy` cannot delete them by accident."""
        return self.environment == "prod"

    @property
    def acme_server(self) -> Literal["staging", "production"]:
        if self.acme.server is not None:
            return self.acme.server
        return "production" if self.environment == "prod" else "staging"

    def host(self, service: str) -> str:
        """Public host name of a service, e.g. `vault.<domain>`."""
        return f"{service}.{self.domain}"


@dataclass(frozen=True)
class Problem:
    """One config problem, rendered in the operator-facing format."""

    path: str
    message: str
    got: str | None = None
    allowed: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.got is not None:
            parts.append(f"got {self.got}")
        if self.allowed:
            parts.append(f"allowed: {self.allowed}")
        details = "; ".join(parts)
        return f"{NAMESPACE}:{self.path}: {self.message}" + (f" ({details})" if details else "")


class ConfigError(Exception):
    """Stack configuration is invalid; `problems` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


def load_settings(raw: Mapping[str, str], secret_keys: Iterable[str] = ()) -> Settings:
    """Validate the raw Pulumi config of a stack.

    `raw` maps full config keys (`confidential-vault:cluster`) to their string values as the Pulumi
    engine passes them (objects and lists JSON-encoded); keys of other namespaces are ignored.
    `secret_keys` names the keys set with `--secret`.
    """
    secret_top_level = {key.removeprefix(f"{NAMESPACE}:") for key in secret_keys}
    data: dict[str, Any] = {}
    for full_key, value in raw.items():
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE:
            data[key] = _decode(value)

    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError([_problem_from(detail, secret_top_level) for detail in error.errors()]) from None

    problems = _secret_problems(settings, secret_top_level) + _semantic_problems(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _model_at(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at `path` (aliases), or None inside free-form data."""
    model: type[BaseModel] = Settings
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return None
        nested = _model_in(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_secret_field(path: tuple[str | int, ...]) -> bool:
    model = _model_at(path)
    if model is None or not path or isinstance(path[-1], int):
        return False
    field = next((f for name, f in model.model_fields.items() if (f.alias or name) == path[-1]), None)
    return field is not None and _contains(field.annotation, SecretStr)


def _contains(annotation: Any, target: type) -> bool:
    return annotation is target or any(_contains(arg, target) for arg in get_args(annotation))


def _allowed_keys(path: tuple[str | int, ...]) -> str:
    model = _model_at(path)
    if model is None:
        return ""
    return ", ".join(sorted(f.alias or name for name, f in model.model_fields.items()))


def _render(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


# Pydantic's own wording for type errors is written for developers; operators get these instead.
_TYPE_MESSAGES: dict[str, tuple[str, str]] = {
    "bool_parsing": ("is not a boolean", "true or false"),
    "bool_type": ("is not a boolean", "true or false"),
    "int_parsing": ("is not a whole number", "e.g. 3"),
    "int_type": ("is not a whole number", "e.g. 3"),
    "int_from_float": ("is not a whole number", "e.g. 3"),
    "string_type": ("is not a string", "a quoted value"),
    "list_type": ("is not a list", "a YAML list"),
    "dict_type": ("is not a map", "a YAML mapping"),
    "model_type": ("is not an object", "a YAML mapping of its keys"),
    "model_attributes_type": ("is not an object", "a YAML mapping of its keys"),
    "datetime_parsing": ("is not a time", "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"),
    "datetime_from_date_parsing": ("is not a time", "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"),
    "datetime_type": ("is not a time", "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"),
}


def _problem_from(detail: Mapping[str, Any], secret_top_level: set[str]) -> Problem:
    loc: tuple[str | int, ...] = tuple(detail["loc"])
    path = ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in loc).replace(".[", "[")
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    secret = _is_secret_field(loc) or (bool(loc) and loc[0] in secret_top_level and kind == "extra_forbidden")
    got = "[secret]" if secret else _render(detail.get("input"))

    if kind == "extra_forbidden":
        return Problem(path, "unknown key", allowed=_allowed_keys(loc))
    if kind == "missing":
        return Problem(path, "is required")
    if kind in _TYPE_MESSAGES:
        message, allowed = _TYPE_MESSAGES[kind]
        return Problem(path, message, got, allowed)
    if kind == "literal_error":
        return Problem(path, "is not a known value", got, ctx.get("expected", "").replace("'", ""))
    error = ctx.get("error")
    if isinstance(error, InvalidValueError):
        return Problem(path, error.message, got, error.allowed)
    message = detail["msg"][0].lower() + detail["msg"][1:]
    return Problem(path, message, got)


def _secret_problems(settings: Settings, secret_top_level: set[str]) -> list[Problem]:
    """Secret fields must come from `pulumi config set --secret`, never from plaintext stack files."""
    problems = []
    for path in _set_secret_paths(settings, ()):
        if path[0] not in secret_top_level:
            dotted = ".".join(path)
            problems.append(
                Problem(
                    dotted,
                    f"is a secret but stored in plaintext; set it with "
                    f"`pulumi config set --secret --path {NAMESPACE}:{dotted}`",
                    "[hidden]",
                )
            )
    return problems


def _set_secret_paths(model: BaseModel, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        key = (*prefix, field.alias or name)
        if isinstance(value, SecretStr):
            paths.append(key)
        elif isinstance(value, BaseModel):
            paths.extend(_set_secret_paths(value, key))
    return paths


def _semantic_problems(settings: Settings) -> list[Problem]:
    """Rules that relate several keys or depend on the environment."""
    problems: list[Problem] = []
    env = settings.environment
    cluster = settings.cluster

    if env == "ephemeral" and settings.expires_at is None:
        problems.append(
            Problem(
                "expiresAt", "is required on ephemeral stacks", allowed="UTC ISO 8601 time, e.g. 2026-12-01T12:00:00Z"
            )
        )
    if env != "ephemeral" and settings.expires_at is not None:
        problems.append(
            Problem("expiresAt", "only applies to ephemeral stacks", settings.expires_at.isoformat(), "unset")
        )
    if settings.expires_at is not None and settings.expires_at.utcoffset() is None:
        problems.append(
            Problem(
                "expiresAt",
                "needs a time zone",
                settings.expires_at.isoformat(),
                "UTC ISO 8601 time, e.g. 2026-12-01T12:00:00Z",
            )
        )

    problems += _monitoring_problems(settings)
    if cluster.provider == "aks":
        problems += _aks_problems(settings)
    else:
        problems += _existing_problems(cluster)
    problems += _argocd_problems(settings)

    problems += _edge_problems(settings)
    problems += _vault_problems(settings)
    return problems


def _edge_problems(settings: Settings) -> list[Problem]:
    """Let's Encrypt, DNS and Traefik rules that relate several keys."""
    problems: list[Problem] = []
    if settings.acme.email is None:
        problems.append(Problem("acme.email", "is required (Let's Encrypt account contact)", allowed="name@domain"))

    if settings.dns is not None:
        zone = settings.dns.zone_name
        if settings.domain != zone and not settings.domain.endswith(f".{zone}"):
            problems.append(
                Problem(
                    "dns.zoneName",
                    f"does not contain the domain {settings.domain}",
                    _render(zone),
                    f"{settings.domain} or a parent zone of it",
                )
            )
        if settings.cluster.provider == "existing":
            problems.append(
                Problem(
                    "dns",
                    "needs cluster.provider aks: the records point at the static IP the program creates there",
                    allowed="unset with provider existing (create the records listed in the dnsRecords output)",
                )
            )
    return problems


def _vault_problems(settings: Settings) -> list[Problem]:
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
        problems.append(Problem("vault.mode", "dev mode is refused on prod stacks", _render(vault.mode), "server"))
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
                    _render(vault.epc),
                    f"at most {capacity}Mi",
                )
            )
    return problems


def _aks_problems(settings: Settings) -> list[Problem]:
    cluster = settings.cluster
    problems: list[Problem] = []
    sgx = cluster.sgx_pool

    if sgx.vm_size not in SGX_EPC_MIB:
        problems.append(
            Problem(
                "cluster.sgxPool.vmSize",
                "is not an SGX VM size (DCsv2, DCsv3 or DCdsv3, Gen2)",
                _render(sgx.vm_size),
                ", ".join(SGX_EPC_MIB),
            )
        )
    if _SGX_SIZE_PATTERN.match(cluster.system_pool.vm_size):
        problems.append(
            Problem(
                "cluster.systemPool.vmSize",
                "must not be an SGX size: the System pool runs add-ons on general-purpose VMs",
                _render(cluster.system_pool.vm_size),
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
    problems += _set_but_inapplicable(
        cluster,
        "cluster",
        ("kubeconfig", "kubeconfig_path", "kubeconfig_context"),
        "only applies to provider existing",
        "unset with provider aks",
    )
    return problems


def _without_credentials(url: str) -> str | None:
    """`url` with its secret user info (any on https, `user:password` on ssh) hidden, or None if it has none."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    user_info, at, host = authority.rpartition("@")
    if not separator or not at or (scheme != "https" and ":" not in user_info):
        return None
    return f"{scheme}://[hidden]@{host}{slash}{path}"


def _argocd_problems(settings: Settings) -> list[Problem]:
    """GitOps applications: unique names, allowed destinations, and an Argo CD to run them."""
    argocd = settings.argocd
    problems: list[Problem] = []
    if argocd.applications and not argocd.enabled:
        problems.append(
            Problem(
                "argocd.applications",
                "needs Argo CD: applications are not deployed while argocd.enabled is false",
                f"{len(argocd.applications)} application(s)",
                "argocd.enabled: true, or no applications",
            )
        )
    seen: dict[str, int] = {}
    for index, application in enumerate(argocd.applications):
        if application.name in seen:
            problems.append(
                Problem(
                    f"argocd.applications[{index}].name",
                    f"is already used by argocd.applications[{seen[application.name]}]",
                    _render(application.name),
                    "a name unique among the applications",
                )
            )
        seen.setdefault(application.name, index)
        redacted = _without_credentials(application.repo_url)
        if redacted is not None:
            problems.append(
                Problem(
                    f"argocd.applications[{index}].repoURL",
                    "must not carry credentials (stack files are plaintext); add them as an Argo CD repository secret",
                    _render(redacted),
                    "https://host/org/repo.git",
                )
            )
        if application.namespace in PLATFORM_NAMESPACES:
            problems.append(
                Problem(
                    f"argocd.applications[{index}].namespace",
                    "is a namespace of the platform; GitOps applications get their own",
                    _render(application.namespace),
                    f"any namespace except {', '.join(PLATFORM_NAMESPACES)}",
                )
            )
    return problems


def _monitoring_problems(settings: Settings) -> list[Problem]:
    """Monitoring keys other than `enabled` do nothing while monitoring is disabled: say so, don't ignore them."""
    monitoring = settings.monitoring
    if monitoring.enabled:
        return []
    return _set_but_inapplicable(
        monitoring,
        "monitoring",
        sorted(monitoring.model_fields_set - {"enabled"}),
        "only applies when monitoring is enabled",
        "unset with monitoring.enabled false",
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
    problems += _set_but_inapplicable(
        cluster, "cluster", aks_only, "only applies to provider aks", "unset with provider existing", show_value=False
    )
    return problems


def _set_but_inapplicable(
    section: BaseModel, prefix: str, names: Iterable[str], message: str, allowed: str, *, show_value: bool = True
) -> list[Problem]:
    """A problem for each of `names` the operator set although it does nothing here; secret values stay hidden."""
    problems = []
    for name in names:
        if name not in section.model_fields_set:
            continue
        value = getattr(section, name)
        got = None if not show_value else "[hidden]" if isinstance(value, SecretStr) else _render(value)
        problems.append(Problem(f"{prefix}.{to_camel(name)}", message, got, allowed))
    return problems


def load_stack_settings() -> Settings:
    """Settings of the running stack; stops the program with `pulumi.RunError` when invalid.

    Reads the whole config the engine passed (environment for the CLI, the in-process map for the
    Automation API and tests) so unknown top-level keys are reported too.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = [key for key in raw if runtime_config.is_config_secret(key)]
    secret_keys += runtime_config.get_config_secret_keys_env()
    try:
        return load_settings(raw, secret_keys)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
