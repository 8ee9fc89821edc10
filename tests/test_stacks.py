"""Stack-level checks: the real program for every Pulumi.<stack>.yaml, and the project files around it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

from components.charts import ALL_CHARTS
from components.config import Settings, load_settings
from harness import (
    PROJECT,
    PROJECT_ROOT,
    STACKS,
    ProgramRun,
    encode_config,
    fake_password,
    run_failing,
    run_program,
    stack_config,
    with_overrides,
)
from tools import vendored


def test_every_stack_file_is_exercised(stack_runs: dict[str, ProgramRun]) -> None:
    stack_files = {
        path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in PROJECT_ROOT.glob("Pulumi.*.yaml")
    }
    assert stack_files == {"dev", "prod"}
    assert set(stack_runs) == stack_files


@pytest.mark.parametrize("stack", STACKS)
def test_stack_registers_a_cluster_and_exports(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    assert "confidential-vault:cluster:ConfidentialCluster" in run.types()
    assert run.outputs["environment"] == stack_config(stack)[0][f"{PROJECT}:environment"]
    assert "kubeconfig" in run.outputs


@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_sits_under_a_component(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    components = {r.urn for r in run.registrations if not r.custom}
    assert len(components) >= 5, "cluster, edge, monitoring, Argo CD and secret store components"
    for registration in run.registrations:
        if registration.custom:
            assert registration.parent in components, f"{registration.type} {registration.name} is not in a component"


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_in_plaintext(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    """Generated passwords and configured secrets appear only under secret markers: inputs and outputs."""
    run = stack_runs[stack]
    config, _ = stack_config(stack)
    secrets = [fake_password(r.name) for r in run.of_type("random:index/randomPassword:RandomPassword")]
    secrets += [value for value in json.dumps(config).split('"') if value.startswith("dummy-secret-")]
    assert secrets, "nothing to look for: the stack generates no password"
    exposed = run.plaintext()
    for secret in secrets:
        assert secret not in exposed
    assert "mytoken" not in exposed
    assert "fake-kube-token" not in exposed


def test_prod_stack_unseals_with_the_attested_key(stack_runs: dict[str, ProgramRun]) -> None:
    config, secret_keys = stack_config("prod")
    settings = load_settings(encode_config(config), secret_keys)
    assert settings.vault.unseal.mode == "attested"
    assert (settings.cluster.provider, settings.environment) == ("aks", "prod")
    prod = stack_runs["prod"]
    [seal] = prod.of_type("confidential-vault:seal:AttestedSeal")
    assert prod.one("azure-native:keyvault/v20260201:Key").parent == seal.urn
    assert prod.outputs["vaultEnclave"]["sealKeyId"] == prod.outputs["vaultSeal"]["keyId"]


def test_prod_on_aks_refuses_shamir_unseal() -> None:
    config, secret_keys = stack_config("prod")
    error, run = run_failing(with_overrides(config, {"vault.unseal.mode": "shamir"}), "prod", secret_keys)
    assert isinstance(error, pulumi.RunError)
    assert (
        f"{PROJECT}:vault.unseal.mode: prod stacks on AKS unseal with the attested Key Vault key: restarts must not "
        "wait for key holders (got 'shamir'; allowed: attested)" in str(error)
    )
    assert run.registrations == []


def test_secure_values_in_a_stack_file_stay_secret(tmp_path: Path) -> None:
    """A stack file as `pulumi config set --secret --path` writes it: secrets reach resources only as secrets."""
    document = yaml.safe_load((PROJECT_ROOT / "Pulumi.dev.yaml").read_text())
    config = document["config"]
    config[f"{PROJECT}:edge"] = {"dashboardPassword": {"secure": "v1:AAAA"}}
    config[f"{PROJECT}:argocd"] = {"adminPassword": {"secure": "v1:BBBB"}}
    config[f"{PROJECT}:monitoring"] = {"grafanaAdminPassword": {"secure": "v1:CCCC"}}
    (tmp_path / "Pulumi.secure.yaml").write_text(yaml.safe_dump(document))

    loaded, secret_keys = stack_config("secure", tmp_path)
    assert sorted(secret_keys) == [f"{PROJECT}:argocd", f"{PROJECT}:edge", f"{PROJECT}:monitoring"]
    run = run_program(loaded, stack="secure", secret_keys=secret_keys)
    dummies = [
        f"dummy-secret-{PROJECT}:edge.dashboardPassword",
        f"dummy-secret-{PROJECT}:argocd.adminPassword",
        f"dummy-secret-{PROJECT}:monitoring.grafanaAdminPassword",
    ]
    everything = json.dumps([r.raw_inputs for r in run.registrations])
    assert dummies[2] in everything  # it was used (as a secret) ...
    for dummy in dummies:
        assert dummy not in run.plaintext()  # ... and never outside a secret marker
    # Every configured password is used, none generated; only the database login, which has no config key, is.
    generated = [r.name for r in run.of_type("random:index/randomPassword:RandomPassword")]
    assert [name for name in generated if name.endswith("password")] == ["database-password"]


def test_project_file() -> None:
    project = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == PROJECT
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    declared = project["config"]
    assert declared, "top-level config keys are declared"
    aliases = {field.alias or name: field for name, field in Settings.model_fields.items()}
    for key, declaration in declared.items():
        assert key in aliases, f"Pulumi.yaml declares unknown key {key}"
        # Pulumi's project schema allows only these scalar types, and a type is mandatory.
        assert declaration["type"] in {"string", "integer", "boolean", "array"}
        assert declaration["description"]
        # A declaration without a default makes the key required in every stack: only for required settings.
        assert "default" in declaration or aliases[key].is_required(), key


def test_readme_config_reference_is_current() -> None:
    generated = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "config_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert generated in readme, "run: python scripts/config_reference.py --write"


def test_pinned_charts_are_the_agreed_versions() -> None:
    # The versions the platform is built and documented for (README, platform facts).
    assert {pin.chart: pin.version for pin in ALL_CHARTS} == {
        "traefik": "41.3.0",
        "argo-cd": "10.1.1",
        "kube-prometheus-stack": "88.5.3",
        "openbao": "0.29.2",
    }
    lock = vendored.load_lock()["charts"]
    for pin in ALL_CHARTS:
        assert lock[pin.chart]["version"] == pin.version, pin.chart
        assert lock[pin.chart]["repository"] == pin.repo, pin.chart


def test_requirements_are_pinned() -> None:
    for name in ("requirements.txt", "requirements-dev.txt"):
        for raw_line in (PROJECT_ROOT / name).read_text().splitlines():
            requirement = raw_line.split("#")[0].strip()
            if requirement and not requirement.startswith("-r"):
                assert "==" in requirement or "~=" in requirement, f"{name}: {requirement} is not pinned"
