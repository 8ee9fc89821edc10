"""SGX VM sizes: which are offered, how much EPC each has, and Azure's lifecycle (DCsv2 retired on 2026-06-30)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from test_config import load, problems

from components.config import SGX_EPC_MIB, SgxPool
from harness import PROJECT, PROJECT_ROOT, run_failing, with_overrides

RETIRED_ALLOWED = (
    "its successor, the DCdsv3 size with the same vCPU count (DCsv2 resizes to DCdsv3, not to DCsv3): "
    "Standard_DC1s_v2 → Standard_DC1ds_v3, Standard_DC2s_v2 → Standard_DC2ds_v3, "
    "Standard_DC4s_v2 → Standard_DC4ds_v3, Standard_DC8_v2 → Standard_DC8ds_v3"
)
SGX_SIZES = (
    "Standard_DC1s_v3, Standard_DC2s_v3, Standard_DC4s_v3, Standard_DC8s_v3, Standard_DC16s_v3, Standard_DC24s_v3, "
    "Standard_DC32s_v3, Standard_DC48s_v3, Standard_DC1ds_v3, Standard_DC2ds_v3, Standard_DC4ds_v3, "
    "Standard_DC8ds_v3, Standard_DC16ds_v3, Standard_DC24ds_v3, Standard_DC32ds_v3, Standard_DC48ds_v3"
)


@pytest.mark.parametrize(
    "vm_size", ["Standard_DC1s_v2", "Standard_DC2s_v2", "Standard_DC4s_v2", "Standard_DC8_v2", "standard_dc2s_v2"]
)
def test_every_dcsv2_size_is_refused_with_its_successor_and_the_date(vm_size: str) -> None:
    assert problems({"cluster.sgxPool.vmSize": vm_size}) == [
        "confidential-vault:cluster.sgxPool.vmSize: is a DCsv2 size: Azure retired DCsv2 on 2026-06-30 "
        f"(got '{vm_size}'; allowed: {RETIRED_ALLOWED})"
    ]


def test_a_size_that_is_not_sgx_is_refused_with_the_sgx_sizes() -> None:
    assert problems({"cluster.sgxPool.vmSize": "Standard_D4s_v5"}) == [
        "confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size (DCsv3 or DCdsv3) (got 'Standard_D4s_v5'; "
        f"allowed: {SGX_SIZES})"
    ]


def test_an_sgx_size_spelt_otherwise_is_refused_with_azures_spelling() -> None:
    assert problems({"cluster.sgxPool.vmSize": "standard_dc2s_v3"}) == [
        "confidential-vault:cluster.sgxPool.vmSize: is not written as Azure names the size "
        f"(got 'standard_dc2s_v3'; allowed: {SGX_SIZES})"
    ]


# EPC per VM size from Azure's DCsv3/DCdsv3 documentation (MiB).
@pytest.mark.parametrize(
    ("vm_size", "epc_mib"),
    [
        ("Standard_DC1s_v3", 4096),
        ("Standard_DC2s_v3", 8192),
        ("Standard_DC4s_v3", 16384),
        ("Standard_DC24s_v3", 131072),
        ("Standard_DC1ds_v3", 4096),
        ("Standard_DC32ds_v3", 196608),
        ("Standard_DC48ds_v3", 262144),
    ],
)
def test_epc_capacity_per_vm_size(vm_size: str, epc_mib: int) -> None:
    assert SGX_EPC_MIB[vm_size] == epc_mib
    assert load({"cluster.sgxPool.vmSize": vm_size}).cluster.sgx_pool.epc_mib == epc_mib


def test_sgx_size_table_has_exactly_the_offered_sizes() -> None:
    """8 DCsv3 and 8 DCdsv3 sizes; DCsv2 is retired and gone from the table."""
    assert len(SGX_EPC_MIB) == 16
    assert not [size for size in SGX_EPC_MIB if size.endswith("_v2")]


def test_the_default_sgx_size_is_offered() -> None:
    default = SgxPool.model_fields["vm_size"].default
    assert default in SGX_EPC_MIB
    assert load().cluster.sgx_pool.vm_size == default


def stack_documents() -> dict[str, Any]:
    paths = [*PROJECT_ROOT.glob("Pulumi.*.yaml"), PROJECT_ROOT / "templates" / "ephemeral.yaml"]
    return {path.name: yaml.safe_load(path.read_text()) for path in paths}


@pytest.mark.parametrize("name", sorted(stack_documents()))
def test_stack_files_and_the_template_use_an_offered_sgx_size(name: str) -> None:
    cluster = stack_documents()[name]["config"].get(f"{PROJECT}:cluster", {})
    assert cluster.get("sgxPool", {}).get("vmSize", "Standard_DC2s_v3") in SGX_EPC_MIB


def test_readme_offers_no_retired_size_as_an_example() -> None:
    """DCsv2 appears in the README only where its retirement is explained."""
    readme = (Path(PROJECT_ROOT) / "README.md").read_text()
    for line in readme.splitlines():
        if "_v2" in line:
            assert "retire" in line.lower(), line


def test_epc_within_capacity_is_accepted() -> None:
    settings = load({"cluster.sgxPool.vmSize": "Standard_DC1s_v3", "vault.epc": "4Gi"})
    assert settings.vault.epc == "4Gi"


def test_epc_over_capacity_is_refused() -> None:
    assert problems({"cluster.sgxPool.vmSize": "Standard_DC1s_v3", "vault.epc": "4097Mi"}) == [
        "confidential-vault:vault.epc: exceeds the EPC of one Standard_DC1s_v3 node (got '4097Mi'; "
        "allowed: at most 4096Mi)"
    ]


def test_simulation_skips_the_epc_capacity_check() -> None:
    settings = load({"cluster.sgxPool.vmSize": "Standard_DC1s_v3", "vault.epc": "8Gi", "vault.sgx.simulation": True})
    assert settings.vault.sgx.simulation


def test_the_program_refuses_a_retired_size_before_registering_anything(dev_config: dict[str, Any]) -> None:
    error, run = run_failing(with_overrides(dev_config, {"cluster.sgxPool.vmSize": "Standard_DC4s_v2"}))
    assert isinstance(error, pulumi.RunError)
    assert str(error).splitlines() == [
        "invalid stack configuration (1 problem(s)):",
        "  - confidential-vault:cluster.sgxPool.vmSize: is a DCsv2 size: Azure retired DCsv2 on 2026-06-30 "
        f"(got 'Standard_DC4s_v2'; allowed: {RETIRED_ALLOWED})",
    ]
    assert run.registrations == []
