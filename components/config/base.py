"""Shared pieces of the configuration package: the section base class, value types, and the problem format."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel

NAMESPACE = "confidential-vault"
# How a problem shows any value that came from a secret: a secret-typed key, or any key under a top-level key that
# was set with `--secret` (Pulumi marks secrecy per top-level key, so everything under it counts as secret).
SECRET = "[secret]"
# How a problem shows the user info (user name, password, token) of a URL.
HIDDEN_CREDENTIALS = "[hidden]"

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti)$")
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_VM_SIZE_PATTERN = re.compile(r"^Standard_[A-Za-z0-9_]+$")
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
DNS_NAME_MAX = 253
DNS_LABEL_MAX = 63


class InvalidValueError(ValueError):
    """A field-level problem; `allowed` is shown after the offending value.

    Neither text may contain the value (or anything derived from it): the value is shown once, as `got`, where it
    can be hidden when it came from a secret.
    """

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


def dns_name_error(name: str) -> str | None:
    """Why `name` is not a DNS name a public certificate can be issued for, or None if it is one."""
    labels = name.split(".")
    if len(name) > DNS_NAME_MAX:
        return f"longer than {DNS_NAME_MAX} characters"
    if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        return "not lower-case labels of a-z, 0-9 and '-' (at most 63 characters each)"
    if labels[-1].isdigit():
        return "a name whose last label is all digits"
    return None


def _dns_name(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        raise InvalidValueError(
            "is an IP address: certificates and routes need a DNS name", "a domain you control, e.g. vault.example.com"
        )
    if dns_name_error(value) is not None:
        raise InvalidValueError(
            "is not a valid DNS name",
            "lower-case labels of a-z, 0-9 and '-', at least two labels, at most 253 characters",
        )
    return value


def cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise InvalidValueError("is not a CIDR range", "e.g. 203.0.113.0/24") from None
        raise InvalidValueError("has host bits set", "the network address of the range, e.g. 203.0.113.0/24") from None
    return value


def quantity_mib(quantity: str) -> float:
    """Convert a Kubernetes binary quantity such as `64Mi` to MiB."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError("not a binary quantity")
    return int(match.group(1)) * _QUANTITY_MIB[match.group(2)]


def _non_zero(pattern: re.Pattern[str], what: str, example: str) -> AfterValidator:
    """A `<number><unit>` value that must not be zero: a zero size or retention deploys and then fails or is ignored."""

    def validate(value: str) -> str:
        match = pattern.match(value)
        if match and int(match.group(1)) == 0:
            raise InvalidValueError("is zero", f"a {what} above zero, e.g. {example}")
        return value

    return AfterValidator(validate)


DnsName = Annotated[str, AfterValidator(_dns_name)]
Quantity = Annotated[
    str, check(_QUANTITY, "is not a Kubernetes quantity", "e.g. 64Mi, 10Gi"), _non_zero(_QUANTITY, "quantity", "64Mi")
]
Duration = Annotated[str, check(_DURATION, "is not a duration", "e.g. 15d, 12h, 4w")]
NonZeroDuration = Annotated[Duration, _non_zero(_DURATION, "duration", "15d")]
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


def top_level_key(path: str) -> str:
    """The top-level config key a problem path is under: `cluster` for `cluster.sgxPool[0].vmSize`."""
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def is_under(path: str, keys: Iterable[str]) -> bool:
    """Whether the key at `path` is one of `keys` or inside one of them."""
    return any(path == key or path.startswith((f"{key}.", f"{key}[")) for key in keys)


@dataclass(frozen=True)
class Problem:
    """One config problem, rendered in the operator-facing format.

    `got` is the only place a problem shows the value of its own key; `message` and `allowed` show values of keys
    only through `Settings.shown`, so a value that came from a secret never appears.
    """

    path: str
    message: str
    got: str | None = None
    allowed: str | None = None

    def hiding(self, secret_keys: Iterable[str]) -> Problem:
        """This problem with its value shown as `[secret]` when its key is under a secret top-level key."""
        if self.got is None or self.got == SECRET or not is_under(self.path, secret_keys):
            return self
        return replace(self, got=SECRET)

    def __str__(self) -> str:
        parts = []
        if self.got is not None:
            parts.append(f"got {self.got}")
        if self.allowed:
            parts.append(f"allowed: {self.allowed}")
        details = "; ".join(parts)
        return f"{NAMESPACE}:{self.path}: {self.message}" + (f" ({details})" if details else "")


def without_credentials(text: str) -> str:
    """`text` with the user info of a URL replaced by `[hidden]`.

    Covers `scheme://user:password@host/…` and `scheme://token@host/…` (any user info, since tokens are passed as
    user names) and scp-like `user:password@host:path`. A bare SSH user name (`ssh://git@host/…`, `git@host:path`)
    is no secret and stays. When a password contains an unescaped `/` the split is ambiguous: everything up to the
    last `@` is hidden, so more is hidden rather than less.
    """
    scheme = _URL_SCHEME.match(text)
    if scheme is not None:
        rest = text[scheme.end() :]
        user_info, at, host_and_path = rest.rpartition("@")
        if not at:
            return text
        if scheme.group(0).lower() == "ssh://" and not set(":/") & set(user_info):
            return text
        return f"{scheme.group(0)}{HIDDEN_CREDENTIALS}@{host_and_path}"
    user_info, at, host_and_path = text.rpartition("@")
    if at and ":" in user_info and not any(character.isspace() for character in user_info):
        return f"{HIDDEN_CREDENTIALS}@{host_and_path}"
    return text


def _displayable(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return SECRET
    if isinstance(value, BaseModel):
        return {
            field.alias or name: _displayable(getattr(value, name)) for name, field in type(value).model_fields.items()
        }
    if isinstance(value, str):
        return without_credentials(value)
    if isinstance(value, dict):
        return {key: _displayable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_displayable(item) for item in value]
    return value


def render_value(value: Any) -> str:
    """A value as an error message shows it: strings quoted, everything else as JSON; URL credentials hidden."""
    shown = _displayable(value)
    return repr(shown) if isinstance(shown, str) else json.dumps(shown, default=str)


def set_but_inapplicable(
    section: BaseModel, prefix: str, names: Iterable[str], message: str, allowed: str, *, show_value: bool = True
) -> list[Problem]:
    """A problem for each of `names` the operator set although it does nothing here; secret values stay hidden."""
    problems = []
    for name in names:
        # A field left out of a partly valid section (see `load_settings`) already has its own problem listed.
        if name not in section.model_fields_set or name not in vars(section):
            continue
        value = getattr(section, name)
        got = None
        if show_value and not isinstance(value, BaseModel):
            got = SECRET if isinstance(value, SecretStr) else render_value(value)
        key = type(section).model_fields[name].alias or to_camel(name)
        problems.append(Problem(f"{prefix}.{key}", message, got, allowed))
    return problems
