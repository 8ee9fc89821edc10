"""Shared pieces of the configuration package: the section base class, value types, and the problem format."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

NAMESPACE = "confidential-vault"

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti)$")
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")
_VM_SIZE_PATTERN = re.compile(r"^Standard_[A-Za-z0-9_]+$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


class InvalidValueError(ValueError):
    """A field-level problem; `allowed` is shown after the offending value."""

    def __init__(self, message: str, allowed: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.allowed = allowed


def check(pattern: re.Pattern[str], message: str, allowed: str) -> AfterValidator:
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


def cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise InvalidValueError(f"is not a valid CIDR range ({error})", "e.g. 203.0.113.0/24") from None
    return value


def quantity_mib(quantity: str) -> float:
    """Convert a Kubernetes binary quantity such as `64Mi` to MiB."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"not a binary quantity: {quantity}")
    return int(match.group(1)) * _QUANTITY_MIB[match.group(2)]


DnsName = Annotated[str, AfterValidator(_dns_name)]
Quantity = Annotated[str, check(_QUANTITY, "is not a Kubernetes quantity", "e.g. 64Mi, 10Gi")]
Duration = Annotated[str, check(_DURATION, "is not a duration", "e.g. 15d, 12h, 4w")]
VmSize = Annotated[str, check(_VM_SIZE_PATTERN, "is not an Azure VM size name", "e.g. Standard_D4s_v5")]
KubernetesName = Annotated[
    str, check(_K8S_NAME, "is not a valid Kubernetes name", "lower-case a-z, 0-9 and '-', at most 63 characters")
]
ResourceGroupName = Annotated[
    str, check(_RESOURCE_GROUP, "is not a valid resource group name", "1-90 of letters, digits, -._()")
]


class Section(BaseModel):
    """Base for every config object: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        hide_input_in_errors=False,
    )


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


def render_value(value: Any) -> str:
    """A value as an error message shows it: strings quoted, everything else as JSON."""
    return json.dumps(value) if not isinstance(value, str) else repr(value)


def set_but_inapplicable(
    section: BaseModel, prefix: str, names: Iterable[str], message: str, allowed: str, *, show_value: bool = True
) -> list[Problem]:
    """A problem for each of `names` the operator set although it does nothing here; secret values stay hidden."""
    problems = []
    for name in names:
        if name not in section.model_fields_set:
            continue
        value = getattr(section, name)
        got = None if not show_value else "[hidden]" if isinstance(value, SecretStr) else render_value(value)
        problems.append(Problem(f"{prefix}.{to_camel(name)}", message, got, allowed))
    return problems
