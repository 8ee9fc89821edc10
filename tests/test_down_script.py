"""scripts/down.sh, the README's teardown command, run against fake `pulumi` and `az` that record their calls.

The fake `pulumi stack export` prints a state shaped like Pulumi's (deployment.resources with type, urn, protect,
inputs and outputs); the script reads what is protected and what stays billed from it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from harness import PROJECT_ROOT, STACKS

SCRIPT = PROJECT_ROOT / "scripts" / "down.sh"
URN = "urn:pulumi:{stack}::confidential-vault::{type}::{name}"


def resource(stack: str, type_: str, logical_name: str, *, protect: bool = False, **outputs: Any) -> dict[str, Any]:
    return {
        "urn": URN.format(stack=stack, type=type_, name=logical_name),
        "type": type_,
        "protect": protect,
        "inputs": {},
        "outputs": outputs,
    }


def dev_state() -> dict[str, Any]:
    return {
        "version": 3,
        "deployment": {
            "resources": [
                resource("dev", "azure-native:resources:ResourceGroup", "resource-group", name="cv-dev"),
                resource(
                    "dev",
                    "azure-native:dbforpostgresql:Server",
                    "database",
                    name="psql-dev-x1",
                    backup={"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"},
                ),
                resource(
                    "dev",
                    "azure-native:keyvault:Vault",
                    "key-vault",
                    name="kv-dev-abc123",
                    properties={"softDeleteRetentionInDays": 7},
                ),
            ]
        },
    }


def prod_state() -> dict[str, Any]:
    return {
        "version": 3,
        "deployment": {
            "resources": [
                resource("prod", "azure-native:resources:ResourceGroup", "resource-group", name="cv-prod"),
                resource("prod", "azure-native:containerservice:ManagedCluster", "aks", protect=True, name="aks-prod"),
                resource(
                    "prod",
                    "azure-native:keyvault:Vault",
                    "key-vault",
                    protect=True,
                    name="kv-prod-def456",
                    properties={"softDeleteRetentionInDays": 90, "enablePurgeProtection": True},
                ),
                {
                    "urn": URN.format(stack="prod", type="azure-native:dns:RecordSet", name="dns-vault"),
                    "type": "azure-native:dns:RecordSet",
                    "inputs": {"zoneName": "example.com", "relativeRecordSetName": "vault"},
                    "outputs": {"name": "vault"},
                },
            ]
        },
    }


def fake_tools(tmp_path: Path, state: dict[str, Any] | None, *, az_logged_in: bool, failing: str) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    state_file = tmp_path / "state.json"
    if state is not None:
        state_file.write_text(json.dumps(state))
    # `failing` names a subcommand that exits 1, like a destroy that Azure refuses.
    (bin_dir / "pulumi").write_text(
        "#!/bin/sh\n"
        f'echo "pulumi $* [PULUMI_K8S_DELETE_UNREACHABLE=$PULUMI_K8S_DELETE_UNREACHABLE]" >> "{calls}"\n'
        f'if [ -n "{failing}" ] && [ "$1" = "{failing}" ]; then exit 1; fi\n'
        'if [ "$1 $2" = "stack export" ]; then\n'
        f'  [ -f "{state_file}" ] || {{ echo "error: no stack named" >&2; exit 255; }}\n'
        f'  cat "{state_file}"\n'
        "fi\n"
    )
    (bin_dir / "az").write_text(f'#!/bin/sh\necho "az $*" >> "{calls}"\nexit {0 if az_logged_in else 1}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir, calls


def run_down(
    tmp_path: Path,
    *args: str,
    state: dict[str, Any] | None,
    env: dict[str, str] | None = None,
    az_logged_in: bool = True,
    failing: str = "",
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir, calls = fake_tools(tmp_path, state, az_logged_in=az_logged_in, failing=failing)
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "PULUMI_CONFIG_PASSPHRASE": "x",
        **(env or {}),
    }
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment, check=False)
    logged = calls.read_text().splitlines() if calls.exists() else []
    return result, [call for call in logged if call.startswith("pulumi")]


def test_destroys_and_removes_a_stack_without_protected_resources(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "dev", state=dev_state())
    assert result.returncode == 0, result.stderr
    backend = f"file://{tmp_path}/home/.pulumi-confidential-vault"
    delete_unreachable = " [PULUMI_K8S_DELETE_UNREACHABLE=true]"
    assert calls == [
        f"pulumi login {backend}{delete_unreachable}",
        f"pulumi stack export --stack dev{delete_unreachable}",
        f"pulumi destroy --stack dev{delete_unreachable}",
        f"pulumi stack rm --stack dev --preserve-config --yes{delete_unreachable}",
    ]


def test_says_what_stays_billed_after_the_destroy(tmp_path: Path) -> None:
    result, _ = run_down(tmp_path, "dev", state=dev_state())
    assert result.returncode == 0, result.stderr
    remaining = result.stdout.split("Still billed or held in Azure:\n", 1)[1].splitlines()
    assert remaining == [
        "  - PostgreSQL server psql-dev-x1: its automated backups are kept for their retention (7 days) after deletion",
        "  - Key Vault kv-dev-abc123: soft-deleted for 7 days; purge it now with "
        "'az keyvault purge --name kv-dev-abc123' to free the name",
        f"  - the state backend (file://{tmp_path}/home/.pulumi-confidential-vault): the Blob account if you use one "
        "(scripts/bootstrap-backend.sh)",
        "  - the EGo-OpenBao image in your registry (vault.image in Pulumi.dev.yaml)",
        "  - DNS records you created by hand (stacks without the dns setting): delete them, their address is released",
    ]


def test_refuses_protected_resources_without_the_flag_and_destroys_nothing(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "prod", state=prod_state())
    assert result.returncode == 1
    assert "stack prod has 2 protected resource(s); nothing was destroyed" in result.stderr
    assert "  urn:pulumi:prod::confidential-vault::azure-native:containerservice:ManagedCluster::aks" in result.stderr
    assert "scripts/down.sh prod --release-protected" in result.stderr
    assert not [call for call in calls if " destroy " in call or " rm " in call or "unprotect" in call]


def test_release_protected_follows_the_documented_steps(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "prod", "--release-protected", state=prod_state())
    assert result.returncode == 0, result.stderr
    steps = [call.split(" [")[0] for call in calls[2:]]
    assert steps == [
        "pulumi destroy --stack prod --exclude-protected",
        "pulumi state unprotect --stack prod --yes "
        "urn:pulumi:prod::confidential-vault::azure-native:containerservice:ManagedCluster::aks",
        "pulumi state unprotect --stack prod --yes "
        "urn:pulumi:prod::confidential-vault::azure-native:keyvault:Vault::key-vault",
        "pulumi destroy --stack prod",
        "pulumi stack rm --stack prod --preserve-config --yes",
    ]
    # The state is backed up before anything is destroyed.
    backups = list((tmp_path / "home" / ".local" / "state" / "confidential-vault").glob("prod-*.json"))
    assert len(backups) == 1
    assert json.loads(backups[0].read_text()) == prod_state()
    assert (
        "  - Key Vault kv-prod-def456: soft-deleted with purge protection; its name and keys stay for 90 days and "
        "cannot be purged before (a new stack gets a new name)"
    ) in result.stdout.splitlines()
    assert "  - Azure DNS zone example.com: the records are deleted, the zone is yours and stays" in result.stdout


def test_yes_is_passed_to_every_destroy(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "prod", "--release-protected", "--yes", state=prod_state())
    assert result.returncode == 0, result.stderr
    destroys = [call.split(" [")[0] for call in calls if call.startswith("pulumi destroy")]
    assert destroys == [
        "pulumi destroy --stack prod --exclude-protected --yes",
        "pulumi destroy --stack prod --yes",
    ]


def test_a_failed_destroy_keeps_the_stack(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "dev", state=dev_state(), failing="destroy")
    assert result.returncode == 1
    assert not [call for call in calls if call.startswith("pulumi stack rm")]
    assert "Still billed" not in result.stdout


def test_a_stack_missing_from_the_backend_is_an_error(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "dev", state=None)
    assert result.returncode == 1
    assert "cannot read stack dev" in result.stderr
    assert not [call for call in calls if "destroy" in call]


def test_refuses_without_passphrase_before_touching_pulumi(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "dev", state=dev_state(), env={"PULUMI_CONFIG_PASSPHRASE": ""})
    assert result.returncode == 1
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert calls == []


def test_refuses_unknown_stack_and_lists_the_known_ones(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "staging", state=dev_state())
    assert result.returncode == 2
    assert f"Pulumi.staging.yaml not found; stacks here: {' '.join(STACKS)}" in result.stderr
    assert calls == []


def test_requires_an_azure_login(tmp_path: Path) -> None:
    result, calls = run_down(tmp_path, "dev", state=dev_state(), az_logged_in=False)
    assert result.returncode == 1
    assert "az login" in result.stderr
    assert calls == []


def test_usage_without_a_stack_or_with_an_unknown_option(tmp_path: Path) -> None:
    for args in ((), ("dev", "--force")):
        run_dir = tmp_path / str(len(args))
        run_dir.mkdir()
        result, calls = run_down(run_dir, *args, state=dev_state())
        assert result.returncode == 2
        assert "usage: scripts/down.sh <stack> [--release-protected] [--yes]" in result.stderr
        assert calls == []
