"""scripts/up.sh, the README's deploy command, run against fake `pulumi` and `az` that record their calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness import PROJECT_ROOT, STACKS

SCRIPT = PROJECT_ROOT / "scripts" / "up.sh"


def fake_tools(tmp_path: Path, az_logged_in: bool = True) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    (bin_dir / "pulumi").write_text(f'#!/bin/sh\necho "pulumi $*" >> "{calls}"\n')
    (bin_dir / "az").write_text(f'#!/bin/sh\necho "az $*" >> "{calls}"\nexit {0 if az_logged_in else 1}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir, calls


def run_up(tmp_path: Path, *args: str, env: dict[str, str], az_logged_in: bool = True):
    bin_dir, calls = fake_tools(tmp_path, az_logged_in)
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path / "home"), **env}
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment, check=False)
    logged = calls.read_text().splitlines() if calls.exists() else []
    return result, logged


def test_deploys_a_stack_on_the_local_file_backend(tmp_path: Path) -> None:
    result, calls = run_up(tmp_path, "dev", env={"PULUMI_CONFIG_PASSPHRASE": "x"})
    assert result.returncode == 0, result.stderr
    backend = f"file://{tmp_path}/home/.pulumi-confidential-vault"
    assert [call for call in calls if call.startswith("pulumi")] == [
        f"pulumi login {backend}",
        "pulumi install",
        "pulumi stack select --create dev",
        "pulumi up --stack dev",
    ]
    assert (tmp_path / "home" / ".pulumi-confidential-vault").is_dir()


def test_backend_url_overrides_the_default(tmp_path: Path) -> None:
    url = "azblob://state?storage_account=cvstate"
    result, calls = run_up(tmp_path, "prod", env={"PULUMI_CONFIG_PASSPHRASE": "x", "PULUMI_BACKEND_URL": url})
    assert result.returncode == 0, result.stderr
    assert f"pulumi login {url}" in calls


def test_refuses_without_passphrase_before_touching_pulumi(tmp_path: Path) -> None:
    result, calls = run_up(tmp_path, "dev", env={})
    assert result.returncode == 1
    assert "PULUMI_CONFIG_PASSPHRASE" in result.stderr
    assert not [call for call in calls if call.startswith("pulumi")]


def test_refuses_unknown_stack_and_lists_the_known_ones(tmp_path: Path) -> None:
    result, calls = run_up(tmp_path, "staging", env={"PULUMI_CONFIG_PASSPHRASE": "x"})
    assert result.returncode == 2
    assert f"Pulumi.staging.yaml not found; stacks here: {' '.join(STACKS)}" in result.stderr
    assert calls == []


def test_requires_an_azure_login(tmp_path: Path) -> None:
    result, calls = run_up(tmp_path, "dev", env={"PULUMI_CONFIG_PASSPHRASE": "x"}, az_logged_in=False)
    assert result.returncode == 1
    assert "az login" in result.stderr
    assert not [call for call in calls if call.startswith("pulumi")]
