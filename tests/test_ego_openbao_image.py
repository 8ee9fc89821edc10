"""The EGo-Vault image (`images/ego-vault/`): enclave config, entrypoint, stop script, Dockerfile and build script.

Nothing here needs Docker or SGX: the shell scripts run against stand-ins for `ego`, `ego-host` and `docker` that
record what they were asked to do.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

IMAGE_DIR = Path(__file__).resolve().parent.parent / "images" / "ego-vault"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
ENTRYPOINT = IMAGE_DIR / "docker-entrypoint.sh"
STOP_SCRIPT = IMAGE_DIR / "ego-vault-stop"
BUILD_SCRIPT = IMAGE_DIR / "build.sh"
SHELL_SCRIPTS = (ENTRYPOINT, STOP_SCRIPT, BUILD_SCRIPT)

# Every variable the official chart sets on the server container, from hashicorp/vault-helm at tag v0.34.1:
# templates/server-statefulset.yaml (`env:` of the `vault` container) and templates/_helpers.tpl (`vault.envs`,
# dev mode). Values from server.extraEnvironmentVars are the release's own choice and not listed here.
CHART_SERVER_ENV = frozenset(
    {
        "HOST_IP",
        "POD_IP",
        "VAULT_K8S_POD_NAME",
        "VAULT_K8S_NAMESPACE",
        "VAULT_ADDR",
        "VAULT_API_ADDR",
        "SKIP_CHOWN",
        "SKIP_SETCAP",
        "HOSTNAME",
        "VAULT_CLUSTER_ADDR",
        "VAULT_RAFT_NODE_ID",  # only with server.ha.raft.enabled
        "VAULT_REDUNDANCY_ZONE",  # only with raft redundancy zones
        "HOME",
        "VAULT_LOG_LEVEL",  # server.logLevel
        "VAULT_LOG_FORMAT",  # server.logFormat
        "VAULT_LICENSE_PATH",  # only with server.enterpriseLicense
        "VAULT_DEV_ROOT_TOKEN_ID",  # dev mode
        "VAULT_DEV_LISTEN_ADDRESS",  # dev mode
    }
)
# Set by the chart only in setups this image cannot run: raft (memory-mapped files, unsupported by EGo) and Vault
# Enterprise licences (the image builds the open-source code). Forwarding them would widen what the host controls.
CHART_ENV_FOR_UNSUPPORTED_SETUPS = frozenset({"VAULT_RAFT_NODE_ID", "VAULT_REDUNDANCY_ZONE", "VAULT_LICENSE_PATH"})
# HOME is the one chart variable the enclave must not take from the host: the chart's /home/vault exists only on the
# host, and dev mode writes its token file under HOME (failing to do so stops the server).
ENCLAVE_OWN_VALUE = frozenset({"HOME"})

# What the chart writes to and reads from the container file system (vault.args, vault.mounts at v0.34.1).
CHART_HOST_PATHS = frozenset({"/vault/data", "/tmp"})

FORBIDDEN_AT_START = ("ego sign", "ego-go", "go build", "git clone", "curl", "wget")


# --- enclave.json ----------------------------------------------------------------------------------------------------


class Mount(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    source: str | None = None
    target: str
    type: Literal["hostfs", "memfs"]
    readOnly: bool = False  # noqa: N815 - EGo's field name

    @model_validator(mode="after")
    def _hostfs_has_absolute_source(self) -> Mount:
        # A relative source is resolved against ego-host's working directory, which the chart does not fix.
        if self.type == "hostfs" and not (self.source or "").startswith("/"):
            raise ValueError(f"hostfs mount {self.target} needs an absolute source")
        return self


class EnvVar(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str | None = None
    fromHost: bool = False  # noqa: N815 - EGo's field name

    @model_validator(mode="after")
    def _value_or_from_host(self) -> EnvVar:
        if self.value is None and not self.fromHost:
            raise ValueError(f"env {self.name}: needs a value or fromHost")
        return self


class EmbeddedFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    source: str
    target: str


class EnclaveConfig(BaseModel):
    """EGo's enclave.json (docs/docs/reference/config.md, EGo v1.9.0), as strict as `ego sign` plus our rules."""

    model_config = ConfigDict(extra="forbid", strict=True)
    exe: str = Field(min_length=1)
    key: str = Field(min_length=1)
    debug: bool
    heapSize: int = Field(ge=512, le=16384)  # noqa: N815 - MB; EGo's minimum, and its maximum without largeheap
    executableHeap: bool = False  # noqa: N815
    productID: int = Field(ge=1)  # noqa: N815
    securityVersion: int = Field(ge=1)  # noqa: N815
    mounts: list[Mount] = []
    env: list[EnvVar] = []
    files: list[EmbeddedFile] = []

    @model_validator(mode="after")
    def _unique(self) -> EnclaveConfig:
        targets = [mount.target for mount in self.mounts]
        names = [variable.name for variable in self.env]
        if len(set(targets)) != len(targets) or len(set(names)) != len(names):
            raise ValueError("mount targets and env names must be unique")
        return self


