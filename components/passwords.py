"""Secret settings: the operator's `--secret` value, or a generated password."""

from __future__ import annotations

import pulumi
import pulumi_random as random
from pydantic import SecretStr


def configured_or_generated(
    name: str, configured: SecretStr | None, parent: pulumi.Resource, length: int = 32
) -> pulumi.Output[str]:
    """A secret Output: the configured value, or a `RandomPassword` child of `parent` when unset.

    Generated passwords use letters and digits only so they survive shells, URLs and htpasswd.
    """
    if configured is not None:
        return pulumi.Output.secret(configured.get_secret_value())
    generated = random.RandomPassword(
        name,
        length=length,
        special=False,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return pulumi.Output.secret(generated.result)
