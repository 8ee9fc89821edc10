"""Operations: the GitHub workflows (pinned actions, minimal permissions, prod never deployed without a
person) and the state-backend bootstrap script.

`actionlint` (in .ci/run) checks workflow syntax and expressions; these tests check the project's own rules.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PROJECT_ROOT, STACKS

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
OURS = ("ci", "preview", "preview-comment", "deploy", "ephemeral", "reap")
_PIN = re.compile(r"^(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
_WRITE_COMMANDS = {"up", "update", "destroy", "refresh", "import"}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    """The `on:` map (PyYAML reads the bare key `on` as the boolean True)."""
    on: Any = workflow["on"] if "on" in workflow else workflow[True]
    return {on: None} if isinstance(on, str) else {str(key): value for key, value in on.items()}


def all_workflows() -> list[Path]:
    return sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job id, job, step) for every step."""
    return [(job_id, job, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def pulumi_steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [entry for entry in steps(workflow) if entry[2].get("uses", "").startswith("pulumi/actions@")]


def test_our_workflows_exist() -> None:
    for name in OURS:
        assert (WORKFLOWS / f"{name}.yml").is_file(), name


@pytest.mark.parametrize("path", all_workflows(), ids=lambda path: path.name)
def test_every_action_is_pinned(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    uses = [step["uses"] for _, _, step in steps(workflow) if "uses" in step]
    uses += [job["uses"] for job in workflow["jobs"].values() if "uses" in job]
    for reference in uses:
        if reference.startswith("./"):
            continue  # an action in this repository, versioned with it
        assert "@" in reference, f"{path.name}: {reference} has no version"
        ref = reference.rsplit("@", 1)[1]
        assert ref not in ("main", "master", "latest", "HEAD"), f"{path.name}: {reference} follows a branch"
        assert _PIN.match(ref), f"{path.name}: {reference} is not pinned to a version tag or commit SHA"


def test_each_action_has_one_version_across_our_workflows() -> None:
    versions: dict[str, set[str]] = {}
    for path in all_workflows():
        for _, _, step in steps(load(path.stem)):
            if "@" in step.get("uses", ""):
                action, ref = step["uses"].rsplit("@", 1)
                versions.setdefault(action, set()).add(ref)
    assert versions, "no actions found"
    mixed = {action: refs for action, refs in versions.items() if len(refs) > 1}
    assert not mixed, f"actions pinned to different versions: {mixed}"


@pytest.mark.parametrize("path", all_workflows(), ids=lambda path: path.name)
def test_permissions_are_explicit_and_minimal(path: Path) -> None:
    workflow = yaml.safe_load(path.read_text())
    permissions = workflow.get("permissions")
    assert isinstance(permissions, dict), f"{path.name}: needs a top-level permissions map"
    for job_id, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions", {}), dict), f"{path.name}:{job_id}: permissions must be a map"
    for scope, level in permissions.items():
        assert level in ("read", "write", "none"), f"{path.name}: {scope}: {level}"
    # Nothing here pushes code, releases or touches issues beyond PR comments.
    assert permissions.get("contents") in ("read", None)


def test_preview_comments_a_diff_for_every_long_lived_stack() -> None:
    workflow = load("preview")
    assert set(triggers(workflow)) == {"pull_request"}
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write", "id-token": "write"}
    assert "github.event.pull_request.number" in workflow["concurrency"]["group"]
    [(_, job, step)] = pulumi_steps(workflow)
    assert set(job["strategy"]["matrix"]["stack"]) == set(STACKS)
    inputs = step["with"]
    assert inputs["command"] == "preview"
    assert inputs["stack-name"] == "${{ matrix.stack }}"
    assert inputs["comment-on-pr"] is True
    assert inputs["diff"] is True
    assert "secrets.PULUMI_BACKEND_URL" in inputs["cloud-url"]


def test_preview_renders_manifests_without_privileges() -> None:
    """The rendered-manifest job runs the PR's code (forks included): read-only token, no secrets, no OIDC."""
    workflow = load("preview")
    render = workflow["jobs"]["render"]
    assert render["permissions"] == {"contents": "read"}
    assert "if" not in render, "it runs for pull requests from forks too"
    text = yaml.safe_dump(render)
    assert "secrets." not in text
    assert "id-token" not in text
    [checkout] = [step for step in render["steps"] if step.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False
    [(run_step)] = [step for step in render["steps"] if "tools.render_diff" in step.get("run", "")]
    assert "${{" not in run_step["run"], "event data reaches the script through env, never inlined"
    assert run_step["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert '--base "$BASE_SHA"' in run_step["run"]
    assert "--output-dir rendered-diff" in run_step["run"]
    assert "-r requirements-dev.txt" in yaml.safe_dump(render["steps"])  # brings the pinned Helm
    [upload] = [step for step in render["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["name"] == "rendered-diff"
    assert upload["if"] == "always()", "a failed render still reports why"


def test_rendered_manifests_are_posted_by_a_workflow_that_never_runs_pr_code() -> None:
    workflow = load("preview-comment")
    assert triggers(workflow) == {"workflow_run": {"workflows": [load("preview")["name"]], "types": ["completed"]}}
    assert workflow["permissions"] == {}
    [(job_id, job)] = workflow["jobs"].items()
    assert job["permissions"] == {"actions": "read", "contents": "read", "pull-requests": "write"}, job_id
    for step in job["steps"]:
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["ref"] == "${{ github.event.repository.default_branch }}"
            assert step["with"]["persist-credentials"] is False
        else:
            assert "uses" not in step, "no other action sees the write token"
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "python" not in script
    assert "gh run download" in script
    assert "--name rendered-diff" in script
    # The PR number comes from the artifact: it counts only if that PR's head is the commit the run rendered.
    assert '"$pr_head" != "$HEAD_SHA"' in script
    assert "tools/pr-comment.sh" in script
    assert "<!-- confidential-vault:rendered-manifests:%s -->" in script
    assert "${{" not in script
    # The report is the PR's own output: only the default branch's stacks, capped, and labelled as such.
    assert "for stack_file in Pulumi.*.yaml" in script
    assert 'head -c 60000 "$file"' in script
    assert "pull request's own code" in script
    assert "conclusion != 'cancelled'" in job["if"]
    # Anyone can post a comment that starts with the marker: only the bot's own comments are edited.
    assert 'select(.user.login == \\"github-actions[bot]\\"' in (PROJECT_ROOT / "tools" / "pr-comment.sh").read_text()


def test_pulumi_jobs_log_in_to_azure_through_oidc() -> None:
    for name in ("preview", "deploy", "ephemeral", "reap"):
        workflow = load(name)
        assert workflow["permissions"].get("id-token") == "write", name
        for job_id, job in workflow["jobs"].items():
            if (name, job_id) == ("preview", "render"):
                continue  # renders offline under mocks: no Azure (test_preview_renders_manifests_without_privileges)
            env = {**workflow.get("env", {}), **job.get("env", {})}
            assert env.get("ARM_USE_OIDC") == "true", f"{name}:{job_id}"
            for key in ("ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID"):
                assert env[key].startswith("${{ vars."), f"{name}:{job_id}: {key} comes from a repository variable"
            assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
            assert any(step.get("uses", "").startswith("azure/login@") for step in job["steps"]), f"{name}:{job_id}"
            assert all("client-secret" not in step.get("with", {}) for step in job["steps"])


def test_workflows_install_the_pulumi_cli_of_the_sdk_pin() -> None:
    sdk = re.search(r"^pulumi==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert sdk is not None
    for name in ("preview", "deploy", "ephemeral", "reap"):
        steps_using_pulumi = pulumi_steps(load(name))
        assert steps_using_pulumi, name
        for _, _, step in steps_using_pulumi:
            assert step["with"]["pulumi-version"] == sdk.group(1), name


def test_prod_is_never_deployed_automatically() -> None:
    """A write command on prod runs only from a manual dispatch, behind the `prod` environment's reviewers."""
    checked = 0
    for path in all_workflows():
        workflow = yaml.safe_load(path.read_text())
        for job_id, job, step in pulumi_steps(workflow):
            command = step.get("with", {}).get("command")
            stack = str(step.get("with", {}).get("stack-name", ""))
            if command not in _WRITE_COMMANDS or "prod" not in stack:
                continue
            checked += 1
            where = f"{path.name}:{job_id}"
            environment = job.get("environment")
            environment = environment.get("name") if isinstance(environment, dict) else environment
            assert environment == "prod", f"{where}: prod deploys go through the `prod` environment"
            assert "github.event_name == 'workflow_dispatch'" in job.get("if", ""), f"{where}: not manual-only"
            assert "refs/heads/main" in job["if"], f"{where}: prod deploys only from main"
    assert checked == 1, "exactly one job deploys prod"


def test_deploy_updates_dev_on_pushes_to_main() -> None:
    workflow = load("deploy")
    assert triggers(workflow)["push"] == {"branches": ["main"]}
    assert "workflow_dispatch" in triggers(workflow)
    ups = {step["with"]["stack-name"]: (job_id, job) for job_id, job, step in pulumi_steps(workflow)}
    assert set(ups) == {"dev", "prod"}
    _, job = ups["dev"]
    assert "github.event_name == 'push'" in job["if"]
    for _, job in ups.values():
        assert job["concurrency"]["cancel-in-progress"] is False  # an interrupted `up` leaves a locked stack


def test_ci_runs_the_project_ci_on_the_checkout_alone() -> None:
    """A bare clone is enough (charts vendored in charts/): the job checks out and runs .ci/run, nothing else."""
    workflow = load("ci")
    assert {"push", "pull_request"} <= set(triggers(workflow))
    [job] = workflow["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "run" in step]
    uses = [step.get("uses", "") for step in job["steps"]]
    # The pinned Helm comes with requirements-dev.txt (tools/helm.py), which .ci/run installs.
    assert not any(action.startswith("azure/setup-helm@") for action in uses)
    assert runs == ["bash .ci/run"]
    assert "env" not in job
    assert all("env" not in step for step in job["steps"])


def test_ci_script_lints_workflows_before_the_tests() -> None:
    script = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert "actionlint" in script
    assert script.index("actionlint") < script.index("python -m pytest")


def test_ephemeral_workflow_creates_on_label_and_destroys_on_close_or_unlabel() -> None:
    workflow = load("ephemeral")
    assert set(triggers(workflow)["pull_request"]["types"]) >= {"labeled", "unlabeled", "closed", "synchronize"}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert "pull_request.number" in workflow["concurrency"]["group"]
    assert workflow["env"]["STACK"] == "pr-${{ github.event.pull_request.number }}"
    up, destroy = workflow["jobs"]["up"], workflow["jobs"]["destroy"]
    assert "deploy-preview" in up["if"]
    assert "'closed'" in destroy["if"]
    assert "'unlabeled'" in destroy["if"]
    up_runs = " ".join(step.get("run", "") for step in up["steps"])
    destroy_runs = " ".join(step.get("run", "") for step in destroy["steps"])
    assert 'tools.ephemeral up "$STACK"' in up_runs
    assert 'tools.ephemeral destroy "$STACK"' in destroy_runs
    assert "tools/pr-comment.sh" in up_runs
    assert (PROJECT_ROOT / "tools" / "pr-comment.sh").is_file()
    for job in (up, destroy):  # fork PRs get no secrets; nothing to do for them
        assert "head.repo.full_name == github.repository" in job["if"]


def test_reap_runs_on_a_schedule() -> None:
    workflow = load("reap")
    assert triggers(workflow)["schedule"]
    [job] = workflow["jobs"].values()
    assert any("tools.ephemeral" in step.get("run", "") for step in job["steps"])
    assert workflow["concurrency"]["cancel-in-progress"] is False


# --- scripts/bootstrap-backend.sh, against a fake `az` that records its calls ---------------------------------

FAKE_AZ = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$AZ_LOG"
case "$*" in
    "ad signed-in-user show"*) echo 11111111-aaaa-bbbb-cccc-000000000001 ;;
    "storage account show"*) echo /subscriptions/s/storageAccounts/x ;;
    "keyvault show"*) echo /subscriptions/s/vaults/v ;;
esac
"""


def run_bootstrap(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "az").write_text(FAKE_AZ)
    (fake_bin / "az").chmod(0o755)
    log = tmp_path / "az.log"
    log.write_text("")
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "AZ_LOG": str(log)}
    result = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "bootstrap-backend.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return result, log.read_text().splitlines()


def test_bootstrap_creates_a_locked_down_account_and_prints_the_backend_url(tmp_path: Path) -> None:
    result, calls = run_bootstrap(tmp_path, "cvstate123", "--assignee", "22222222-ci")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "azblob://state?storage_account=cvstate123\n"
    [create] = [call for call in calls if call.startswith("storage account create")]
    for flag in ("--allow-blob-public-access false", "--allow-shared-key-access false", "--min-tls-version TLS1_2"):
        assert flag in create
    assert any("--enable-versioning true" in call for call in calls)
    grants = [call for call in calls if call.startswith("role assignment create")]
    assert len(grants) == 2
    assert any("11111111-aaaa-bbbb-cccc-000000000001" in call for call in grants)
    assert any("22222222-ci" in call for call in grants)
    assert any(call.startswith("storage container create --name state --account-name cvstate123") for call in calls)
    assert not any(call.startswith("keyvault") for call in calls)


def test_bootstrap_with_a_key_vault_prints_the_secrets_provider(tmp_path: Path) -> None:
    result, calls = run_bootstrap(tmp_path, "cvstate123", "--key-vault", "cv-pulumi", "--container", "pulumi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "azblob://pulumi?storage_account=cvstate123\n"
    assert "azurekeyvault://cv-pulumi.vault.azure.net/keys/pulumi" in result.stderr
    assert any(call.startswith("keyvault key create --vault-name cv-pulumi --name pulumi") for call in calls)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Bad_Name",), "must be 3-24 lower-case letters and digits"),
        (("cvstate123", "--frobnicate"), "unknown option --frobnicate"),
        ((), "scripts/bootstrap-backend.sh <storage account>"),
    ],
)
def test_bootstrap_rejects_bad_input_before_calling_azure(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result, calls = run_bootstrap(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert calls == []


def test_signing_key_only_reaches_the_approved_publish_job() -> None:
    """Pull-request builds run the PR's own build script: they must never see the real enclave signing key."""
    workflow = load("ego-openbao-image")
    jobs = workflow["jobs"]
    readers = {name for name, job in jobs.items() if "EGO_OPENBAO_SIGNING_KEY" in yaml.safe_dump(job)}
    assert readers == {"publish"}
    assert jobs["publish"]["if"].count("refs/tags/ego-openbao-v") == 1
    assert jobs["publish"]["environment"] == "ego-openbao-release"
    checkouts = [
        step for job in jobs.values() for step in job["steps"] if step.get("uses", "").startswith("actions/checkout@")
    ]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


def test_published_image_is_signed_by_digest_with_cosign_keyless_and_released_with_its_measurements() -> None:
    """Version tags publish to GHCR: the image is signed by digest (Sigstore keyless, the job's OIDC identity) and
    the tag's release notes carry the measurements a stack pins; branch and pull-request builds publish nothing."""
    workflow = load("ego-openbao-image")
    on = triggers(workflow)
    assert on["push"]["tags"] == ["ego-openbao-v*"]
    assert "tags" not in (on.get("pull_request") or {})
    publish = workflow["jobs"]["publish"]
    assert publish["if"] == "${{ startsWith(github.ref, 'refs/tags/ego-openbao-v') }}"
    assert publish["permissions"] == {"contents": "write", "packages": "write", "id-token": "write"}
    # Only the publish job may write or mint an OIDC token; the PR build runs the PR's own scripts.
    for job_id, job in workflow["jobs"].items():
        if job_id != "publish":
            assert set(job.get("permissions", {}).values()) <= {"read", "none"}, job_id
    assert workflow["permissions"] == {"contents": "read"}

    publish_steps = publish["steps"]
    text = (WORKFLOWS / "ego-openbao-image.yml").read_text()
    installer = next(step for step in publish_steps if step.get("uses", "").startswith("sigstore/cosign-installer@"))
    sha = installer["uses"].rsplit("@", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{40}", sha), "cosign-installer is pinned by commit SHA"
    assert re.search(rf"sigstore/cosign-installer@{sha} # v\d+\.\d+\.\d+\n", text), "with its version as a comment"

    runs = [(index, step.get("run", "")) for index, step in enumerate(publish_steps)]
    pushed = next(index for index, run in runs if "build.sh" in run and "--push" in run)
    smoke = next(index for index, run in runs if "smoke-test.sh" in run)
    signs = [(index, run) for index, run in runs if "cosign sign" in run]
    assert len(signs) == 1
    sign_index, sign = signs[0]
    assert pushed < smoke < sign_index, "only a pushed image that passed the smoke test is signed"
    assert publish_steps.index(installer) < sign_index
    command = next(line.strip() for line in sign.splitlines() if line.strip().startswith("cosign sign"))
    # Keyless (no --key) and by digest, never by tag.
    assert command == 'cosign sign --yes "ghcr.io/${OWNER,,}/ego-openbao@${DIGEST}"'
    sign_step = publish_steps[sign_index]
    assert sign_step["env"]["DIGEST"] == "${{ steps.image.outputs.digest }}"

    notes_index, notes = next((index, run) for index, run in runs if '> "$RUNNER_TEMP/release-notes.md"' in run)
    release_index, release = next((index, run) for index, run in runs if "gh release create" in run)
    assert sign_index < notes_index < release_index
    for field in (
        "vault.enclave.uniqueId (MRENCLAVE)",
        "vault.enclave.signerId (MRSIGNER)",
        "vault.enclave.productId",
        "vault.enclave.securityVersion",
    ):
        assert field in notes
    assert 'product_id="$(enclave_field productID)"' in notes
    assert 'security_version="$(enclave_field securityVersion)"' in notes
    assert '--notes-file "$RUNNER_TEMP/release-notes.md"' in release
    assert publish_steps[release_index]["env"] == {"GH_TOKEN": "${{ github.token }}"}


def test_release_notes_step_writes_the_measurements_it_is_given(tmp_path: Path) -> None:
    """Run the notes step's own script with bash: the table holds exactly the build's outputs and enclave.json's."""
    workflow = load("ego-openbao-image")
    step = next(step for step in workflow["jobs"]["publish"]["steps"] if "release-notes.md" in step.get("run", ""))
    env = {
        "PATH": os.environ["PATH"],
        "OWNER": "Example-Org",
        "REPOSITORY": "Example-Org/confidential-vault",
        "UNIQUE_ID": "a" * 64,
        "SIGNER_ID": "b" * 64,
        "DIGEST": "sha256:" + "c" * 64,
        "GITHUB_REF_NAME": "ego-openbao-v2.6.2-ego1.9.0",
        "GITHUB_REF": "refs/tags/ego-openbao-v2.6.2-ego1.9.0",
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    enclave = json.loads((PROJECT_ROOT / "images" / "ego-openbao" / "enclave.json").read_text())
    notes = (tmp_path / "release-notes.md").read_text().splitlines()
    assert notes[0] == "### ego-openbao 2.6.2-ego1.9.0"
    assert f"| image | `ghcr.io/example-org/ego-openbao@sha256:{'c' * 64}` |" in notes
    assert f"| vault.enclave.uniqueId (MRENCLAVE) | `{'a' * 64}` |" in notes
    assert f"| vault.enclave.signerId (MRSIGNER) | `{'b' * 64}` |" in notes
    assert f"| vault.enclave.productId | `{enclave['productID']}` |" in notes
    assert f"| vault.enclave.securityVersion | `{enclave['securityVersion']}` |" in notes
    assert (
        "  --certificate-identity https://github.com/Example-Org/confidential-vault/.github/workflows/"
        "ego-openbao-image.yml@refs/tags/ego-openbao-v2.6.2-ego1.9.0 \\"
    ) in notes
    assert (tmp_path / "summary.md").read_text().splitlines() == notes
