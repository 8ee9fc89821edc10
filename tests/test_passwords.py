"""Secret settings and the stable bcrypt hashes built from them."""

from __future__ import annotations

import bcrypt
import pulumi
import pytest
from pydantic import SecretStr

from components.passwords import bcrypt_hash, configured_or_generated, stable_bcrypt_hash
from harness import fake_password, is_secret, plaintext, run_function


def test_hash_is_stable_for_the_same_password_and_seed() -> None:
    first = bcrypt_hash("a-long-password-1", "seed-1")
    assert first == bcrypt_hash("a-long-password-1", "seed-1")
    assert bcrypt.checkpw(b"a-long-password-1", first.encode())
    assert not bcrypt.checkpw(b"a-long-password-2", first.encode())


def test_hash_changes_with_password_and_seed() -> None:
    first = bcrypt_hash("a-long-password-1", "seed-1")
    assert bcrypt_hash("a-long-password-2", "seed-1") != first
    other_seed = bcrypt_hash("a-long-password-1", "seed-2")
    assert other_seed.split("$")[3][:22] != first.split("$")[3][:22]  # another salt


@pytest.mark.parametrize("variant", ["2a", "2y"])
def test_variant_and_cost_prefix(variant: str) -> None:
    hashed = bcrypt_hash("a-long-password-1", "seed", variant)  # type: ignore[arg-type]
    assert hashed.startswith(f"${variant}$10$")
    assert bcrypt.checkpw(b"a-long-password-1", hashed.encode())


def test_configured_secret_is_used_and_nothing_generated() -> None:
    def program() -> None:
        parent = pulumi.ComponentResource("test:index:Thing", "thing")
        pulumi.export("value", configured_or_generated("pw", SecretStr("configured-value-1"), parent))

    run = run_function(program)
    assert not run.of_type("random:index/randomPassword:RandomPassword")
    assert is_secret(run.raw_outputs["value"])
    assert run.outputs["value"] == "configured-value-1"


def test_stable_hash_is_secret_and_salted_from_state() -> None:
    def program() -> None:
        parent = pulumi.ComponentResource("test:index:Thing", "thing")
        password = configured_or_generated("pw", None, parent)
        pulumi.export("hash", stable_bcrypt_hash("pw", password, parent))

    run = run_function(program)
    salt = run.one("random:index/randomPassword:RandomPassword", "pw-salt")
    assert salt.parent == run.one("test:index:Thing").urn
    assert is_secret(run.raw_outputs["hash"])
    hashed = run.outputs["hash"]
    assert hashed == bcrypt_hash(fake_password("pw"), fake_password("pw-salt"))
    assert hashed not in plaintext(run.raw_outputs)
