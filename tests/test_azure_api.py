"""Azure API lifecycle: the versions the program calls, read from the SDK, against announced retirements."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
from datetime import date, timedelta

import pytest

import components.azure_api
from components.azure_api import (
    ResourceApi,
    api_version,
    explicit_token,
    load_lifecycle,
    retiring,
    today,
)
from harness import STACKS, ProgramRun, run_program, stack_config, with_overrides

# What Microsoft announced (learn.microsoft.com, "Prepare for Key Vault API version 2026-02-01 and later").
KEY_VAULT_RETIREMENT = date(2027, 2, 27)
KEY_VAULT_SOURCE = "https://learn.microsoft.com/azure/key-vault/general/access-control-default"
# The token stacks used before the move (the SDK default, whatever version the installed SDK gives it).
OLD_VAULT = "azure-native:keyvault:Vault"
VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def assert_nothing_retires(table: list[ResourceApi], on: date) -> None:
    """The suite's gate: fails naming each resource type, its version, the retirement date and the source."""
    found = retiring(table, on)
    assert not found, "Azure API versions in use retire within 120 days:\n" + "\n".join(map(str, found))


def with_old_key_vault(table: list[ResourceApi]) -> list[ResourceApi]:
    """The table as it would be had the vault stayed on the SDK default token (its real retirements kept)."""
    return [
        dataclasses.replace(row, type=OLD_VAULT) if row.arm_type == "Microsoft.KeyVault/vaults" else row
        for row in table
    ]


@pytest.fixture(scope="module")
def table() -> list[ResourceApi]:
    return load_lifecycle()


@pytest.fixture(scope="module")
def stack_runs() -> dict[str, ProgramRun]:
    runs = {}
    for stack in STACKS:
        config, secret_keys = stack_config(stack)
        runs[stack] = run_program(config, stack=stack, secret_keys=secret_keys)
    # The optional Azure DNS zone the program keeps the A records in.
    config, secret_keys = stack_config("prod")
    dns = {"dns": {"zoneName": "example.com", "resourceGroupName": "dns-rg"}}
    runs["prod-dns"] = run_program(with_overrides(config, dns), stack="prod", secret_keys=secret_keys)
    return runs


# --- the table ---------------------------------------------------------------------------------------------------


def test_every_azure_type_the_program_creates_is_listed(
    table: list[ResourceApi], stack_runs: dict[str, ProgramRun]
) -> None:
    created = {r.type for run in stack_runs.values() for r in run.registrations if r.type.startswith("azure-native:")}
    listed = [row.type for row in table]
    assert len(listed) == len(set(listed)), "a type is listed twice"
    assert created - set(listed) == set(), "created but not in azure-api-lifecycle.yaml"
    # And nothing stale: a listed type the program no longer creates would hide a missing one.
    assert set(listed) - created == set(), "listed in azure-api-lifecycle.yaml but never created"


def test_versions_in_use_come_from_the_sdk_and_exist_for_their_resource(table: list[ResourceApi]) -> None:
    for row in table:
        version = api_version(row.type)
        assert VERSION.match(version), (row.type, version)
        if "/" in row.type:
            continue
        # Independent of the docstring the version was read from: the SDK class lists every version the provider
        # serves for it as an alias, its default among them.
        module, name = row.type.split(":")[1:]
        cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), name)
        assert f'pulumi.Alias(type_="{explicit_token(row.type, version)}")' in inspect.getsource(cls), row.type


def test_retirements_have_a_date_and_a_source(table: list[ResourceApi]) -> None:
    retirements = [retirement for row in table for retirement in row.retirements]
    assert retirements, "the Key Vault retirement at least"
    for retirement in retirements:
        assert retirement.source.startswith("https://learn.microsoft.com/"), retirement
        assert retirement.versions_before or retirement.versions, retirement


def test_key_vault_rows_carry_microsofts_announcement(table: list[ResourceApi]) -> None:
    rows = {row.arm_type: row for row in table}
    for arm_type in ("Microsoft.KeyVault/vaults", "Microsoft.KeyVault/vaults/keys"):
        [retirement] = rows[arm_type].retirements
        assert (retirement.retires_on, retirement.source, retirement.versions_before) == (
            KEY_VAULT_RETIREMENT,
            KEY_VAULT_SOURCE,
            "2026-02-01",
        )


# --- the gate ----------------------------------------------------------------------------------------------------


def test_no_api_version_in_use_retires_within_120_days(table: list[ResourceApi]) -> None:
    assert_nothing_retires(table, today())


def test_the_old_key_vault_version_fails_the_gate_on_2027_01_01(table: list[ResourceApi]) -> None:
    old_version = api_version(OLD_VAULT)
    assert old_version < "2026-02-01"
    with pytest.raises(AssertionError) as failed:
        assert_nothing_retires(with_old_key_vault(table), date(2027, 1, 1))
    message = str(failed.value)
    assert OLD_VAULT in message
    assert "Microsoft.KeyVault/vaults" in message
    assert old_version in message
    assert "2027-02-27" in message
    assert KEY_VAULT_SOURCE in message
    # The program as it is now passes on the same day.
    assert_nothing_retires(table, date(2027, 1, 1))


def test_the_window_is_120_days(table: list[ResourceApi]) -> None:
    old = with_old_key_vault(table)
    first_day = KEY_VAULT_RETIREMENT - timedelta(days=120)
    assert retiring(old, first_day - timedelta(days=1)) == []
    assert [api.type for api in retiring(old, first_day)] == [OLD_VAULT]
    # Already retired stays an error.
    assert [api.type for api in retiring(old, date(2027, 6, 1))] == [OLD_VAULT]


def test_versions_from_the_cut_over_on_are_not_covered(table: list[ResourceApi]) -> None:
    rows = {row.arm_type: row for row in table}
    vault = rows["Microsoft.KeyVault/vaults"]
    for version in ("2026-02-01", "2026-03-01-preview", "2027-01-01"):
        moved = dataclasses.replace(vault, type=explicit_token(OLD_VAULT, version))
        assert retiring([moved], KEY_VAULT_RETIREMENT) == [], version
    assert retiring([dataclasses.replace(vault, type=explicit_token(OLD_VAULT, "2025-05-01"))], date(2027, 1, 1))


# --- pulumi up warns -----------------------------------------------------------------------------------------------


def test_pulumi_up_warns_in_the_window_and_deploys_anyway(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, table: list[ResourceApi]
) -> None:
    monkeypatch.setattr(components.azure_api, "today", lambda: date(2027, 1, 1))
    monkeypatch.setattr(components.azure_api, "load_lifecycle", lambda: with_old_key_vault(table))
    config, secret_keys = stack_config("prod")
    with caplog.at_level(logging.WARNING):
        run = run_program(config, stack="prod", secret_keys=secret_keys)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    [warning] = [message for message in warnings if OLD_VAULT in message]
    assert "2027-02-27" in warning
    assert KEY_VAULT_SOURCE in warning
    assert run.outputs["vaultSeal"]["keyId"]  # the deploy went on


def test_pulumi_up_is_quiet_when_nothing_retires(caplog: pytest.LogCaptureFixture) -> None:
    config, secret_keys = stack_config("prod")
    with caplog.at_level(logging.WARNING):
        run_program(config, stack="prod", secret_keys=secret_keys)
    assert not [record for record in caplog.records if "Microsoft retires" in record.getMessage()]