def enclave_config(text: str | None = None) -> EnclaveConfig:
    return EnclaveConfig.model_validate_json(text or (IMAGE_DIR / "enclave.json").read_text())


def test_enclave_config_is_a_release_enclave() -> None:
    config = enclave_config()
    assert config.debug is False, "a debug enclave can be inspected by the host"
    assert config.heapSize >= 1024, "Vault needs headroom: start at 1024 MB or more"
    assert config.executableHeap is False


def test_enclave_model_rejects_what_ego_or_we_would_refuse() -> None:
    raw = json.loads((IMAGE_DIR / "enclave.json").read_text())
    for change in (
        {"heapSize": 256},
        {"debug": "yes"},
        {"mounts": [{"source": "data", "target": "/vault/data", "type": "hostfs"}]},
        {"env": [{"name": "VAULT_ADDR"}]},
        {"env": [{"name": "A", "fromHost": True}, {"name": "A", "fromHost": True}]},
        {"unknownSetting": 1},
    ):
        with pytest.raises(ValidationError):
            enclave_config(json.dumps({**raw, **change}))


def test_host_file_system_is_exposed_only_where_the_chart_needs_it() -> None:
    mounts = enclave_config().mounts
    hostfs = {mount.target: mount for mount in mounts if mount.type == "hostfs"}
    assert set(hostfs) == CHART_HOST_PATHS
    for target, mount in hostfs.items():
        assert mount.source == target, "the chart's paths are the same on the host and in the enclave"
        assert not mount.readOnly
    assert "/" not in {mount.target for mount in mounts}


def test_env_covers_exactly_the_chart_variables() -> None:
    env = enclave_config().env
    names = {variable.name for variable in env}
    from_host = {variable.name for variable in env if variable.fromHost}
    expected = CHART_SERVER_ENV - CHART_ENV_FOR_UNSUPPORTED_SETUPS
    assert names == expected
    assert from_host == expected - ENCLAVE_OWN_VALUE
    assert "VAULT_DEV_ROOT_TOKEN_ID" in from_host
    assert not names & CHART_ENV_FOR_UNSUPPORTED_SETUPS
    # OE_SIMULATION is read by ego-host outside the enclave; inside it would mean nothing.
    assert "OE_SIMULATION" not in names


def test_home_inside_the_enclave_is_writable_memory() -> None:
    home = next(variable for variable in enclave_config().env if variable.name == "HOME")
    assert home.fromHost is False
    # `/` is the enclave's in-memory file system; a hostfs mount would put the dev root token on the host.
    assert home.value == "/"


def test_ca_bundle_is_embedded() -> None:
    targets = {file.target for file in enclave_config().files}
    assert "/etc/ssl/certs/ca-certificates.crt" in targets


