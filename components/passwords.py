"""Secret settings: the operator's `--secret` value or a generated password, and stable bcrypt hashes of them."""

from __future__ import annotations

import base64
import hashlib
from typing import Literal

import bcrypt
import pulumi
import pulumi_random as random
from pydantic import SecretStr

# Go's bcrypt.DefaultCost, what Argo CD itself writes. Traefik checks the hash on every dashboard request (the
# dashboard polls its API), so a higher cost would make it sluggish without stopping a real attacker much more.
BCRYPT_ROUNDS = 10
_STANDARD_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT_BASE64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


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


def bcrypt_hash(password: str, salt_seed: str, variant: Literal["2a", "2y"] = "2a", rounds: int = BCRYPT_ROUNDS) -> str:
    """bcrypt hash of `password` with a salt derived from `salt_seed`: the same inputs always give the same hash.

    `2a` is what Go's bcrypt (Argo CD) writes, `2y` what `htpasswd -B` writes (Traefik BasicAuth); both verify alike.
    """
    raw_salt = hashlib.sha256(salt_seed.encode()).digest()[:16]
    # bcrypt's base64 is standard base64 with another alphabet; 16 bytes are exactly 22 characters unpadded.
    encoded = base64.b64encode(raw_salt).decode().rstrip("=").translate(str.maketrans(_STANDARD_BASE64, _BCRYPT_BASE64))
    return bcrypt.hashpw(password.encode(), f"${variant}${rounds:02d}${encoded}".encode()).decode()


def stable_bcrypt_hash(
    name: str, password: pulumi.Input[str], parent: pulumi.Resource, variant: Literal["2a", "2y"] = "2a"
) -> pulumi.Output[str]:
    """A secret bcrypt hash of `password` that changes only when the password does.

    bcrypt draws a random salt per call, which would rewrite the Secret (and restart what reads it) on every
    `pulumi up`. The salt comes from a `RandomPassword` `<name>-salt` kept in the stack's state instead: random,
    independent of the password (equal passwords on two stacks hash differently), and stable until the state is lost.
    """
    salt_seed = random.RandomPassword(
        f"{name}-salt", length=32, special=False, opts=pulumi.ResourceOptions(parent=parent)
    )
    return pulumi.Output.secret(
        pulumi.Output.all(password, salt_seed.result).apply(lambda pair: bcrypt_hash(pair[0], pair[1], variant))
    )