# --- Dockerfile ------------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(FROM argument, instructions) per stage."""
    result: list[tuple[str, list[tuple[str, str]]]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            result.append((rest, []))
        elif result:
            result[-1][1].append((keyword, rest))
    return result


def runtime_stage() -> list[tuple[str, str]]:
    return stages()[-1][1]


def stage(name: str) -> list[tuple[str, str]]:
    """The instructions of the stage `FROM ... AS name`."""
    [found] = [instructions for base, instructions in stages() if base.split()[-1] == name and " AS " in base]
    return found


def stage_base(name: str) -> str:
    """What the stage `name` is built FROM (an image or an earlier stage)."""
    [base] = [base.split(" AS ")[0] for base, _ in stages() if base.endswith(f" AS {name}")]
    return base


def arg_defaults(instructions: list[tuple[str, str]]) -> dict[str, str | None]:
    """ARG name -> default (None when declared without one) for the given instructions."""
    declared: dict[str, str | None] = {}
    for keyword, rest in instructions:
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            declared[name] = default if has_default else None
    return declared


def copy_destination(source: str) -> str:
    """Where the runtime stage puts `source` (the last word of its COPY line)."""
    for keyword, rest in runtime_stage():
        if keyword == "COPY" and source in rest.split():
            return rest.split()[-1]
    raise AssertionError(f"the runtime stage does not copy {source}")


def enclave_binary_in_image() -> str:
    return copy_destination(f"/build/{enclave_config().exe}")


def test_base_images_are_ego_v1_9_0_and_pinned() -> None:
    names = {base.split(" AS ")[1] for base, _ in stages() if " AS " in base}
    # The signed binary is compiled in EGo's toolchain image, through the `source` stage that holds the clone.
    base = stage_base("build")
    while base in names:
        base = stage_base(base)
    assert base == "ghcr.io/edgelesssys/ego-dev:v1.9.0"
    # The last stage is what `docker build` produces by default.
    assert stages()[-1][0] == "ghcr.io/edgelesssys/ego-deploy:v1.9.0 AS runtime"
    for base_and_name, _ in stages():
        image = base_and_name.split(" AS ")[0]
        if image in names or image == "scratch" or image.startswith("ui-$"):
            continue
        # Images from outside: EGo's, or the UI's Node image at an exact release (no floating `node:16`).
        assert (image.startswith("ghcr.io/edgelesssys/ego-") and image.endswith(":v1.9.0")) or re.fullmatch(
            r"node:\d+\.\d+\.\d+-(bookworm|bullseye)", image
        ), image


def test_signing_key_is_a_required_build_secret_never_copied() -> None:
    config = enclave_config()
    build = stage("build")
    workdir = [rest for keyword, rest in build if keyword == "WORKDIR"][-1]
    mounts = [re.search(r"--mount=(\S+)", rest) for keyword, rest in build if keyword == "RUN"]
    secret_mounts = [dict(part.split("=", 1) for part in m.group(1).split(",")) for m in mounts if m]
    assert secret_mounts == [
        {"type": "secret", "id": "signingkey", "target": f"{workdir}/{config.key}", "required": "true"}
    ], "the key must appear at exactly the path enclave.json names, or `ego sign` generates a new one"
    for keyword, rest in dockerfile_instructions():
        if keyword in {"COPY", "ADD"}:
            assert config.key not in rest
            assert ".pem" not in rest
        if keyword in {"ARG", "ENV"}:
            assert not re.match(r"(SIGNING_KEY|PRIVATE_KEY|KEY)\s*=", rest), "key material in a build arg"
    dockerignore = [
        line.strip()
        for line in (IMAGE_DIR / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignore[0] == "*", "the build context is an allow-list"
    assert f"!{config.key}" not in dockerignore


def test_runtime_stage_matches_the_chart() -> None:
    runtime = runtime_stage()
    assert copy_destination("docker-entrypoint.sh") == "/usr/local/bin/docker-entrypoint.sh"
    assert copy_destination("ego-vault-stop") == "/usr/local/bin/ego-vault-stop"
    assert ("STOPSIGNAL", "SIGINT") in runtime
    assert ("ENTRYPOINT", '["/usr/local/bin/docker-entrypoint.sh"]') in runtime
    assert [rest for keyword, rest in runtime if keyword == "USER"] == ["100:1000"]
    # The runtime stage carries no toolchain step: only the signed binary is copied from the build stage.
    copied_from_build = [rest for keyword, rest in runtime if keyword == "COPY" and "--from=build" in rest]
    assert len(copied_from_build) == 1


def test_image_user_is_the_charts_default_user(reference: Path) -> None:
    values = (reference / "charts" / "vault" / "0.34.1" / "values.yaml").read_text()
    uid = re.search(r"runAsUser: \{\{ \.Values\.server\.uid \| default (\d+) \}\}", values)
    gid = re.search(r"runAsGroup: \{\{ \.Values\.server\.gid \| default (\d+) \}\}", values)
    assert uid, "the chart's documented securityContext default moved"
    assert gid, "the chart's documented securityContext default moved"
    runtime = runtime_stage()
    assert [rest for keyword, rest in runtime if keyword == "USER"] == [f"{uid.group(1)}:{gid.group(1)}"]
    setup = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert f"--uid {uid.group(1)} --gid {gid.group(1)} " in setup
    assert f"--gid {gid.group(1)} vault" in setup
    assert f"chown {uid.group(1)}:{gid.group(1)} /vault/data" in setup


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes() -> None:
    shellcheck = tool("shellcheck")
    result = subprocess.run([shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def tool(name: str) -> str:
    """A linter from the virtualenv (requirements-dev.txt) or PATH; missing is a failure, not a skip."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found, f"{name} is not installed: pip install -r requirements-dev.txt"
    return found


# --- the signing step, run outside Docker ----------------------------------------------------------------------------

FAKE_UNIQUE_ID = "a" * 64
FAKE_SIGNER_ID = "b" * 64


def write_executable(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_ego(tmp_path: Path) -> Path:
    """A stand-in `ego` that logs each call (argv, pid, OE_SIMULATION) as a JSON line and prints fixed IDs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "ego",
        f"""
        #!{sys.executable}
        import json, os, sys
        with open({str(tmp_path / "ego-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(),
                                   "simulation": os.environ.get("OE_SIMULATION")}}) + "\\n")
        if sys.argv[1:2] == ["uniqueid"]:
            print({FAKE_UNIQUE_ID!r})
        elif sys.argv[1:2] == ["signerid"]:
            print({FAKE_SIGNER_ID!r})
        """,
    )
    return bin_dir


def ego_calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / "ego-calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def signing_step() -> str:
    """The shell command of the RUN that mounts the key, without the mount option."""
    for keyword, rest in stage("build"):
        if keyword == "RUN" and "type=secret" in rest:
            return re.sub(r"^--mount=\S+\s+", "", rest)
    raise AssertionError("no signing step")


def run_signing_step(tmp_path: Path, bin_dir: Path, **build_args: str) -> subprocess.CompletedProcess[str]:
    workdir = tmp_path / "build"
    workdir.mkdir()
    shutil.copy(IMAGE_DIR / "enclave.json", workdir / "enclave.json")
    (workdir / enclave_config().key).write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **build_args}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", signing_step()],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_signing_step_sets_the_heap_signs_and_records_the_identity(tmp_path: Path, fake_ego: Path) -> None:
    result = run_signing_step(tmp_path, fake_ego, ENCLAVE_HEAP_MB="2048", SIGNING_KEY_FINGERPRINT="sha256:00")
    assert result.returncode == 0, result.stderr
    signed = enclave_config((tmp_path / "build" / "enclave.json").read_text())
    assert signed.heapSize == 2048
    assert signed.model_dump(exclude={"heapSize"}) == enclave_config().model_dump(exclude={"heapSize"})
    calls = [call["argv"] for call in ego_calls(tmp_path)]
    assert calls[0] == ["sign", "enclave.json"]
    assert sorted(calls[1:]) == [["signerid", signed.exe], ["uniqueid", signed.exe]]
    identity = (tmp_path / "build" / "identity.env").read_text().split()
    assert identity == [f"ENCLAVE_UNIQUE_ID={FAKE_UNIQUE_ID}", f"ENCLAVE_SIGNER_ID={FAKE_SIGNER_ID}"]
    assert FAKE_UNIQUE_ID in result.stdout  # printed in the build log


@pytest.mark.parametrize("heap", ["256", "20000", "1g", ""])
def test_signing_step_refuses_a_bad_heap_before_signing(tmp_path: Path, fake_ego: Path, heap: str) -> None:
    result = run_signing_step(tmp_path, fake_ego, ENCLAVE_HEAP_MB=heap)
    assert result.returncode != 0
    assert "ENCLAVE_HEAP_MB" in result.stderr
    assert ego_calls(tmp_path) == []


def label_check_step() -> str:
    """The runtime stage's RUN that compares the label build args with the binary."""
    [step] = [rest for keyword, rest in runtime_stage() if keyword == "RUN" and "ENCLAVE_UNIQUE_ID" in rest]
    return step


@pytest.mark.parametrize(
    ("unique_id", "signer_id", "accepted"),
    [
        (FAKE_UNIQUE_ID, FAKE_SIGNER_ID, True),
        ("", "", False),  # a plain `docker build` without build.sh
        ("f" * 64, FAKE_SIGNER_ID, False),
        (FAKE_UNIQUE_ID, "f" * 64, False),
    ],
)
def test_runtime_stage_refuses_labels_that_do_not_match_the_binary(
    tmp_path: Path, fake_ego: Path, unique_id: str, signer_id: str, accepted: bool
) -> None:
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", label_check_step()],
        env={
            "PATH": f"{fake_ego}{os.pathsep}{os.environ['PATH']}",
            "ENCLAVE_UNIQUE_ID": unique_id,
            "ENCLAVE_SIGNER_ID": signer_id,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is accepted, result.stderr
    labels = next(rest for keyword, rest in runtime_stage() if keyword == "LABEL")
    assert 'confidential-vault.enclave.unique-id="${ENCLAVE_UNIQUE_ID}"' in labels
    assert 'confidential-vault.enclave.signer-id="${ENCLAVE_SIGNER_ID}"' in labels


# --- web UI ----------------------------------------------------------------------------------------------------------

# Facts of hashicorp/vault at tag v1.14.8 (the Dockerfile's default VAULT_REF), read from its sources:
# ui/package.json `engines.node`; ui/.yarnrc.yml; ui/.ember-cli `output-path` (relative to ui/); http/assets.go
# (`//go:build ui`, `//go:embed web_ui/*` in package http at the repository root).
PINNED_VAULT_REF = "v1.14.8"
UI_NODE_ENGINE_MAJOR = 16
UI_YARNRC = "nodeLinker: node-modules\n\nyarnPath: .yarn/releases/yarn-3.5.0.cjs\n"
UI_YARN_RELEASE = ".yarn/releases/yarn-3.5.0.cjs"
UI_EMBER_OUTPUT_PATH = "../http/web_ui"
UI_EMBED_DIR = "http/web_ui"


def stage_workdir(name: str) -> str:
    """The last WORKDIR of a stage, following FROM <stage> back to the stage that set one."""
    workdirs = [rest for keyword, rest in stage(name) if keyword == "WORKDIR"]
    if workdirs:
        return workdirs[-1]
    return stage_workdir(stage_base(name))


def workdir_of_build_step() -> str:
    """The working directory of the RUN that calls ego-go (inherited from `source` unless the stage changes it)."""
    workdir = stage_workdir(stage_base("build"))
    for keyword, rest in stage("build"):
        if keyword == "WORKDIR":
            workdir = rest
        if keyword == "RUN" and "ego-go build" in rest:
            return workdir
    raise AssertionError("no ego-go build step")


def build_step() -> str:
    """The build stage's RUN that calls ego-go."""
    [step] = [rest for keyword, rest in stage("build") if keyword == "RUN" and "ego-go build" in rest]
    return step


def ui_step() -> str:
    """The ui-true stage's RUN that builds the assets."""
    [step] = [rest for keyword, rest in stage("ui-true") if keyword == "RUN"]
    return step


def test_ui_stage_runs_the_node_release_the_pinned_ref_declares() -> None:
    # The engines fact above holds for this ref only: moving VAULT_REF means re-reading ui/package.json.
    assert arg_defaults(stage("source"))["VAULT_REF"] == PINNED_VAULT_REF
    image = stage_base("ui-true")
    match = re.fullmatch(r"node:(\d+)\.\d+\.\d+-[a-z]+", image)
    assert match, f"{image}: pin an exact Node release and distribution"
    assert int(match.group(1)) == UI_NODE_ENGINE_MAJOR


def test_vault_ui_picks_the_ui_stage_and_defaults_to_true() -> None:
    global_args = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            break
        global_args.append((keyword, rest))
    # Before the first FROM, so that FROM can use it; default on (the release sets `ui = true`).
    assert ("ARG", "VAULT_UI=true") in global_args
    assert stage_base("ui") == "ui-${VAULT_UI}"
    assert stage_base("ui-false") == "scratch", "VAULT_UI=false must not pull the Node image"
    # Declared without a default in the stages that read it, so they see the global value.
    assert arg_defaults(stage("build"))["VAULT_UI"] is None
    assert arg_defaults(runtime_stage())["VAULT_UI"] is None
    labels = next(rest for keyword, rest in runtime_stage() if keyword == "LABEL")
    assert 'confidential-vault.vault.ui="${VAULT_UI}"' in labels


def test_ui_assets_land_where_the_ui_tag_embeds_them() -> None:
    # `go build .` runs in the clone, whose http package embeds http/web_ui.
    embed_dir = str(Path(workdir_of_build_step()) / UI_EMBED_DIR)
    [copy] = [rest.split() for keyword, rest in stage("build") if keyword == "COPY" and "--from=ui" in rest]
    assert copy == ["--from=ui", embed_dir, embed_dir]
    # ui-true: Ember writes to output-path relative to ui/; ui-false: an empty directory at the same path.
    assert os.path.normpath(Path(stage_workdir("ui-true")) / UI_EMBER_OUTPUT_PATH) == embed_dir
    assert stage_workdir("ui-false") == embed_dir
    # The UI is built from the build's own clone, not a second one that could resolve the ref differently.
    [ui_copy] = [rest.split() for keyword, rest in stage("ui-true") if keyword == "COPY"]
    assert ui_copy == ["--from=source", f"{stage_workdir('source')}/ui", f"{stage_workdir('source')}/ui"]
    assert not any("git clone" in rest for keyword, rest in stage("ui-true") + stage("build") if keyword == "RUN")


@pytest.fixture
def fake_node(tmp_path: Path) -> Path:
    """A stand-in `node` that logs argv and, for `<yarn> run build`, writes what `ember build` would write to
    $FAKE_UI_OUTPUT (relative to the working directory; Vault 1.14.8's output-path by default)."""
    bin_dir = tmp_path / "node-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "node",
        f"""
        #!{sys.executable}
        import json, os, pathlib, sys
        with open({str(tmp_path / "node-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[2:] == ["run", "build"]:
            out = pathlib.Path(os.environ.get("FAKE_UI_OUTPUT", {UI_EMBER_OUTPUT_PATH!r}))
            out.mkdir(parents=True, exist_ok=True)
            (out / "index.html").write_text("<html>vault</html>")
            (out / "metadata.json").write_text("{{}}")
        """,
    )
    return bin_dir


def run_ui_step(
    tmp_path: Path, bin_dir: Path, yarnrc: str = UI_YARNRC, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    ui_dir = tmp_path / "src" / "ui"
    (ui_dir / ".yarn" / "releases").mkdir(parents=True)
    (ui_dir / UI_YARN_RELEASE).write_text("// yarn")
    (ui_dir / ".yarnrc.yml").write_text(yarnrc)
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", ui_step()],
        cwd=ui_dir,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    log = tmp_path / "node-calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def test_ui_step_builds_with_the_checked_in_yarn_into_the_embed_dir(tmp_path: Path, fake_node: Path) -> None:
    result, calls = run_ui_step(tmp_path, fake_node)
    assert result.returncode == 0, result.stderr
    assert calls == [[UI_YARN_RELEASE, "install", "--immutable"], [UI_YARN_RELEASE, "run", "build"]]
    assert (tmp_path / "src" / UI_EMBED_DIR / "index.html").is_file()


def test_ui_step_refuses_a_ui_not_built_with_a_checked_in_yarn(tmp_path: Path, fake_node: Path) -> None:
    # e.g. a newer Vault or OpenBao that builds its UI with pnpm: no yarnPath.
    result, calls = run_ui_step(tmp_path, fake_node, yarnrc="nodeLinker: node-modules\n")
    assert result.returncode != 0
    assert "VAULT_UI=false" in result.stderr
    assert calls == []


def test_ui_step_fails_when_the_build_writes_elsewhere(tmp_path: Path, fake_node: Path) -> None:
    # OpenBao releases that write to internal/http/web_ui would otherwise leave the embed directory empty.
    result, _ = run_ui_step(tmp_path, fake_node, FAKE_UI_OUTPUT="../internal/http/web_ui")
    assert result.returncode != 0
    assert "index.html" in result.stderr


@pytest.fixture
def fake_ego_go(tmp_path: Path) -> Path:
    """A stand-in `ego-go` that logs its argv as a JSON line."""
    bin_dir = tmp_path / "ego-go-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "ego-go",
        f"""
        #!{sys.executable}
        import json, sys
        with open({str(tmp_path / "ego-go-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        """,
    )
    return bin_dir


def run_build_step(
    tmp_path: Path, bin_dir: Path, *, assets: bool, **build_args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    clone = tmp_path / "src"
    (clone / UI_EMBED_DIR).mkdir(parents=True)
    (clone / UI_EMBED_DIR / ".gitkeep").touch()  # what the repository itself has there
    if assets:
        (clone / UI_EMBED_DIR / "index.html").write_text("<html>vault</html>")
    # The build stage's ARG defaults, as BuildKit would set them (VAULT_UI comes from the global ARG).
    defaults = {name: value or "" for name, value in arg_defaults(stage("build")).items()}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", build_step()],
        cwd=clone,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **defaults, **build_args},
        capture_output=True,
        text=True,
        check=False,
    )
    log = tmp_path / "ego-go-calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def go_tags(argv: list[str]) -> set[str]:
    """The build tags of a `go build` command line (the last -tags wins, as in go)."""
    tags = ""
    for i, arg in enumerate(argv):
        if arg == "-tags":
            tags = argv[i + 1]
        elif arg.startswith("-tags="):
            tags = arg.split("=", 1)[1]
    return {tag for tag in re.split(r"[,\s]+", tags) if tag}


def test_build_step_compiles_with_the_ui_tag_and_the_build_flags(tmp_path: Path, fake_ego_go: Path) -> None:
    result, calls = run_build_step(tmp_path, fake_ego_go, assets=True, VAULT_UI="true")
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert argv[0] == "build"
    assert "-trimpath" in argv, "GO_BUILD_FLAGS' default must still reach go build"
    assert go_tags(argv) == {"ui"}
    assert argv[argv.index("-o") + 1] == f"/build/{enclave_config().exe}"


def test_build_step_adds_ui_to_extra_tags(tmp_path: Path, fake_ego_go: Path) -> None:
    result, calls = run_build_step(
        tmp_path, fake_ego_go, assets=True, VAULT_UI="true", GO_TAGS="netgo", GO_BUILD_FLAGS="-trimpath -v"
    )
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert go_tags(argv) == {"netgo", "ui"}
    assert "-v" in argv


def test_build_step_without_ui_leaves_the_tag_out(tmp_path: Path, fake_ego_go: Path) -> None:
    result, calls = run_build_step(tmp_path, fake_ego_go, assets=False, VAULT_UI="false")
    assert result.returncode == 0, result.stderr
    [argv] = calls
    assert "ui" not in go_tags(argv)


@pytest.mark.parametrize(
    ("build_args", "assets", "message"),
    [
        ({"VAULT_UI": "true"}, False, "index.html"),  # only .gitkeep: -tags ui would embed an empty UI
        ({"VAULT_UI": "yes"}, True, "VAULT_UI"),
        ({"VAULT_UI": ""}, True, "VAULT_UI"),
        ({"VAULT_UI": "true", "GO_BUILD_FLAGS": "-trimpath -tags netgo"}, True, "GO_TAGS"),
        ({"VAULT_UI": "true", "GO_BUILD_FLAGS": "-tags=netgo"}, True, "GO_TAGS"),
    ],
)
def test_build_step_refuses_a_build_that_would_lose_or_fake_the_ui(
    tmp_path: Path, fake_ego_go: Path, build_args: dict[str, str], assets: bool, message: str
) -> None:
    result, calls = run_build_step(tmp_path, fake_ego_go, assets=assets, **build_args)
    assert result.returncode != 0
    assert message in result.stderr
    assert calls == [], "nothing may be compiled"


# --- docker-entrypoint.sh --------------------------------------------------------------------------------------------


def test_entrypoint_neither_builds_nor_signs() -> None:
    text = ENTRYPOINT.read_text()
    for forbidden in FORBIDDEN_AT_START:
        assert forbidden not in text
    assert re.search(r"^exec ego run ", text, re.MULTILINE)


def run_entrypoint(bin_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.wait(timeout=30)
    return process


@pytest.mark.parametrize(
    "chart_args",
    [
        ["server", "-config=/tmp/storageconfig.hcl"],  # standalone/HA (vault.args)
        ["server", "-dev"],  # dev mode
        ["server", "-config=/tmp/with space.hcl", "-log-level=debug"],  # server.extraArgs, spaces kept
    ],
)
def test_entrypoint_execs_ego_run_with_the_charts_arguments(
    tmp_path: Path, fake_ego: Path, chart_args: list[str]
) -> None:
    process = run_entrypoint(fake_ego, "vault", *chart_args, OE_SIMULATION="1")
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    [call] = ego_calls(tmp_path)
    assert call["argv"] == ["run", enclave_binary_in_image(), *chart_args]
    assert call["pid"] == process.pid, "ego must replace the shell (exec), not run as its child"
    assert call["simulation"] == "1", "OE_SIMULATION must reach ego-host"


def test_entrypoint_without_a_command_fails_without_starting_ego(tmp_path: Path, fake_ego: Path) -> None:
    process = run_entrypoint(fake_ego, "vault")
    assert process.returncode == 64
    assert ego_calls(tmp_path) == []


# --- ego-vault-stop --------------------------------------------------------------------------------------------------


def start_fake_host(tmp_path: Path, name: str, *, handle_sigint: bool) -> subprocess.Popen[bytes]:
    """A process named like ego-host that records the signal it got (or ignores SIGINT)."""
    ready = tmp_path / f"{name}.ready"
    script = write_executable(
        tmp_path / "fake-host",
        f"""
        #!{sys.executable}
        import pathlib, signal, sys, time
        pathlib.Path("/proc/self/comm").write_text({name!r})
        def stop(signum, frame):
            pathlib.Path({str(tmp_path / "signal")!r}).write_text(str(signum))
            sys.exit(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP):
            signal.signal(sig, stop)
        if not {handle_sigint!r}:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        pathlib.Path({str(ready)!r}).touch()
        while True:
            time.sleep(0.05)
        """,
    )
    host = subprocess.Popen([str(script)])
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline, "the stand-in ego-host did not start"
        time.sleep(0.02)
    return host


def run_stop(*args: str, target: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("EGO_VAULT_STOP_PROCESS", None)
    if target:
        env["EGO_VAULT_STOP_PROCESS"] = target
    return subprocess.run(
        ["/bin/sh", str(STOP_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def unique_name() -> str:
    return f"eh-{uuid.uuid4().hex[:10]}"  # /proc comm holds 15 characters


def test_stop_sends_sigint_to_the_enclave_host_and_waits(tmp_path: Path) -> None:
    name = unique_name()
    host = start_fake_host(tmp_path, name, handle_sigint=True)
    try:
        result = run_stop("--timeout", "10", target=name)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "signal").read_text() == str(int(signal.SIGINT))
        # It returned only after the host was gone (a zombie counts as gone).
        assert host.poll() is not None or Path(f"/proc/{host.pid}/status").read_text().count("zombie")
    finally:
        host.kill()
        host.wait()


def test_stop_targets_ego_host_by_default() -> None:
    # Read, not run: running it would SIGINT every real `ego-host` on the machine. The behaviour tests above
    # drive the same code path with a unique process name through EGO_VAULT_STOP_PROCESS.
    script = (IMAGE_DIR / "ego-vault-stop").read_text()
    assert "target=${EGO_VAULT_STOP_PROCESS:-ego-host}" in script


def test_stop_reports_a_host_that_does_not_exit(tmp_path: Path) -> None:
    name = unique_name()
    host = start_fake_host(tmp_path, name, handle_sigint=False)
    try:
        result = run_stop("--timeout", "1", target=name)
        assert result.returncode == 1
        assert "still running" in result.stderr
        assert host.poll() is None
    finally:
        host.kill()
        host.wait()


def test_stop_without_a_host_succeeds() -> None:
    result = run_stop(target=unique_name())
    assert result.returncode == 0
    assert "nothing to stop" in result.stdout


def test_stop_rejects_bad_options() -> None:
    assert run_stop("--timeout", "soon", target=unique_name()).returncode == 64
    assert run_stop("--bogus", target=unique_name()).returncode == 64


# --- build.sh --------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_docker(tmp_path: Path) -> Path:
    """A stand-in `docker` that logs each call and plays buildx: it writes identity.env for `--output type=local`
    and a metadata file for `--metadata-file`."""
    bin_dir = tmp_path / "docker-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "docker",
        f"""
        #!{sys.executable}
        import json, pathlib, sys
        args = sys.argv[1:]
        with open({str(tmp_path / "docker-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(args) + "\\n")
        for i, arg in enumerate(args):
            if arg == "--output" and args[i + 1].startswith("type=local,dest="):
                dest = pathlib.Path(args[i + 1].split("dest=", 1)[1])
                dest.joinpath("identity.env").write_text(
                    "ENCLAVE_UNIQUE_ID={FAKE_UNIQUE_ID}\\nENCLAVE_SIGNER_ID={FAKE_SIGNER_ID}\\n")
            if arg == "--metadata-file":
                pathlib.Path(args[i + 1]).write_text(json.dumps({{"containerimage.digest": "sha256:{"c" * 64}"}}))
        """,
    )
    return bin_dir


def signing_key(path: Path) -> Path:
    subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    return path


def run_build(tmp_path: Path, bin_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    log = tmp_path / "docker-calls.jsonl"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args],
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def build_args(call: list[str]) -> dict[str, str]:
    return dict(call[i + 1].split("=", 1) for i, arg in enumerate(call) if arg == "--build-arg")


def test_build_script_signs_via_secret_and_labels_with_the_identity(tmp_path: Path, fake_docker: Path) -> None:
    key = signing_key(tmp_path / "key.pem")
    result, calls = run_build(
        tmp_path, fake_docker, "--key", str(key), "--image", "registry.example/ego-vault", "--tag", "t1", "--push"
    )
    assert result.returncode == 0, result.stderr
    identity_call, image_call = calls
    for call in calls:
        assert call[:2] == ["buildx", "build"]
        assert call[call.index("--secret") + 1] == f"id=signingkey,src={key}"
        assert not any(key.read_text().splitlines()[1] in arg for arg in call), "key material on the command line"
    assert identity_call[identity_call.index("--target") + 1] == "identity"
    assert "--push" not in identity_call
    assert build_args(image_call)["ENCLAVE_UNIQUE_ID"] == FAKE_UNIQUE_ID
    assert build_args(image_call)["ENCLAVE_SIGNER_ID"] == FAKE_SIGNER_ID
    assert "--target" not in image_call, "the runtime stage is the default (last) stage"
    assert image_call[image_call.index("--tag") + 1] == "registry.example/ego-vault:t1"
    assert "--push" in image_call
    # What an operator copies into the stack config.
    assert f"vault.enclave.uniqueId {FAKE_UNIQUE_ID}" in result.stdout
    assert f"vault.enclave.signerId {FAKE_SIGNER_ID}" in result.stdout
    assert f"vault.image.digest sha256:{'c' * 64}" in result.stdout


def test_build_script_fingerprint_follows_the_key(tmp_path: Path, fake_docker: Path) -> None:
    first, second = signing_key(tmp_path / "a.pem"), signing_key(tmp_path / "b.pem")
    fingerprints = []
    for key in (first, first, second):
        result, calls = run_build(tmp_path, fake_docker, "--key", str(key), "--image", "r/ego-vault")
        assert result.returncode == 0, result.stderr
        assert "--load" in calls[1]
        fingerprints.append(build_args(calls[0])["SIGNING_KEY_FINGERPRINT"])
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_build_script_requires_a_key(tmp_path: Path, fake_docker: Path) -> None:
    result, calls = run_build(tmp_path, fake_docker, "--image", "r/ego-vault")
    assert result.returncode != 0
    assert "--key" in result.stderr
    assert calls == []


def test_build_script_builds_the_ui_unless_told_not_to(tmp_path: Path, fake_docker: Path) -> None:
    key = signing_key(tmp_path / "key.pem")
    for extra, expected in (((), "true"), (("--vault-ui", "false"), "false")):
        result, calls = run_build(tmp_path, fake_docker, "--key", str(key), "--image", "r/ego-vault", *extra)
        assert result.returncode == 0, result.stderr
        assert [build_args(call)["VAULT_UI"] for call in calls] == [expected, expected]


def test_build_script_rejects_a_bad_ui_value(tmp_path: Path, fake_docker: Path) -> None:
    key = signing_key(tmp_path / "key.pem")
    result, calls = run_build(tmp_path, fake_docker, "--key", str(key), "--image", "r/ego-vault", "--vault-ui", "yes")
    assert result.returncode != 0
    assert "--vault-ui" in result.stderr
    assert calls == []
