"""The EGo-OpenBao image (`images/ego-openbao/`): enclave config, the measured OpenBao configuration, Dockerfile steps
(the attested-listener bootstrap's included), entrypoint and stop path, build script, smoke test.

Nothing here needs Docker or SGX: the Dockerfile's shell steps and the scripts run against stand-ins for `ego`,
`ego-host`, `ego-go`, `git`, `make`, `npm` and `docker` that record what they were asked to do. The openbao chart's own
scripts (server command, preStop) are read from the chart tree in the reference directory and run as the pod runs
them, under BusyBox `sh` (the image's /bin/sh).
"""

from __future__ import annotations

import hashlib
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
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

IMAGE_DIR = Path(__file__).resolve().parent.parent / "images" / "ego-openbao"
DOCKERFILE = IMAGE_DIR / "Dockerfile"
MEASURED_CONFIG = IMAGE_DIR / "bootstrap" / "measured" / "openbao.hcl"
SEAL_CONFIG = IMAGE_DIR / "bootstrap" / "measured" / "seal-static.hcl"
FILE_STORAGE_CONFIG = IMAGE_DIR / "bootstrap" / "measured" / "storage-file.hcl"
POSTGRESQL_STORAGE_CONFIG = IMAGE_DIR / "bootstrap" / "measured" / "storage-postgresql.hcl"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BOOTSTRAP_DIR = IMAGE_DIR / "bootstrap"
KEYRELEASE_DIR = BOOTSTRAP_DIR / "keyrelease"
ENTRYPOINT = IMAGE_DIR / "docker-entrypoint.sh"
BUILD_SCRIPT = IMAGE_DIR / "build.sh"
SMOKE_TEST = IMAGE_DIR / "smoke-test.sh"
WORKFLOW = IMAGE_DIR.parent.parent / ".github" / "workflows" / "ego-openbao-image.yml"
SHELL_SCRIPTS = (ENTRYPOINT, BUILD_SCRIPT, SMOKE_TEST)

CHART = ("openbao", "0.29.2")

# Facts of openbao/openbao at tag v2.6.2, read from the repository: the tag's commit (refs/tags/v2.6.2), ui/package.json
# (`engines.node`, `packageManager`), ui/.ember-cli (`output-path`, relative to ui/), http/assets.go (`//go:build ui`,
# `//go:embed web_ui/*` in package http at the root), the Makefile target the release workflow runs (build-ui job of
# .github/workflows/release.yml) and goreleaser.linux.yaml (tag `ui`, the version variables it stamps).
PINNED_REF = "v2.6.2"
PINNED_COMMIT = "dd9c19c37a878cf4a81b18efb8d6f0599c7da923"
UI_NODE_ENGINE_MAJOR = 20
UI_PNPM_VERSION = "10.33.0"
UI_MAKE_TARGET = "static-dist"
UI_EMBER_OUTPUT_PATH = "../http/web_ui"
UI_EMBED_DIR = "http/web_ui"
RELEASE_GO_TAGS = {"ui"}
# The build tag of the attested-listener bootstrap's hook and EGo adapter (bootstrap/README.md).
BOOTSTRAP_GO_TAG = "cv_enclave"
VERSION_PACKAGE = "github.com/openbao/openbao/version"
EGO_VERSION = "1.9.0"
# The enclave.json of the Vault 1.14.8 image this one replaces (known advisories); clients require a higher one.
VAULT_1_14_SECURITY_VERSION = 1

# What the chart renders for the official image that OpenBao's server never reads (v2.6.2's sources): the CLI's
# address, the pod's IPs and host name, the official entrypoint's switches, raft's node id. Not forwarded: each would
# only be attack surface (README.md, "Environment from the host").
CHART_ENV_NOT_FORWARDED = frozenset(
    {"BAO_ADDR", "HOST_IP", "POD_IP", "HOSTNAME", "SKIP_CHOWN", "SKIP_SETCAP", "BAO_RAFT_NODE_ID"}
)
# The security version that closed issue 19 (MarbleRun premain, unconstrained database URL and key ids): every
# enclave before it must stop getting the seal key and stop passing verification.
HOST_STEERING_FIX_SECURITY_VERSION = 3
MEASURED_DIR = IMAGE_DIR / "bootstrap" / "measured"

# Variables the release (components/openbao.py) sets besides the chart's: the dev root token from a Kubernetes Secret,
# which OpenBao reads before the chart's VAULT_DEV_ROOT_TOKEN_ID (whose value would sit in the Helm values).
RELEASE_ENV = frozenset({"BAO_DEV_ROOT_TOKEN_ID", "BAO_PG_CONNECTION_URL"})
# What the kubelet sets in every container and OpenBao's `service_registration "kubernetes"` reads (the API server's
# address), with the service account's token and CA (SERVICE_ACCOUNT_DIR) to label the active pod.
KUBELET_ENV = frozenset({"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"})
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

FORBIDDEN_AT_START = ("ego sign", "ego-go", "go build", "git clone", "curl", "wget", "npm", "pnpm")


# --- the bootstrap's constants, read from its Go source ---------------------------------------------------------------


def go_string_constants(sources: tuple[Path, ...] | None = None) -> dict[str, str]:
    """The string constants of the bootstrap package (`Name = "literal"` or `Name = Other + "literal"` ...), or of
    the given Go files."""
    constants: dict[str, str] = {}
    line_pattern = re.compile(
        r'^\s*(?:const\s+)?([A-Z]\w*)\s*=\s*((?:"[^"\\]*"|[A-Z]\w*)(?:\s*\+\s*(?:"[^"\\]*"|[A-Z]\w*))*)\s*$'
    )
    for source in sources or tuple(sorted(BOOTSTRAP_DIR.glob("*.go"))):
        if source.name.endswith("_test.go"):
            continue
        for line in source.read_text().splitlines():
            match = line_pattern.match(line.split("//", 1)[0].rstrip())
            if match:
                parts = [part.strip() for part in match.group(2).split("+")]
                constants[match.group(1)] = "".join(
                    part[1:-1] if part.startswith('"') else constants[part] for part in parts
                )
    return constants


def bootstrap_constant(name: str) -> str:
    constants = go_string_constants()
    assert name in constants, f"the bootstrap declares no string constant {name}"
    return constants[name]


def bootstrap_env() -> set[str]:
    """The variables the bootstrap reads from the host (its Env* constants)."""
    names = {value for name, value in go_string_constants().items() if name.startswith("Env")}
    assert names, "the bootstrap reads no variables?"
    return names


def keyrelease_constant(name: str) -> str:
    """A string constant of the key release (bootstrap/keyrelease: config.go has the host's settings, sealfile.go
    the seal key files)."""
    constants = go_string_constants((KEYRELEASE_DIR / "config.go", KEYRELEASE_DIR / "sealfile.go"))
    assert name in constants, f"keyrelease declares no string constant {name}"
    return constants[name]


def keyrelease_host_env() -> set[str]:
    """The variables the key release reads from the host (the Env* constants of keyrelease/config.go, where
    ConfigFromEnv reads them; EnvSealKeyID is the bootstrap's own)."""
    names = {
        value for name, value in go_string_constants((KEYRELEASE_DIR / "config.go",)).items() if name.startswith("Env")
    }
    assert names, "the key release reads no variables?"
    return names


def bootstrap_module() -> str:
    match = re.search(r"^module (\S+)$", (BOOTSTRAP_DIR / "go.mod").read_text(), re.M)
    assert match
    return match.group(1)


# --- the chart, read from the reference tree --------------------------------------------------------------------------


def chart_dir(reference: Path) -> Path:
    directory = reference / "charts" / CHART[0] / CHART[1] / "chart"
    assert (directory / "templates" / "server-statefulset.yaml").is_file(), f"no chart tree at {directory}"
    return directory


def helpers(reference: Path) -> str:
    return (chart_dir(reference) / "templates" / "_helpers.tpl").read_text()


def define(reference: Path, name: str) -> str:
    """The body of `{{- define "name" -}}` in the chart's _helpers.tpl."""
    match = re.search(r'\{\{-? define "' + re.escape(name) + r'" -?\}\}(.*?)\{\{- end -\}\}', helpers(reference), re.S)
    assert match, f"_helpers.tpl has no define {name}"
    return match.group(1)


def chart_server_script(reference: Path, mode: Literal["standalone", "dev"]) -> str:
    """The shell script the chart passes to `/bin/sh -ec` (openbao.args), with server.extraArgs empty."""
    body = define(reference, "openbao.args")
    standalone, dev = re.split(r"\{\{ else if eq \.mode \"dev\" \}\}", body)
    part = standalone if mode == "standalone" else dev
    block = part.split("- |\n", 1)[1]
    block = re.split(r"\n\s*\{\{", block)[0]  # up to the next template action
    script = textwrap.dedent(block).replace(" {{ .Values.server.extraArgs }}", "")
    return "\n".join(line.rstrip() for line in script.splitlines()) + "\n"


def chart_pre_stop(reference: Path, sleep_seconds: int) -> list[str]:
    """The preStop exec command of the server container, as rendered with server.preStopSleepSeconds."""
    template = (chart_dir(reference) / "templates" / "server-statefulset.yaml").read_text()
    match = re.search(
        r'preStop:\s*exec:\s*command: \[\s*"(/bin/sh)", "(-c)",.*?"(sleep \{\{ \.Values\.server\.preStopSleepSeconds '
        r'\}\} [^"]*)"',
        template,
        re.S,
    )
    assert match, "the chart's preStop moved"
    shell, flag, command = match.groups()
    return [shell, flag, command.replace("{{ .Values.server.preStopSleepSeconds }}", str(sleep_seconds))]


def chart_server_env(reference: Path) -> set[str]:
    """Every variable the chart can set on the server container (the `env:` list, with openbao.envs for dev mode).
    server.extraEnvironmentVars/extraSecretEnvironmentVars are the release's own choice and not listed."""
    template = (chart_dir(reference) / "templates" / "server-statefulset.yaml").read_text()
    env_block = template.split("\n          env:\n", 1)[1].split("\n          volumeMounts:", 1)[0]
    names = set(re.findall(r"- name: ([A-Z_][A-Z0-9_]*)\s*$", env_block, re.M))
    names |= set(re.findall(r"- name: ([A-Z_][A-Z0-9_]*)\s*$", define(reference, "openbao.envs"), re.M))
    assert {"HOME", "BAO_ADDR", "VAULT_DEV_ROOT_TOKEN_ID"} <= names, f"the env parser found only {sorted(names)}"
    return names


def chart_values(reference: Path) -> dict:
    return yaml.safe_load((chart_dir(reference) / "values.yaml").read_text())


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
    assert config.heapSize >= 1024, "OpenBao needs headroom: README.md, 'Heap'"
    assert config.executableHeap is False
    assert config.exe == "bao"


def test_security_version_rejects_the_vault_1_14_enclaves() -> None:
    # Same signer and product as the Vault 1.14.8 image: a client that requires this securityVersion or more refuses
    # every enclave built from Vault 1.14.8.
    config = enclave_config()
    assert config.productID == 1
    assert config.securityVersion > VAULT_1_14_SECURITY_VERSION


def test_security_version_rejects_the_enclaves_the_host_could_steer() -> None:
    # Builds before the premain refusal and the measured-in configuration could be steered by the host (issue 19):
    # clients and the release policy that require this version refuse them all.
    assert enclave_config().securityVersion >= HOST_STEERING_FIX_SECURITY_VERSION


def test_enclave_model_rejects_what_ego_or_we_would_refuse() -> None:
    raw = json.loads((IMAGE_DIR / "enclave.json").read_text())
    for change in (
        {"heapSize": 256},
        {"debug": "yes"},
        {"mounts": [{"source": "data", "target": "/openbao/data", "type": "hostfs"}]},
        {"env": [{"name": "BAO_ADDR"}]},
        {"env": [{"name": "A", "fromHost": True}, {"name": "A", "fromHost": True}]},
        {"unknownSetting": 1},
    ):
        with pytest.raises(ValidationError):
            enclave_config(json.dumps({**raw, **change}))


# Where the AKS workload identity webhook projects the service account token (azure-workload-identity's
# webhook: volume `azure-identity-token`, mount path /var/run/secrets/azure/tokens).
WORKLOAD_IDENTITY_TOKEN_DIR = "/var/run/secrets/azure/tokens"
# What the webhook injects into every container of a pod labelled azure.workload.identity/use: "true".
WORKLOAD_IDENTITY_ENV = frozenset(
    {"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST"}
)


def test_host_file_system_is_exposed_only_where_the_chart_puts_the_data(reference: Path) -> None:
    data_path = chart_values(reference)["server"]["dataStorage"]["mountPath"]
    hostfs = {mount.target: mount for mount in enclave_config().mounts if mount.type == "hostfs"}
    assert set(hostfs) == {data_path, WORKLOAD_IDENTITY_TOKEN_DIR, SERVICE_ACCOUNT_DIR}, (
        "the configuration is embedded now: nothing else comes from the host's disk"
    )
    assert hostfs[data_path].source == data_path, "the chart's path is the same on the host and in the enclave"
    assert hostfs[data_path].readOnly is False, 'storage "file" writes there'
    # The projected service account token the key release exchanges with Entra: read-only, and the one directory
    # AZURE_FEDERATED_TOKEN_FILE may name (keyrelease.FederatedTokenDir).
    tokens = hostfs[WORKLOAD_IDENTITY_TOKEN_DIR]
    assert (tokens.source, tokens.readOnly) == (WORKLOAD_IDENTITY_TOKEN_DIR, True)
    assert keyrelease_constant("FederatedTokenDir") == WORKLOAD_IDENTITY_TOKEN_DIR
    # The pod's Kubernetes service account (token, CA, namespace), read-only: `service_registration "kubernetes"`
    # labels the active pod with it. Host-supplied labels decide routing only (storage-postgresql.hcl says why).
    account = hostfs[SERVICE_ACCOUNT_DIR]
    assert (account.source, account.readOnly) == (SERVICE_ACCOUNT_DIR, True)
    # /tmp (where the chart renders its config, which the enclave no longer reads) is enclave memory: temp files
    # OpenBao may write (e.g. -dev-tls certificates) stay inside.
    [tmp] = [mount for mount in enclave_config().mounts if mount.target == "/tmp"]
    assert tmp.type == "memfs"


def test_no_mount_covers_what_must_stay_in_enclave_memory() -> None:
    # A mount at or above these paths would put the listener key, or the embedded configuration, on the host's side.
    in_memory = [
        bootstrap_constant("ListenerDir"),
        bootstrap_constant("KeyPath"),
        keyrelease_constant("SealDir"),
        keyrelease_constant("SealKeyPath"),
        keyrelease_constant("PreviousSealKeyPath"),
        *(path for path, _ in measured_files()),
        "/edg/hostfs",  # MarbleRun's host mount, whose presence the bootstrap refuses (bootstrap/premain.go)
    ]
    for mount in enclave_config().mounts:
        for path in in_memory:
            assert path != mount.target, (mount, path)
            assert not path.startswith(mount.target.rstrip("/") + "/"), (mount, path)


def test_env_covers_every_variable_the_chart_sets_and_the_bootstrap_reads(reference: Path) -> None:
    chart_env = chart_server_env(reference)
    # The key release (attested unseal) reads the workload identity the webhook injects, and the previous key id.
    assert keyrelease_host_env() >= WORKLOAD_IDENTITY_ENV | {"CV_SEAL_PREVIOUS_KEY_ID"}
    assert "CV_SEAL_KEY_ID" in bootstrap_env()
    assert "CV_STORAGE" in bootstrap_env()
    assert chart_env >= CHART_ENV_NOT_FORWARDED, "the chart no longer renders one of them: drop it from the list"
    expected = (
        (chart_env - CHART_ENV_NOT_FORWARDED) | RELEASE_ENV | KUBELET_ENV | bootstrap_env() | keyrelease_host_env()
    )
    env = enclave_config().env
    names = {variable.name for variable in env}
    assert names == expected, "every variable the server reads reaches OpenBao, and nothing else from the host"
    from_host = {variable.name for variable in env if variable.fromHost}
    assert from_host == expected - {"HOME"}
    # The bootstrap's simulation switch is EGo's own: ego-host reads it, and the enclave must see the same value.
    assert "OE_SIMULATION" in bootstrap_env()


def test_env_forwards_nothing_that_chooses_openbaos_configuration() -> None:
    # OpenBao v2.6.2 reads further config files from BAO_CONFIG_PATH (command/server.go, -config's EnvVar) and a seal
    # from BAO_SEAL_TYPE; each BAO_ name falls back to VAULT_ (api/env.go). EGo drops what enclave.json does not list.
    names = {variable.name for variable in enclave_config().env}
    for name in ("CONFIG_PATH", "SEAL_TYPE"):
        assert not {f"BAO_{name}", f"VAULT_{name}"} & names
    # The static seal lets a non-empty BAO_STATIC_SEAL_* replace its configured keys and ids (go-kms-wrapping
    # wrappers/static v2.2.0): the bootstrap sets the ids itself, and no value may come from the host.
    assert not {name for name in names if "STATIC_SEAL" in name}
    # And the bootstrap removes all of them on every server launch, should a later enclave.json forward one.
    launch = (BOOTSTRAP_DIR / "launch.go").read_text()
    cleared = re.search(r"var SealVariables = \[\]string\{([^}]*)\}", launch)
    assert cleared
    assert set(re.findall(r'"([A-Z_]+)"', cleared.group(1))) == {
        "BAO_SEAL_TYPE",
        "VAULT_SEAL_TYPE",
        "BAO_STATIC_SEAL_CURRENT_KEY",
        "BAO_STATIC_SEAL_CURRENT_KEY_ID",
        "BAO_STATIC_SEAL_PREVIOUS_KEY",
        "BAO_STATIC_SEAL_PREVIOUS_KEY_ID",
    }


def test_home_inside_the_enclave_is_enclave_memory(reference: Path) -> None:
    # The chart's HOME (an emptyDir) exists only outside; dev mode stores its root token under HOME and stops if it
    # cannot. `/` is the enclave's in-memory file system, so the token stays in enclave memory.
    chart_home = re.search(
        r'- name: HOME\s+value: "([^"]+)"',
        (chart_dir(reference) / "templates").joinpath("server-statefulset.yaml").read_text(),
    )
    assert chart_home
    assert chart_home.group(1) == "/home/openbao"
    home = next(variable for variable in enclave_config().env if variable.name == "HOME")
    assert home.fromHost is False
    assert home.value == "/"
    assert "/" not in {mount.target for mount in enclave_config().mounts}


def test_ca_bundle_is_compiled_into_the_binary() -> None:
    """The build stage's bundle is copied where the measured package embeds it (cv_enclave builds only) before the
    one `ego-go build`, so the roots every TLS connection trusts are part of MRENCLAVE; git never holds a copy."""
    build = stage("build")
    embedded = (MEASURED_DIR / "cabundle.go").read_text()
    assert embedded.startswith("//go:build cv_enclave\n")
    assert re.search(r"//go:embed ca-certificates\.crt\nvar CABundle \[\]byte", embedded)
    assert "var CABundle []byte" in (MEASURED_DIR / "cabundle_absent.go").read_text()
    assert (MEASURED_DIR / ".gitignore").read_text().splitlines()[-1] == "/ca-certificates.crt"
    copy = next(
        i
        for i, (keyword, rest) in enumerate(build)
        if keyword == "RUN" and f"cp {CA_BUNDLE} /bootstrap/measured/ca-certificates.crt" in rest
    )
    bootstrap = next(
        i for i, (keyword, rest) in enumerate(build) if keyword == "COPY" and rest == "bootstrap /bootstrap"
    )
    compile_step = next(i for i, (keyword, rest) in enumerate(build) if keyword == "RUN" and "ego-go build" in rest)
    assert bootstrap < copy < compile_step


@pytest.mark.parametrize(
    ("config_file", "path_constant"),
    [
        (MEASURED_CONFIG, "MeasuredConfigPath"),
        (SEAL_CONFIG, "AttestedUnsealConfigPath"),
        (FILE_STORAGE_CONFIG, "FileStorageConfigPath"),
        (POSTGRESQL_STORAGE_CONFIG, "PostgreSQLStorageConfigPath"),
    ],
    ids=["shamir", "static-seal", "file", "postgresql"],
)
def test_measured_configuration_is_embedded_where_the_bootstrap_runs_it(config_file: Path, path_constant: str) -> None:
    """The file is compiled into the binary (go:embed in bootstrap/measured, which the Dockerfile's `COPY bootstrap`
    brings into the build) and written at the path the launch plan points OpenBao to."""
    variable = embedded_variables()[config_file.name]
    assert (bootstrap_constant(path_constant), f"measured.{variable}") in measured_files()


def embedded_variables() -> dict[str, str]:
    """File name → Go variable of each `//go:embed` in bootstrap/measured/measured.go."""
    source = (MEASURED_DIR / "measured.go").read_text()
    return dict(re.findall(r"//go:embed (\S+)\nvar (\w+) ", source))


def measured_files() -> list[tuple[str, str]]:
    """(path, Go expression of the content) of every file bootstrap.MeasuredFiles returns."""
    source = (BOOTSTRAP_DIR / "measuredfiles.go").read_text()
    body = source.split("return []MeasuredFile{", 1)[1].split("}, nil", 1)[0]
    constants = go_string_constants()
    return [(constants[name], content) for name, content in re.findall(r"\{(\w+), ([\w.]+)\}", body)]


def test_exactly_the_measured_configurations_and_the_ca_bundle_are_embedded() -> None:
    # enclave.json embeds nothing: EGo's premain would write it before the bootstrap, and it is one more path in.
    assert enclave_config().files == []
    assert sorted(measured_files()) == sorted(
        [
            (bootstrap_constant("MeasuredConfigPath"), "measured.Server"),
            (bootstrap_constant("AttestedUnsealConfigPath"), "measured.StaticSeal"),
            (bootstrap_constant("FileStorageConfigPath"), "measured.FileStorage"),
            (bootstrap_constant("PostgreSQLStorageConfigPath"), "measured.PostgreSQLStorage"),
            (CA_BUNDLE, "caBundle"),
        ]
    )
    assert bootstrap_constant("CABundlePath") == CA_BUNDLE
    assert set(embedded_variables()) == {
        MEASURED_CONFIG.name,
        SEAL_CONFIG.name,
        FILE_STORAGE_CONFIG.name,
        POSTGRESQL_STORAGE_CONFIG.name,
        "postgresql-hosts.txt",
    }
    # Every measured file in the directory is embedded; nothing else sits there but Go and the host list.
    on_disk = {path.name for path in MEASURED_DIR.iterdir() if path.suffix == ".hcl"}
    assert on_disk == set(embedded_variables()) - {"postgresql-hosts.txt"}


# --- the measured OpenBao configuration (openbao.hcl) ----------------------------------------------------------------

HCL_TOKEN = re.compile(
    r'\s+|#[^\n]*|//[^\n]*|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<word>[A-Za-z_][\w-]*)|(?P<number>\d+)|(?P<punct>[={}])'
)


@dataclass
class HclBlock:
    labels: list[str]
    body: dict


def parse_hcl(text: str) -> dict:
    """The HCL subset a server configuration uses: `key = "string" | number | true | false` and
    `type "label"... { ... }` blocks (a list per block type). Anything else fails, so the checks below never pass on
    syntax this reader skipped."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = HCL_TOKEN.match(text, position)
        assert match, f"openbao.hcl: unexpected {text[position : position + 20]!r}"
        position = match.end()
        if match.lastgroup:
            tokens.append((match.lastgroup, match.group(match.lastgroup)))
    tokens.append(("end", ""))

    def body(index: int, closing: bool) -> tuple[dict, int]:
        result: dict = {}
        while tokens[index][0] != "end":
            kind, value = tokens[index]
            if (kind, value) == ("punct", "}"):
                assert closing, "openbao.hcl: unbalanced }"
                return result, index + 1
            assert kind == "word", f"openbao.hcl: expected a name, got {value!r}"
            if tokens[index + 1] == ("punct", "="):
                assert value not in result, f"openbao.hcl: {value} set twice"
                kind, literal = tokens[index + 2]
                if kind == "string":
                    result[value] = json.loads(literal)
                elif kind == "number":
                    result[value] = int(literal)
                else:
                    assert literal in {"true", "false"}, f"openbao.hcl: {value} = {literal}"
                    result[value] = literal == "true"
                index += 3
                continue
            labels = []
            index += 1
            while tokens[index][0] == "string":
                labels.append(json.loads(tokens[index][1]))
                index += 1
            assert tokens[index] == ("punct", "{"), f"openbao.hcl: block {value} without a body"
            inner, index = body(index + 1, closing=True)
            result.setdefault(value, []).append(HclBlock(labels, inner))
        assert not closing, "openbao.hcl: a block is not closed"
        return result, index

    return body(0, closing=False)[0]


def measured_config() -> dict:
    return parse_hcl(MEASURED_CONFIG.read_text())


def test_hcl_reader_refuses_what_it_does_not_understand() -> None:
    assert parse_hcl('a = 1\nb "x" "y" {\n  c = "d"\n  e { f = true }\n}\n') == {
        "a": 1,
        "b": [HclBlock(["x", "y"], {"c": "d", "e": [HclBlock([], {"f": True})]})],
    }
    for text in ("a = [1]", "a = 1\na = 2", "b { c = 1", 'b "x"', "a = yes", "a = 1 }"):
        with pytest.raises(AssertionError):
            parse_hcl(text)


def test_measured_configuration_has_only_the_reviewed_settings() -> None:
    # A new top-level setting changes what the enclave is (raw_storage_endpoint, plugin_directory, seal, ...): it has
    # to be added here on purpose. api_addr comes from BAO_API_ADDR, which only tells clients where to go.
    assert set(measured_config()) == {"ui", "listener", "audit", "telemetry"}
    assert measured_config()["ui"] is True


def test_measured_listener_serves_tls_from_the_bootstraps_files_only() -> None:
    [listener] = measured_config()["listener"]
    assert listener.labels == ["tcp"]
    settings = listener.body
    assert settings["tls_cert_file"] == bootstrap_constant("CertificatePath")
    assert settings["tls_key_file"] == bootstrap_constant("KeyPath")
    assert settings["address"] == "[::]:8200"
    assert settings["cluster_address"] == "[::]:8201"
    assert not {key for key in settings if key.startswith("tls_") and key not in {"tls_cert_file", "tls_key_file"}}, (
        "no tls_disable, no client-CA or version downgrade: OpenBao's TLS defaults (TLS 1.2+) on the enclave's key"
    )
    assert settings["disable_unauthed_rekey_endpoints"] is True
    assert settings["disable_unauthed_generate_root_endpoints"] is True
    [telemetry] = settings["telemetry"]
    assert telemetry.body == {"unauthenticated_metrics_access": True}
    assert "tls_disable" not in MEASURED_CONFIG.read_text()


def test_measured_file_storage_is_the_data_mount(reference: Path) -> None:
    config = parse_hcl(FILE_STORAGE_CONFIG.read_text())
    assert set(config) == {"storage"}
    [storage] = config["storage"]
    assert storage.labels == ["file"]
    data_path = chart_values(reference)["server"]["dataStorage"]["mountPath"]
    assert storage.body == {"path": data_path}
    [data_mount] = [mount for mount in enclave_config().mounts if mount.type == "hostfs" and not mount.readOnly]
    assert data_mount.target == data_path


def test_measured_postgresql_storage_is_ha_and_takes_its_url_from_the_environment() -> None:
    """HA on PostgreSQL, the URL (with the password) from BAO_PG_CONNECTION_URL, which the release takes from a
    Secret; `service_registration "kubernetes"` labels the active pod. Nothing else: a new setting is a review."""
    config = parse_hcl(POSTGRESQL_STORAGE_CONFIG.read_text())
    assert set(config) == {"storage", "service_registration"}
    [storage] = config["storage"]
    assert storage.labels == ["postgresql"]
    assert storage.body == {
        "ha_enabled": "true",
        "max_parallel": "16",
        "max_idle_connections": "4",
        "max_connect_retries": "20",
    }
    [registration] = config["service_registration"]
    assert (registration.labels, registration.body) == (["kubernetes"], {})
    assert "BAO_PG_CONNECTION_URL" in {variable.name for variable in enclave_config().env}


def test_static_seal_reads_only_the_keys_the_enclave_writes() -> None:
    """The attested-unseal configuration is one `seal "static"` stanza whose keys are the files the key release
    writes into enclave memory; the key ids come from the enclave (they change with the Key Vault key version), and no
    key, key id or other setting is in the file."""
    config = parse_hcl(SEAL_CONFIG.read_text())
    assert set(config) == {"seal"}
    [seal] = config["seal"]
    assert seal.labels == ["static"]
    assert seal.body == {
        "current_key": "file://" + keyrelease_constant("SealKeyPath"),
        "previous_key": "file://" + keyrelease_constant("PreviousSealKeyPath"),
    }
    assert keyrelease_constant("SealKeyPath").startswith(keyrelease_constant("SealDir") + "/")
    # The Shamir configuration has no seal at all: OpenBao's default (Shamir) applies unless the static seal joins.
    assert "seal" not in measured_config()


def test_no_measured_audit_device_leaks_secrets_or_writes_outside_stdout() -> None:
    """OpenBao's audit devices write what they are told: `log_raw = true` logs tokens and secret values in plaintext,
    `hmac_accessor = false` logs token accessors in plaintext, and a file or socket or http device sends entries
    where the host reads them. Every measured file: only `file` devices, to stdout, neither option set to leak."""
    for path in (MEASURED_CONFIG, SEAL_CONFIG, FILE_STORAGE_CONFIG, POSTGRESQL_STORAGE_CONFIG):
        config = parse_hcl(path.read_text())
        for device in config.get("audit", []):
            assert device.labels[0] == "file", (path.name, device.labels)
            [options] = device.body["options"]
            assert options.body.get("file_path") == "stdout", (path.name, options.body)
            assert options.body.get("log_raw", False) is False, (path.name, "log_raw")
            assert options.body.get("hmac_accessor", True) is True, (path.name, "hmac_accessor")
            assert set(options.body) <= {"file_path", "log_raw", "hmac_accessor", "elide_list_responses"}
        assert path == MEASURED_CONFIG or "audit" not in config, f"{path.name} declares an audit device"
    assert measured_config()["audit"], "the audit device itself must stay"


def test_measured_audit_and_telemetry() -> None:
    [audit] = measured_config()["audit"]
    assert audit.labels == ["file", "stdout"]
    [options] = audit.body["options"]
    assert options.body == {"file_path": "stdout"}
    [telemetry] = measured_config()["telemetry"]
    assert telemetry.body == {"prometheus_retention_time": "24h", "disable_hostname": True}


# --- Dockerfile ------------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def global_args() -> dict[str, str | None]:
    """The ARGs before the first FROM (visible to every stage that names them)."""
    before: list[tuple[str, str]] = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            break
        before.append((keyword, rest))
    return arg_defaults(before)


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


def stage_env(name: str) -> dict[str, str]:
    """What the stage's build arguments and ENV lines make of the environment of its RUNs (global ARGs included)."""
    env: dict[str, str] = {}
    for arg, default in arg_defaults(stage(name)).items():
        value = default if default is not None else global_args().get(arg)
        env[arg] = value or ""
    for keyword, rest in stage(name):
        if keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in rest.split()))
    return env


def runs(name: str) -> list[str]:
    return [rest for keyword, rest in stage(name) if keyword == "RUN"]


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
    assert base == f"ghcr.io/edgelesssys/ego-dev:v{EGO_VERSION}"
    # The last stage is what `docker build` produces by default.
    assert stages()[-1][0] == f"ghcr.io/edgelesssys/ego-deploy:v{EGO_VERSION} AS runtime"
    for base_and_name, _ in stages():
        image = base_and_name.split(" AS ")[0]
        if image in names or image == "scratch" or image.startswith("ui-$"):
            continue
        # Images from outside: EGo's, the UI's Node and BusyBox, each at an exact release.
        assert (
            (image.startswith("ghcr.io/edgelesssys/ego-") and image.endswith(f":v{EGO_VERSION}"))
            or re.fullmatch(r"node:\d+\.\d+\.\d+-(bookworm|bullseye)", image)
            or re.fullmatch(r"busybox:\d+\.\d+\.\d+-musl", image)
        ), image


def test_source_is_the_pinned_tag_at_its_verified_commit() -> None:
    assert global_args()["OPENBAO_REPO"] == "https://github.com/openbao/openbao"
    assert global_args()["OPENBAO_REF"] == PINNED_REF
    assert global_args()["OPENBAO_COMMIT"] == PINNED_COMMIT
    # The stages name them without a default, so they see the global values (a default there would shadow them).
    for name in ("source", "build"):
        for arg, default in arg_defaults(stage(name)).items():
            if arg.startswith("OPENBAO_"):
                assert default is None, f"{name}: ARG {arg} has its own default"
    assert {arg for arg, default in arg_defaults(runtime_stage()).items() if arg.startswith("OPENBAO_")} == {
        "OPENBAO_REPO",
        "OPENBAO_REF",
        "OPENBAO_COMMIT",
        "OPENBAO_UI",
    }


@pytest.fixture
def fake_git(tmp_path: Path) -> Path:
    """A stand-in `git` that logs its argv, clones nothing and reports $FAKE_HEAD as HEAD."""
    bin_dir = tmp_path / "git-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "git",
        f"""
        #!{sys.executable}
        import json, os, sys
        with open({str(tmp_path / "git-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[1:3] == ["rev-parse", "HEAD"]:
            print(os.environ["FAKE_HEAD"])
        """,
    )
    return bin_dir


@pytest.mark.parametrize(
    ("head", "commit", "accepted"),
    [
        (PINNED_COMMIT, PINNED_COMMIT, True),
        ("f" * 40, PINNED_COMMIT, False),  # the tag moved
        (PINNED_COMMIT, "", False),  # no commit to verify against
    ],
)
def test_clone_refuses_a_tag_that_is_not_the_pinned_commit(
    tmp_path: Path, fake_git: Path, head: str, commit: str, accepted: bool
) -> None:
    [clone_step] = runs("source")
    env = {**stage_env("source"), "OPENBAO_COMMIT": commit, "FAKE_HEAD": head}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", clone_step],
        cwd=tmp_path,
        env={"PATH": f"{fake_git}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is accepted, result.stderr
    calls = json_lines(tmp_path / "git-calls.jsonl")
    if commit:
        clone = ["clone", "--quiet", "--depth", "1", "--branch", PINNED_REF, stage_env("source")["OPENBAO_REPO"], "."]
        assert calls[0] == clone
    else:
        assert calls == [], "nothing is cloned without a commit to check it against"


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
    # Everything the Dockerfile copies from the context is allowed in (a file under an allowed directory with it).
    context_sources = {
        rest.split()[-2] for keyword, rest in dockerfile_instructions() if keyword == "COPY" and "--from=" not in rest
    }
    assert {f"!{source.split('/')[0]}" for source in context_sources} <= set(dockerignore)


def test_runtime_stage_fits_the_chart_container(reference: Path) -> None:
    runtime = runtime_stage()
    command = chart_server_script(reference, "dev").split()
    assert copy_destination("docker-entrypoint.sh") == command[0] == "/usr/local/bin/docker-entrypoint.sh"
    assert ("ENTRYPOINT", '["/usr/local/bin/docker-entrypoint.sh"]') in runtime
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    assert ("CMD", '["bao", "server", "-dev"]') in runtime
    # The runtime stage carries no toolchain: only the signed binary comes from the build stage.
    copied_from_build = [rest for keyword, rest in runtime if keyword == "COPY" and "--from=build" in rest]
    assert len(copied_from_build) == 1


def test_image_user_and_directories_are_the_charts(reference: Path) -> None:
    text = helpers(reference)
    uid = re.search(r"runAsUser: \{\{ \.Values\.server\.uid \| default (\d+) \}\}", text)
    gid = re.search(r"runAsGroup: \{\{ \.Values\.server\.gid \| default (\d+) \}\}", text)
    assert uid, "the chart's securityContext defaults moved"
    assert gid, "the chart's securityContext defaults moved"
    assert [rest for keyword, rest in runtime_stage() if keyword == "USER"] == [f"{uid.group(1)}:{gid.group(1)}"]
    setup = " ".join(runs("runtime"))
    assert f"--uid {uid.group(1)} --gid {gid.group(1)} " in setup
    data_path = chart_values(reference)["server"]["dataStorage"]["mountPath"]
    assert f"chown {uid.group(1)}:{gid.group(1)} {data_path} " in setup


def test_no_bao_command_on_the_path() -> None:
    # The chart's default probes exec `bao status`; the image has no such CLI (the signed binary runs only under
    # `ego run`), so a release that kept them would fail its probes loudly instead of starting a second enclave.
    path_dirs = ("/usr/local/sbin/", "/usr/local/bin/", "/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/")
    for keyword, rest in runtime_stage():
        if keyword == "COPY":
            assert not any(rest.split()[-1] == f"{d}bao" for d in path_dirs), rest
        if keyword == "RUN":
            assert not re.search(r"ln -s\S* \S+ (/usr)?(/local)?/s?bin/bao\b", rest), rest
    assert enclave_binary_in_image() == "/usr/local/lib/ego-openbao/bao"


def supervisor_symlink() -> tuple[str, str]:
    """(link, target) of the `ln -s` in the runtime stage that names the supervisor interpreter `bao`."""
    links = [m for rest in runs("runtime") for m in re.findall(r"ln -s (\S+) (\S+/bao)\b", rest)]
    [(target, link)] = links
    return link, target


def test_entrypoint_runs_as_a_process_named_bao() -> None:
    link, target = supervisor_symlink()
    assert ENTRYPOINT.read_text().splitlines()[0] == f"#!{link}"
    assert target == "/bin/dash"
    assert Path(link).name == "bao"
    assert Path(link).parent != Path(enclave_binary_in_image()).parent, "the enclave binary keeps its own name"


def test_image_shell_is_busybox_and_is_proven_at_build_time() -> None:
    [busybox_copy] = [rest.split() for keyword, rest in runtime_stage() if keyword == "COPY" and "busybox" in rest]
    assert busybox_copy[0] == "--from=busybox"
    assert stage_base("busybox").startswith("busybox:")
    setup = " ".join(runs("runtime"))
    assert f"ln -sf {busybox_copy[-1]} /bin/sh" in setup
    # The build runs the chart's `kill -SIGTERM` with the new /bin/sh.
    assert "/bin/sh -c 'sleep 60 & kill -SIGTERM $!" in setup
    assert "command -v pidof" in setup


def test_hadolint_passes() -> None:
    hadolint = tool("hadolint")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes() -> None:
    shellcheck = tool("shellcheck")
    result = subprocess.run([shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def tool(name: str) -> str:
    """A tool from the virtualenv (requirements-dev.txt) or PATH; missing is a failure, not a skip."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found, (
        f"{name} is not installed (linters: pip install -r requirements-dev.txt; busybox: apt-get install busybox)"
    )
    return found


# --- the signing step, run outside Docker ----------------------------------------------------------------------------

FAKE_UNIQUE_ID = "a" * 64
FAKE_SIGNER_ID = "b" * 64


def write_executable(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fake_ego_ids(tmp_path: Path) -> Path:
    """A stand-in `ego` for signing: logs each call and prints fixed IDs."""
    bin_dir = tmp_path / "ego-sign-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "ego",
        f"""
        #!{sys.executable}
        import json, sys
        with open({str(tmp_path / "ego-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[1:2] == ["uniqueid"]:
            print({FAKE_UNIQUE_ID!r})
        elif sys.argv[1:2] == ["signerid"]:
            print({FAKE_SIGNER_ID!r})
        """,
    )
    return bin_dir


def json_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def signing_step() -> str:
    """The shell command of the RUN that mounts the key, without the mount option."""
    for rest in runs("build"):
        if "type=secret" in rest:
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


def test_signing_step_sets_the_heap_signs_and_records_the_identity(tmp_path: Path, fake_ego_ids: Path) -> None:
    result = run_signing_step(tmp_path, fake_ego_ids, ENCLAVE_HEAP_MB="2048", SIGNING_KEY_FINGERPRINT="sha256:00")
    assert result.returncode == 0, result.stderr
    signed = enclave_config((tmp_path / "build" / "enclave.json").read_text())
    assert signed.heapSize == 2048
    assert signed.model_dump(exclude={"heapSize"}) == enclave_config().model_dump(exclude={"heapSize"})
    calls = json_lines(tmp_path / "ego-calls.jsonl")
    assert calls[0] == ["sign", "enclave.json"]
    assert sorted(calls[1:]) == [["signerid", signed.exe], ["uniqueid", signed.exe]]
    identity = (tmp_path / "build" / "identity.env").read_text().split()
    assert identity == [f"ENCLAVE_UNIQUE_ID={FAKE_UNIQUE_ID}", f"ENCLAVE_SIGNER_ID={FAKE_SIGNER_ID}"]
    assert FAKE_UNIQUE_ID in result.stdout  # printed in the build log


@pytest.mark.parametrize("heap", ["256", "20000", "1g", ""])
def test_signing_step_refuses_a_bad_heap_before_signing(tmp_path: Path, fake_ego_ids: Path, heap: str) -> None:
    result = run_signing_step(tmp_path, fake_ego_ids, ENCLAVE_HEAP_MB=heap)
    assert result.returncode != 0
    assert "ENCLAVE_HEAP_MB" in result.stderr
    assert json_lines(tmp_path / "ego-calls.jsonl") == []


def label_check_step() -> str:
    """The runtime stage's RUN that compares the label build args with the binary."""
    [step] = [rest for rest in runs("runtime") if "ENCLAVE_UNIQUE_ID" in rest]
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
    fake_ego_ids: Path, unique_id: str, signer_id: str, accepted: bool
) -> None:
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", label_check_step()],
        env={
            "PATH": f"{fake_ego_ids}{os.pathsep}{os.environ['PATH']}",
            "ENCLAVE_UNIQUE_ID": unique_id,
            "ENCLAVE_SIGNER_ID": signer_id,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) is accepted, result.stderr
    labels = next(rest for keyword, rest in runtime_stage() if keyword == "LABEL")
    for label, arg in (
        ("confidential-vault.enclave.unique-id", "ENCLAVE_UNIQUE_ID"),
        ("confidential-vault.enclave.signer-id", "ENCLAVE_SIGNER_ID"),
        ("confidential-vault.openbao.ref", "OPENBAO_REF"),
        ("confidential-vault.openbao.commit", "OPENBAO_COMMIT"),
        ("confidential-vault.openbao.ui", "OPENBAO_UI"),
    ):
        assert f'{label}="${{{arg}}}"' in labels


# --- web UI ----------------------------------------------------------------------------------------------------------


def stage_workdir(name: str) -> str:
    """The last WORKDIR of a stage, following FROM <stage> back to the stage that set one."""
    workdirs = [rest for keyword, rest in stage(name) if keyword == "WORKDIR"]
    if workdirs:
        return workdirs[-1]
    return stage_workdir(stage_base(name))


def workdir_of(stage_name: str, marker: str) -> str:
    """The working directory of the stage's RUN that contains `marker` (set by a WORKDIR of that stage)."""
    workdir = ""
    for keyword, rest in stage(stage_name):
        if keyword == "WORKDIR":
            workdir = rest
        if keyword == "RUN" and marker in rest:
            return workdir
    raise AssertionError(f"no RUN with {marker} in {stage_name}")


def test_ui_stage_pins_the_node_and_pnpm_the_release_declares() -> None:
    # The facts above hold for this ref only: moving OPENBAO_REF means re-reading ui/package.json.
    assert global_args()["OPENBAO_REF"] == PINNED_REF
    match = re.fullmatch(r"node:(\d+)\.\d+\.\d+-[a-z]+", stage_base("ui-true"))
    assert match, f"{stage_base('ui-true')}: pin an exact Node release and distribution"
    assert int(match.group(1)) == UI_NODE_ENGINE_MAJOR
    assert arg_defaults(stage("ui-true"))["PNPM_VERSION"] == UI_PNPM_VERSION
    assert re.fullmatch(r"[0-9a-f]{64}", arg_defaults(stage("ui-true"))["PNPM_SHA256"] or "")
    env = stage_env("ui-true")
    # As on the release's GitHub runner (frozen lockfile), and pnpm refuses a version other than `packageManager`.
    assert env["CI"] == "true"
    assert env["npm_config_package_manager_strict_version"] == "true"
    assert env["npm_config_manage_package_manager_versions"] == "false"


@pytest.fixture
def fake_npm(tmp_path: Path) -> Path:
    """A stand-in `npm`: `pack` writes a small tarball, `install` is logged."""
    bin_dir = tmp_path / "npm-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "npm",
        f"""
        #!{sys.executable}
        import json, pathlib, sys
        with open({str(tmp_path / "npm-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[1] == "pack":
            version = sys.argv[-1].split("@", 1)[1]
            pathlib.Path(f"pnpm-{{version}}.tgz").write_bytes(b"fake pnpm tarball")
        """,
    )
    return bin_dir


@pytest.mark.parametrize("checksum_matches", [True, False])
def test_pnpm_is_installed_only_if_its_checksum_matches(tmp_path: Path, fake_npm: Path, checksum_matches: bool) -> None:
    [pnpm_step] = [rest for rest in runs("ui-true") if "npm pack" in rest]
    env = stage_env("ui-true")
    if checksum_matches:
        env["PNPM_SHA256"] = hashlib.sha256(b"fake pnpm tarball").hexdigest()
    workdir = tmp_path / "pnpm"
    workdir.mkdir()
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pnpm_step.replace("/tmp/pnpm", str(workdir))],
        cwd=workdir,
        env={**env, "PATH": f"{fake_npm}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    calls = json_lines(tmp_path / "npm-calls.jsonl")
    assert calls[0] == ["pack", "--silent", f"pnpm@{UI_PNPM_VERSION}"]
    if checksum_matches:
        assert result.returncode == 0, result.stderr
        assert calls[1][:2] == ["install", "--global"]
        assert calls[1][-1] == f"./pnpm-{UI_PNPM_VERSION}.tgz"
    else:
        assert result.returncode != 0
        assert len(calls) == 1, "nothing is installed from a tarball with the wrong checksum"


def test_openbao_ui_picks_the_ui_stage_and_defaults_to_true() -> None:
    # Before the first FROM, so that FROM can use it; default on (the release sets `ui = true`).
    assert global_args()["OPENBAO_UI"] == "true"
    assert stage_base("ui") == "ui-${OPENBAO_UI}"
    assert stage_base("ui-false") == "scratch", "OPENBAO_UI=false must not pull the Node image"
    assert arg_defaults(stage("build"))["OPENBAO_UI"] is None
    assert arg_defaults(runtime_stage())["OPENBAO_UI"] is None


def test_ui_assets_land_where_the_ui_tag_embeds_them() -> None:
    # `go build .` runs in the clone, whose http package embeds http/web_ui.
    embed_dir = str(Path(stage_workdir("source")) / UI_EMBED_DIR)
    [copy] = [rest.split() for keyword, rest in stage("build") if keyword == "COPY" and "--from=ui" in rest]
    assert copy == ["--from=ui", embed_dir, embed_dir]
    # ui-true: `make static-dist` in the repository root runs ember in ui/, which writes to output-path relative to it.
    make_dir = workdir_of("ui-true", f"make {UI_MAKE_TARGET}")
    assert os.path.normpath(Path(make_dir) / "ui" / UI_EMBER_OUTPUT_PATH) == embed_dir
    assert stage_workdir("ui-false") == embed_dir
    # The UI is built from the build's own clone (its Makefile and ui/), not a second one.
    ui_copies = [rest.split() for keyword, rest in stage("ui-true") if keyword == "COPY"]
    source_root = stage_workdir("source")
    assert ui_copies == [
        ["--from=source", f"{source_root}/Makefile", f"{make_dir}/Makefile"],
        ["--from=source", f"{source_root}/ui", f"{make_dir}/ui"],
    ]
    assert not any("git clone" in rest for rest in runs("ui-true") + runs("build"))


@pytest.fixture
def fake_make(tmp_path: Path) -> Path:
    """A stand-in `make` that logs argv, cwd and the environment pnpm would see, and writes what the Ember build
    writes (index.html in $FAKE_UI_OUTPUT, relative to ui/; OpenBao v2.6.2's output-path by default)."""
    bin_dir = tmp_path / "make-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "make",
        f"""
        #!{sys.executable}
        import json, os, pathlib, sys
        with open({str(tmp_path / "make-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                                   "env": {{k: v for k, v in os.environ.items()
                                           if k == "CI" or k.startswith("npm_")}}}})
                      + "\\n")
        out = pathlib.Path("ui") / os.environ.get("FAKE_UI_OUTPUT", {UI_EMBER_OUTPUT_PATH!r})
        out.mkdir(parents=True, exist_ok=True)
        (out / "index.html").write_text("<html><title>OpenBao</title></html>")
        """,
    )
    return bin_dir


def run_ui_step(tmp_path: Path, bin_dir: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    root = tmp_path / "src"
    (root / "ui").mkdir(parents=True)
    [make_step] = [rest for rest in runs("ui-true") if f"make {UI_MAKE_TARGET}" in rest]
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", make_step],
        cwd=root,
        env={**stage_env("ui-true"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return result, json_lines(tmp_path / "make-calls.jsonl")


def test_ui_step_runs_the_release_make_target_into_the_embed_dir(tmp_path: Path, fake_make: Path) -> None:
    result, calls = run_ui_step(tmp_path, fake_make)
    assert result.returncode == 0, result.stderr
    [call] = calls
    assert call["argv"] == [UI_MAKE_TARGET]
    assert call["cwd"] == str(tmp_path / "src")
    assert call["env"]["CI"] == "true"
    assert (tmp_path / "src" / UI_EMBED_DIR / "index.html").is_file()


def test_ui_step_fails_when_the_build_writes_elsewhere(tmp_path: Path, fake_make: Path) -> None:
    # A release that moved its output (some write to internal/http/web_ui) would otherwise leave the embed dir empty.
    result, _ = run_ui_step(tmp_path, fake_make, FAKE_UI_OUTPUT="../internal/http/web_ui")
    assert result.returncode != 0
    assert "index.html" in result.stderr


@pytest.fixture
def fake_ego_go(tmp_path: Path) -> Path:
    """A stand-in `ego-go` that logs its argv as a JSON line. `version -m` lists the bootstrap module as a dependency
    of the binary unless $FAKE_WITHOUT_BOOTSTRAP is set."""
    bin_dir = tmp_path / "ego-go-bin"
    bin_dir.mkdir()
    write_executable(
        bin_dir / "ego-go",
        f"""
        #!{sys.executable}
        import json, os, sys
        with open({str(tmp_path / "ego-go-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(sys.argv[1:]) + "\\n")
        if sys.argv[1:3] == ["version", "-m"]:
            print(sys.argv[3] + ": go1.26.1")
            print("\\tpath\\tgithub.com/openbao/openbao")
            if not os.environ.get("FAKE_WITHOUT_BOOTSTRAP"):
                print("\\tdep\\t{bootstrap_module()}\\tv0.0.0-00010101000000-000000000000")
                print("\\t=>\\t/bootstrap\\t(devel)")
        """,
    )
    return bin_dir


COMMIT_DATE = "2026-08-18T15:43:05Z"


def run_build_step(
    tmp_path: Path, bin_dir: Path, *, assets: bool, **build_args: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]], str]:
    """Runs the ego-go RUN in a git clone with one commit (dated COMMIT_DATE, in another time zone)."""
    clone = tmp_path / "src"
    (clone / UI_EMBED_DIR).mkdir(parents=True)
    if assets:
        (clone / UI_EMBED_DIR / "index.html").write_text("<html>openbao</html>")
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_COMMITTER_DATE": "2026-08-18T10:43:05-05:00",
    }
    for command in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "release"]):
        subprocess.run(["git", *command], cwd=clone, env=git_env, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True)
    [step] = [rest for rest in runs("build") if "ego-go build" in rest]
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", step],
        cwd=clone,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **stage_env("build"), **build_args},
        capture_output=True,
        text=True,
        check=False,
    )
    return result, json_lines(tmp_path / "ego-go-calls.jsonl"), head.stdout.strip()


def go_flag(argv: list[str], name: str) -> str:
    """The value of a `go build` flag (the last one wins, as in go)."""
    value = ""
    for i, arg in enumerate(argv):
        if arg == name:
            value = argv[i + 1]
        elif arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


def go_tags(argv: list[str]) -> set[str]:
    return {tag for tag in re.split(r"[,\s]+", go_flag(argv, "-tags")) if tag}


def test_build_step_compiles_like_the_release_and_stamps_the_version(tmp_path: Path, fake_ego_go: Path) -> None:
    result, calls, head = run_build_step(tmp_path, fake_ego_go, assets=True)
    assert result.returncode == 0, result.stderr
    argv, version = calls
    assert argv[0] == "build"
    assert argv[-1] == ".", "the main package at the repository root"
    assert "-trimpath" in argv, "GO_BUILD_FLAGS' default must still reach go build"
    assert go_tags(argv) == RELEASE_GO_TAGS | {BOOTSTRAP_GO_TAG}, "the release's tags, and the bootstrap's"
    assert go_flag(argv, "-o") == f"/build/{enclave_config().exe}"
    assert version == ["version", "-m", f"/build/{enclave_config().exe}"], "the binary is checked for the bootstrap"
    assert go_flag(argv, "-ldflags").split() == [
        "-X",
        f"{VERSION_PACKAGE}.fullVersion={PINNED_REF.removeprefix('v')}",
        "-X",
        f"{VERSION_PACKAGE}.GitCommit={head}",
        "-X",
        f"{VERSION_PACKAGE}.CommitDate={COMMIT_DATE}",
    ]


def test_build_step_adds_ui_to_extra_tags(tmp_path: Path, fake_ego_go: Path) -> None:
    result, calls, _ = run_build_step(
        tmp_path, fake_ego_go, assets=True, GO_TAGS="netgo", GO_BUILD_FLAGS="-trimpath -v"
    )
    assert result.returncode == 0, result.stderr
    argv = calls[0]
    assert go_tags(argv) == {"netgo", "ui", BOOTSTRAP_GO_TAG}
    assert "-v" in argv


@pytest.mark.parametrize(("extra_tags", "expected"), [("", {BOOTSTRAP_GO_TAG}), ("netgo", {BOOTSTRAP_GO_TAG, "netgo"})])
def test_build_step_without_ui_leaves_the_tag_out(
    tmp_path: Path, fake_ego_go: Path, extra_tags: str, expected: set[str]
) -> None:
    result, calls, _ = run_build_step(tmp_path, fake_ego_go, assets=False, OPENBAO_UI="false", GO_TAGS=extra_tags)
    assert result.returncode == 0, result.stderr
    assert go_tags(calls[0]) == expected, "no ui, the bootstrap still"


def test_build_step_fails_when_the_binary_lacks_the_bootstrap(tmp_path: Path, fake_ego_go: Path) -> None:
    # A build without the hook would serve no attested listener: OpenBao alone, with whatever config the host passes.
    result, calls, _ = run_build_step(tmp_path, fake_ego_go, assets=True, FAKE_WITHOUT_BOOTSTRAP="1")
    assert result.returncode != 0
    assert "does not contain the attested-listener bootstrap" in result.stderr
    assert [call[0] for call in calls] == ["build", "version"]


@pytest.fixture
def fake_ego_go_modules(tmp_path: Path) -> Path:
    """A stand-in `ego-go` for the bootstrap step: `mod edit` is the real `go mod edit` (offline), `get` adds EGo's
    requirement the same way and, with $FAKE_GET_BUMPS="module version", also raises that module as MVS would."""
    bin_dir = tmp_path / "modules-bin"
    bin_dir.mkdir()
    go = tool("go")
    write_executable(
        bin_dir / "ego-go",
        f"""
        #!{sys.executable}
        import json, os, subprocess, sys
        args = sys.argv[1:]
        with open({str(tmp_path / "ego-go-calls.jsonl")!r}, "a") as log:
            log.write(json.dumps(args) + "\\n")
        env = {{**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOWORK": "off"}}
        if args[:2] == ["mod", "edit"]:
            sys.exit(subprocess.run([{go!r}, *args], env=env).returncode)
        if args[0] == "get":
            edits = ["-require=" + args[1]]
            if os.environ.get("FAKE_GET_BUMPS"):
                edits.append("-require=" + "@".join(os.environ["FAKE_GET_BUMPS"].split()))
            sys.exit(subprocess.run([{go!r}, "mod", "edit", *edits], env=env).returncode)
        sys.exit(2)
        """,
    )
    return bin_dir


def run_bootstrap_step(tmp_path: Path, bin_dir: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Runs the build stage's bootstrap RUN in a git clone whose go.mod pins two modules, as OpenBao's pins many."""
    clone = tmp_path / "src"
    clone.mkdir()
    # Blocks like OpenBao's; go mod edit folds the one-entry block into one line, which must not count as a change.
    (clone / "go.mod").write_text(
        "module github.com/openbao/openbao\n\ngo 1.25.8\n\nrequire (\n\tgolang.org/x/crypto v0.53.0\n)\n\n"
        "require (\n\tgopkg.in/yaml.v3 v3.0.1 // indirect\n)\n"
    )
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"}
    git_env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    for command in (["init", "-q"], ["add", "go.mod"], ["commit", "-q", "-m", "release"]):
        subprocess.run(["git", *command], cwd=clone, env=git_env, check=True)
    [copy] = [rest.split() for keyword, rest in stage("build") if keyword == "COPY" and rest.startswith("bootstrap ")]
    [step] = [rest for rest in runs("build") if "go mod edit" in rest or "ego-go mod edit" in rest]
    # The image's paths: the bootstrap where the COPY puts it, the clone at the source stage's WORKDIR.
    step = re.sub(r"(?<![\w.-])" + re.escape(copy[1]) + r"\b", str(BOOTSTRAP_DIR), step)
    step = re.sub(r"(?<![\w.-])" + re.escape(stage_workdir("source")) + "/", f"{clone}/", step)
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", step],
        cwd=clone,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return result, clone


def test_bootstrap_step_joins_openbaos_main_package_and_module(tmp_path: Path, fake_ego_go_modules: Path) -> None:
    result, clone = run_bootstrap_step(tmp_path, fake_ego_go_modules)
    assert result.returncode == 0, result.stderr
    hook = BOOTSTRAP_DIR / "openbaohook" / "cv_attested_listener.go"
    assert (clone / hook.name).read_text() == hook.read_text(), "the hook is a file of OpenBao's main package"
    assert hook.read_text().startswith(f"//go:build {BOOTSTRAP_GO_TAG}\n"), "compiled only with the build's tag"
    go_mod = (clone / "go.mod").read_text()
    assert f"{bootstrap_module()} => {BOOTSTRAP_DIR}" in go_mod, "the module comes from the build context"
    assert f"github.com/edgelesssys/ego v{EGO_VERSION}" in go_mod, "EGo's enclave package at the ego-dev version"
    assert "golang.org/x/crypto v0.53.0" in go_mod
    calls = json_lines(tmp_path / "ego-go-calls.jsonl")
    assert ["get", f"github.com/edgelesssys/ego@v{EGO_VERSION}"] in calls


def test_bootstrap_step_refuses_to_move_a_version_openbao_pins(tmp_path: Path, fake_ego_go_modules: Path) -> None:
    result, _ = run_bootstrap_step(tmp_path, fake_ego_go_modules, FAKE_GET_BUMPS="golang.org/x/crypto v0.99.0")
    assert result.returncode != 0
    assert "adding the bootstrap changed versions OpenBao pins" in result.stderr


@pytest.mark.parametrize(
    ("build_args", "assets", "message"),
    [
        ({"OPENBAO_UI": "true"}, False, "index.html"),  # -tags ui with nothing to embed
        ({"OPENBAO_UI": "yes"}, True, "OPENBAO_UI"),
        ({"OPENBAO_UI": ""}, True, "OPENBAO_UI"),
        ({"GO_BUILD_FLAGS": "-trimpath -tags netgo"}, True, "GO_TAGS"),
        ({"GO_BUILD_FLAGS": "-tags=netgo"}, True, "GO_TAGS"),
        ({"GO_BUILD_FLAGS": "-ldflags=-s"}, True, "-ldflags"),
    ],
)
def test_build_step_refuses_a_build_that_would_lose_the_ui_or_the_version(
    tmp_path: Path, fake_ego_go: Path, build_args: dict[str, str], assets: bool, message: str
) -> None:
    result, calls, _ = run_build_step(tmp_path, fake_ego_go, assets=assets, **build_args)
    assert result.returncode != 0
    assert message in result.stderr
    assert calls == [], "nothing may be compiled"


# --- docker-entrypoint.sh: start -------------------------------------------------------------------------------------


def test_entrypoint_neither_builds_nor_signs() -> None:
    text = ENTRYPOINT.read_text()
    for forbidden in FORBIDDEN_AT_START:
        assert forbidden not in text
    assert re.search(r"^env --default-signal=INT ego run \"\$enclave_binary\" \"\$@\" &$", text, re.MULTILINE)
    assert f"readonly enclave_binary={enclave_binary_in_image()}\n" in text


@dataclass
class Pod:
    """A stand-in for the server container: the chart's command run by BusyBox sh, with the entrypoint (its #! line
    pointing at a dash named `bao`, as in the image) and stand-ins for `ego` and `ego-host` on PATH."""

    root: Path
    process: subprocess.Popen[str]
    state: Path

    def host_log(self) -> list[str]:
        log = self.state / "host.log"
        return log.read_text().splitlines() if log.exists() else []

    def ego_log(self) -> list[dict]:
        return json_lines(self.state / "ego.jsonl")

    def wait_for_host(self, line: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not any(entry.startswith(line) for entry in self.host_log()):
            assert self.process.poll() is None, f"the pod exited: {self.output()}"
            assert time.monotonic() < deadline, f"the stand-in ego-host never logged {line!r}: {self.host_log()}"
            time.sleep(0.02)

    def output(self) -> str:
        if self.process.poll() is None:
            return "<still running>"
        out, err = self.process.communicate()
        return out + err

    def tree(self) -> set[int]:
        """The pids of the pod's processes (the shell and its descendants)."""
        parents = {}
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat_file.read_text()
            except OSError:
                continue
            parents[int(text.split(" ", 1)[0])] = int(text.rsplit(") ", 1)[1].split()[1])
        members = {self.process.pid}
        grew = True
        while grew:
            grew = False
            for pid, parent in parents.items():
                if parent in members and pid not in members:
                    members.add(pid)
                    grew = True
        return members

    def supervisor_pid(self) -> int:
        """The entrypoint process: the one whose argv[0] is the `bao` interpreter."""
        for pid in sorted(self.tree()):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"/bao"):
                return pid
        raise AssertionError("no process with argv[0] .../bao in the pod")


@pytest.fixture
def pod_root(tmp_path: Path) -> Path:
    """The image's layout in a temporary directory: the entrypoint with its #! line moved to a dash named `bao`, and
    stand-ins for `ego` (the CLI: runs ego-host as a child, forwards nothing, exits with its status) and `ego-host`
    (like Edgeless RT's erthost: loads the enclave, then handles SIGINT by tearing it down in order; any other signal
    kills it). Both log to state/."""
    root = tmp_path / "pod"
    state = root / "state"
    bin_dir = root / "bin"
    link, _ = supervisor_symlink()
    interpreter = root / link.lstrip("/")
    for directory in (state, bin_dir, interpreter.parent):
        directory.mkdir(parents=True, exist_ok=True)
    interpreter.symlink_to(tool("dash"))
    entrypoint = root / "usr/local/bin/docker-entrypoint.sh"
    entrypoint.parent.mkdir(parents=True)
    lines = ENTRYPOINT.read_text().splitlines(keepends=True)
    write_executable(entrypoint, f"#!{interpreter}\n" + "".join(lines[1:]))
    host = write_executable(
        root / "ego-host",
        f"""
        #!{sys.executable}
        import os, pathlib, signal, sys, time
        state = pathlib.Path({str(state)!r})
        pathlib.Path("/proc/self/comm").write_text("ego-host")
        def log(line):
            with open(state / "host.log", "a") as f:
                f.write(line + "\\n")
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        if not ignored:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # as erthost has it until it installs its handler
        log(f"start sigint={{'ignored' if ignored else 'default'}} argv={{sys.argv[1:]}}")
        time.sleep(float(os.environ.get("FAKE_LOAD_SECONDS", "0")))  # loading the enclave
        stop = []
        signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
        log("enclave running")
        while not stop:
            time.sleep(0.02)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as erthost does before oe_terminate_enclave
        log("SIGINT: terminating the enclave")
        time.sleep(0.3)
        log("enclave terminated")
        sys.exit(1)  # erthost's return value when main did not return
        """,
    )
    write_executable(
        bin_dir / "ego",
        f"""
        #!{sys.executable}
        import json, os, signal, subprocess, sys
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        child = subprocess.Popen([sys.executable, {str(host)!r}, *sys.argv[2:]])
        code = child.wait()
        with open({str(state / "ego.jsonl")!r}, "a") as log:
            log.write(json.dumps({{"argv": sys.argv[1:], "simulation": os.environ.get("OE_SIMULATION"),
                                   "sigint_ignored": ignored, "host_returncode": code}}) + "\\n")
        sys.exit(int(os.environ.get("FAKE_EGO_STATUS", code if code >= 0 else -code)))
        """,
    )
    return root


@contextmanager
def running(root: Path, argv: list[str], **env: str) -> Iterator[Pod]:
    """Starts `argv` with the stand-ins on PATH; afterwards kills what is left of its process tree (and only that)."""
    process = subprocess.Popen(
        argv,
        env={"PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pod = Pod(root=root, process=process, state=root / "state")
    try:
        yield pod
    finally:
        for pid in sorted(pod.tree(), reverse=True):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


def running_pod(
    root: Path, reference: Path, mode: Literal["standalone", "dev"], **env: str
) -> AbstractContextManager[Pod]:
    """Runs the chart's server command for `mode` (its paths moved into `root`) as the pod does: `busybox sh -ec`."""
    script = chart_server_script(reference, mode)
    config_dir = root / "openbao" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "extraconfig-from-values.hcl").write_text('api_addr = "http://POD_IP:8200"\n')
    for chart_path, here in (
        ("/usr/local/bin/docker-entrypoint.sh", f"{root}/usr/local/bin/docker-entrypoint.sh"),
        ("/openbao/config/", f"{config_dir}/"),
        ("/tmp/storageconfig.hcl", f"{root}/storageconfig.hcl"),
    ):
        assert chart_path in script or mode == "dev"
        script = script.replace(chart_path, here)
    return running(root, [tool("busybox"), "sh", "-ec", script], **env)


def test_chart_standalone_command_reaches_the_enclave_unchanged(pod_root: Path, reference: Path) -> None:
    with running_pod(pod_root, reference, "standalone", POD_IP="10.1.2.3", OE_SIMULATION="1") as pod:
        pod.wait_for_host("enclave running")
        config = f"-config={pod_root / 'storageconfig.hcl'}"
        assert pod.host_log()[0] == f"start sigint=default argv={[enclave_binary_in_image(), 'server', config]}"
        # The chart's shell still renders its file under the image's /bin/sh; the enclave gets -config unchanged and
        # runs the measured file instead (bootstrap/launch.go, launch_test.go), so nothing the host rendered is read.
        assert (pod_root / "storageconfig.hcl").read_text() == 'api_addr = "http://10.1.2.3:8200"\n'
        os.kill(pod.supervisor_pid(), signal.SIGTERM)
        assert pod.process.wait(timeout=15) == 1, pod.output()
        [call] = pod.ego_log()
        assert call["argv"] == ["run", enclave_binary_in_image(), "server", config]
        assert call["simulation"] == "1", "OE_SIMULATION must reach ego-host"


def test_chart_dev_command_runs_ego_in_dev_mode(pod_root: Path, reference: Path) -> None:
    with running_pod(pod_root, reference, "dev", FAKE_EGO_STATUS="0") as pod:
        pod.wait_for_host("enclave running")
        os.kill(pod.supervisor_pid(), signal.SIGTERM)
        assert pod.process.wait(timeout=15) == 0, pod.output()
        [call] = pod.ego_log()
        assert call["argv"] == ["run", enclave_binary_in_image(), "server", "-dev"]


def run_entrypoint(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "usr/local/bin/docker-entrypoint.sh"), *args],
        env={"PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_entrypoint_passes_arguments_unchanged_and_exits_with_egos_status(pod_root: Path) -> None:
    # server.extraArgs are appended to the chart's command line; a host that exits on its own (e.g. a bad config)
    # must end the container with ego's status, not hang.
    write_executable(pod_root / "bin" / "ego", f"#!{sys.executable}\nimport sys\nprint(sys.argv[1:])\nsys.exit(3)\n")
    result = run_entrypoint(pod_root, "bao", "server", "-config=/tmp/with space.hcl", "-log-level=debug")
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == str(
        ["run", enclave_binary_in_image(), "server", "-config=/tmp/with space.hcl", "-log-level=debug"]
    )


def test_entrypoint_without_a_command_fails_without_starting_ego(pod_root: Path) -> None:
    result = run_entrypoint(pod_root, "bao")
    assert result.returncode == 64
    assert "no OpenBao command" in result.stderr
    assert not (pod_root / "state" / "ego.jsonl").exists()


# --- the stop path ----------------------------------------------------------------------------------------------------


def run_chart_pre_stop(pod: Pod, reference: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Runs the chart's preStop command (preStopSleepSeconds 0) as the kubelet does, with BusyBox as /bin/sh.

    `pidof bao` would see every process on this machine. So it runs the machine's real `pidof` through a wrapper that
    passes on only the pids inside this pod and logs what the real one found: the test proves the real `pidof` finds
    the entrypoint, and signals nothing it did not start."""
    real_pidof = tool("pidof")
    wrapper_dir = tmp_path / "prestop-bin"
    wrapper_dir.mkdir()
    write_executable(
        wrapper_dir / "pidof",
        f"""
        #!{sys.executable}
        import json, pathlib, subprocess, sys
        def parent(pid):
            return int(pathlib.Path(f"/proc/{{pid}}/stat").read_text().rsplit(") ", 1)[1].split()[1])
        def in_pod(pid):
            try:
                while pid > 1:
                    if pid == {pod.process.pid}:
                        return True
                    pid = parent(pid)
            except OSError:
                pass
            return False
        found = subprocess.run([{real_pidof!r}, *sys.argv[1:]], capture_output=True, text=True).stdout.split()
        kept = [pid for pid in found if in_pod(int(pid))]
        with open({str(tmp_path / "pidof.json")!r}, "w") as log:
            json.dump({{"argv": sys.argv[1:], "found": found, "kept": kept}}, log)
        print(" ".join(kept))
        sys.exit(0 if kept else 1)
        """,
    )
    shell, flag, command = chart_pre_stop(reference, 0)
    assert shell == "/bin/sh"
    env = {"PATH": f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}"}
    # The wrapper, not a BusyBox applet, must be what the shell runs, or the kill could reach other processes.
    which = subprocess.run(
        [tool("busybox"), "sh", "-c", "command -v pidof"], env=env, capture_output=True, text=True, check=False
    )
    assert which.stdout.strip() == str(wrapper_dir / "pidof")
    return subprocess.run(
        [tool("busybox"), "sh", flag, command], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_chart_pre_stop_stops_the_enclave_host_in_order(pod_root: Path, reference: Path, tmp_path: Path) -> None:
    with running_pod(pod_root, reference, "standalone") as pod:
        pod.wait_for_host("enclave running")
        supervisor = pod.supervisor_pid()
        result = run_chart_pre_stop(pod, reference, tmp_path)
        assert result.returncode == 0, result.stderr
        pidof = json.loads((tmp_path / "pidof.json").read_text())
        assert pidof["argv"] == ["bao"]
        assert pidof["kept"] == [str(supervisor)], "the real pidof finds the entrypoint, and only it, in the pod"
        # The preStop returns at once; the pod ends when the entrypoint has waited for the teardown.
        status = pod.process.wait(timeout=15)
        assert pod.host_log()[1:] == ["enclave running", "SIGINT: terminating the enclave", "enclave terminated"]
        [call] = pod.ego_log()
        assert call["host_returncode"] == 1, "ego-host returned by itself, not killed by a signal"
        assert status == 1, "the container ends with ego's status"
        stderr = pod.output()
        assert "stopping: SIGINT to ego-host" in stderr
        assert "ego exited with status 1 after a stop request" in stderr


def test_stop_while_the_enclave_is_loading_does_not_hang(pod_root: Path, reference: Path) -> None:
    # ego-host installs its SIGINT handler only once the enclave is loaded. Started with SIGINT ignored (what `&`
    # does in a script), it would ignore this one SIGINT and the pod would wait for the kubelet's SIGKILL.
    with running_pod(pod_root, reference, "standalone", FAKE_LOAD_SECONDS="30") as pod:
        pod.wait_for_host("start")
        started = time.monotonic()
        os.kill(pod.supervisor_pid(), signal.SIGTERM)
        status = pod.process.wait(timeout=15)
        assert time.monotonic() - started < 10
        assert "enclave running" not in pod.host_log()
        [call] = pod.ego_log()
        assert call["host_returncode"] == -signal.SIGINT, "SIGINT stops a host that is still loading"
        assert status == int(signal.SIGINT)


def test_sighup_is_reported_not_fatal(pod_root: Path, reference: Path) -> None:
    # OpenBao reloads its config on SIGHUP, but EGo delivers no signal into the enclave; the supervisor must survive.
    with running_pod(pod_root, reference, "standalone") as pod:
        pod.wait_for_host("enclave running")
        supervisor = pod.supervisor_pid()
        os.kill(supervisor, signal.SIGHUP)
        time.sleep(0.3)
        assert pod.process.poll() is None
        assert pod.host_log()[-1] == "enclave running"
        os.kill(supervisor, signal.SIGTERM)
        pod.process.wait(timeout=15)
        assert "SIGHUP ignored" in pod.output()


def test_docker_stop_signal_reaches_the_entrypoint_as_pid_1(pod_root: Path) -> None:
    # `docker run IMAGE` makes the entrypoint PID 1, and `docker stop` sends it STOPSIGNAL.
    stop_signal = next(rest for keyword, rest in runtime_stage() if keyword == "STOPSIGNAL")
    entrypoint = str(pod_root / "usr/local/bin/docker-entrypoint.sh")
    with running(pod_root, [entrypoint, "bao", "server", "-dev"]) as pod:
        pod.wait_for_host("enclave running")
        pod.process.send_signal(getattr(signal, stop_signal))
        pod.process.wait(timeout=15)
        assert pod.host_log()[-2:] == ["SIGINT: terminating the enclave", "enclave terminated"]


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


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two RSA keys (generating one takes a while; these tests only need them to differ)."""
    directory = tmp_path_factory.mktemp("keys")
    keys = (directory / "a.pem", directory / "b.pem")
    for path in keys:
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
    return keys


def run_build(
    tmp_path: Path, bin_dir: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    log = tmp_path / "docker-calls.jsonl"
    log.unlink(missing_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBAO_", "GITHUB_OUTPUT"))}
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args],
        env={**clean, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, json_lines(log)


def build_args(call: list[str]) -> dict[str, str]:
    return dict(call[i + 1].split("=", 1) for i, arg in enumerate(call) if arg == "--build-arg")


def test_build_script_signs_via_secret_and_labels_with_the_identity(
    tmp_path: Path, fake_docker: Path, signing_keys: tuple[Path, Path]
) -> None:
    key = signing_keys[0]
    output = tmp_path / "github-output"
    result, calls = run_build(
        tmp_path,
        fake_docker,
        *("--key", str(key), "--image", "registry.example/ego-openbao", "--push"),
        GITHUB_OUTPUT=str(output),
    )
    assert result.returncode == 0, result.stderr
    identity_call, image_call = calls
    for call in calls:
        assert call[:2] == ["buildx", "build"]
        assert call[call.index("--secret") + 1] == f"id=signingkey,src={key}"
        assert not any(key.read_text().splitlines()[1] in arg for arg in call), "key material on the command line"
        assert {name: build_args(call)[name] for name in ("OPENBAO_REF", "OPENBAO_COMMIT", "OPENBAO_UI")} == {
            "OPENBAO_REF": PINNED_REF,
            "OPENBAO_COMMIT": PINNED_COMMIT,
            "OPENBAO_UI": "true",
        }
    assert identity_call[identity_call.index("--target") + 1] == "identity"
    assert "--push" not in identity_call
    assert build_args(image_call)["ENCLAVE_UNIQUE_ID"] == FAKE_UNIQUE_ID
    assert build_args(image_call)["ENCLAVE_SIGNER_ID"] == FAKE_SIGNER_ID
    assert "--target" not in image_call, "the runtime stage is the default (last) stage"
    default_tag = f"{PINNED_REF.removeprefix('v')}-ego{EGO_VERSION}"
    assert image_call[image_call.index("--tag") + 1] == f"registry.example/ego-openbao:{default_tag}"
    assert "--push" in image_call
    # What an operator copies into the stack config (the config keeps the name `vault`).
    assert f"vault.image.tag {default_tag}" in result.stdout
    assert f"vault.enclave.uniqueId {FAKE_UNIQUE_ID}" in result.stdout
    assert f"vault.enclave.signerId {FAKE_SIGNER_ID}" in result.stdout
    # productId and securityVersion as enclave.json (what `ego sign` measured) states them.
    enclave = json.loads((IMAGE_DIR / "enclave.json").read_text())
    assert f"vault.enclave.productId {enclave['productID']}\n" in result.stdout
    assert f"vault.enclave.securityVersion {enclave['securityVersion']}\n" in result.stdout
    assert f"vault.image.digest sha256:{'c' * 64}" in result.stdout
    # What the workflow's later steps read.
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert outputs["image"] == f"registry.example/ego-openbao:{default_tag}"
    assert outputs["unique-id"] == FAKE_UNIQUE_ID


def test_build_script_fingerprint_follows_the_key(
    tmp_path: Path, fake_docker: Path, signing_keys: tuple[Path, Path]
) -> None:
    first, second = signing_keys
    fingerprints = []
    for key in (first, first, second):
        result, calls = run_build(tmp_path, fake_docker, "--key", str(key), "--image", "r/ego-openbao")
        assert result.returncode == 0, result.stderr
        assert "--load" in calls[1]
        fingerprints.append(build_args(calls[0])["SIGNING_KEY_FINGERPRINT"])
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]


def test_build_script_requires_a_key(tmp_path: Path, fake_docker: Path) -> None:
    result, calls = run_build(tmp_path, fake_docker, "--image", "r/ego-openbao")
    assert result.returncode != 0
    assert "--key" in result.stderr
    assert calls == []


def test_build_script_builds_another_release_only_with_its_commit(
    tmp_path: Path, fake_docker: Path, signing_keys: tuple[Path, Path]
) -> None:
    key = signing_keys[0]
    base = ("--key", str(key), "--image", "r/ego-openbao")
    result, calls = run_build(tmp_path, fake_docker, *base, "--openbao-ref", "v2.6.3")
    assert result.returncode != 0
    assert "--openbao-commit" in result.stderr
    assert calls == []
    result, calls = run_build(tmp_path, fake_docker, *base, "--openbao-ref", "v2.6.3", "--openbao-commit", "abc")
    assert result.returncode != 0
    assert calls == []
    result, calls = run_build(tmp_path, fake_docker, *base, "--openbao-ref", "v2.6.3", "--openbao-commit", "e" * 40)
    assert result.returncode == 0, result.stderr
    assert build_args(calls[0])["OPENBAO_REF"] == "v2.6.3"
    assert build_args(calls[0])["OPENBAO_COMMIT"] == "e" * 40
    assert calls[1][calls[1].index("--tag") + 1] == f"r/ego-openbao:2.6.3-ego{EGO_VERSION}"


def test_build_script_builds_the_ui_unless_told_not_to(
    tmp_path: Path, fake_docker: Path, signing_keys: tuple[Path, Path]
) -> None:
    key = signing_keys[0]
    for extra, expected in (((), "true"), (("--ui", "false"), "false")):
        result, calls = run_build(tmp_path, fake_docker, "--key", str(key), "--image", "r/ego-openbao", *extra)
        assert result.returncode == 0, result.stderr
        assert [build_args(call)["OPENBAO_UI"] for call in calls] == [expected, expected]


def test_build_script_rejects_a_bad_ui_value(
    tmp_path: Path, fake_docker: Path, signing_keys: tuple[Path, Path]
) -> None:
    key = signing_keys[0]
    result, calls = run_build(tmp_path, fake_docker, "--key", str(key), "--image", "r/ego-openbao", "--ui", "yes")
    assert result.returncode != 0
    assert "--ui" in result.stderr
    assert calls == []


# --- smoke-test.sh and the workflow ----------------------------------------------------------------------------------


def smoke_test_constant(name: str) -> str:
    match = re.search(rf"^readonly {name}='(.*?)'$", SMOKE_TEST.read_text(), re.S | re.M)
    assert match, f"smoke-test.sh has no {name}"
    return match.group(1)


def test_smoke_test_runs_the_charts_own_commands(reference: Path) -> None:
    assert smoke_test_constant("chart_standalone_args") == chart_server_script(reference, "standalone")
    assert smoke_test_constant("chart_dev_args") == chart_server_script(reference, "dev")
    assert ["/bin/sh", "-c", smoke_test_constant("chart_pre_stop")] == chart_pre_stop(reference, 0)


def test_workflow_builds_and_runs_the_image_on_every_change() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    on = workflow[True] if True in workflow else workflow["on"]
    for event in ("push", "pull_request"):
        assert set(on[event]["paths"]) == {
            "images/ego-openbao/**",
            "scripts/verify.py",  # the smoke test verifies the listener with it
            ".github/workflows/ego-openbao-image.yml",
        }
    for job in ("build", "publish"):
        steps = workflow["jobs"][job]["steps"]
        runs_ = [step.get("run", "") for step in steps]
        build = next(i for i, run in enumerate(runs_) if run.startswith("images/ego-openbao/build.sh"))
        smoke = next(i for i, run in enumerate(runs_) if run.startswith("images/ego-openbao/smoke-test.sh"))
        verifier = next(i for i, run in enumerate(runs_) if "PyJWT|cryptography" in run)
        assert build < smoke
        assert verifier < smoke, "the smoke test runs scripts/verify.py: its dependencies first"
        assert steps[build]["id"] == "image"
        assert steps[smoke]["env"]["IMAGE"] == "${{ steps.image.outputs.image }}"


def test_workflow_installs_the_verifiers_pinned_dependencies(tmp_path: Path) -> None:
    # The step's own grep, run on requirements.txt: it must find a pinned version of everything verify.py imports.
    [install] = {
        step["run"]
        for step in yaml.safe_load(WORKFLOW.read_text())["jobs"]["build"]["steps"]
        if "PyJWT|cryptography" in step.get("run", "")
    }
    grep_line = install.splitlines()[0].replace('"$RUNNER_TEMP', f'"{tmp_path}')
    subprocess.run(["bash", "-c", grep_line], cwd=IMAGE_DIR.parent.parent, check=True)
    pins = dict(line.split("==") for line in (tmp_path / "verifier.txt").read_text().split())
    assert set(pins) == {"PyJWT", "cryptography"}
    verify_imports = (IMAGE_DIR.parent.parent / "scripts" / "verify.py").read_text()
    assert "import jwt" in verify_imports
    assert "from cryptography" in verify_imports


LISTENER_NAME = "openbao.smoke.test"


@pytest.fixture
def fake_docker_and_curl(tmp_path: Path) -> Path:
    """Stand-ins that play a container running the image: `docker run` starts a server (dev mode: plain HTTP,
    unsealed; otherwise the measured server: TLS with a new key per start, sealed, uninitialised until `sys/init`;
    with -recovery: refused), `docker exec`/`wait`/`logs` play the preStop, the container's end and its log. `curl`
    answers TLS only with --cacert of the CA the verifier pinned for this start; the verifier ($SMOKE_VERIFIER) pins it
    with --simulation and refuses without. FAKE_* variables make each part misbehave."""
    bin_dir = tmp_path / "smoke-bin"
    bin_dir.mkdir()
    state = tmp_path / "server.json"
    log = tmp_path / "smoke-calls.jsonl"
    common = f"""
        #!{sys.executable}
        import json, os, pathlib, sys
        args = sys.argv[1:]
        state = pathlib.Path({str(state)!r})
        server = json.loads(state.read_text()) if state.exists() else {{"initialized": False, "starts": 0}}
        def record(name):
            with open({str(log)!r}, "a") as log:
                log.write(json.dumps([name, *args]) + "\\n")
        def ca():
            return "CA of start " + ("1" if os.environ.get("FAKE_SAME_KEY") else str(server["starts"]))
        """
    write_executable(
        bin_dir / "docker",
        common
        + """
        record("docker")
        if args[:2] == ["image", "inspect"] and args[2] == "-f":
            print("v2.6.2" if "openbao.ref" in args[3] else "true")
        elif args[0] == "run":
            script = args[-1]
            server.update(dev="-dev" in script, unsealed="-dev" in script, recovery="-recovery" in script)
            server["starts"] += 1
        elif args[0] == "inspect":
            print("true")
        elif args[0] == "wait":
            print("0" if server["recovery"] and os.environ.get("FAKE_ACCEPTS_RECOVERY") else "1")
        elif args[0] == "logs":
            if server["recovery"]:
                print("attested-listener: refusing to start OpenBao: `bao server` runs only the measured configuration"
                      " /etc/openbao/openbao.hcl (...): flag -recovery is not allowed")
            elif not server["dev"] and not os.environ.get("FAKE_HOST_CONFIG_USED"):
                print("attested-listener: ignoring -config=/tmp/storageconfig.hcl from the host")
            print("docker-entrypoint.sh: stopping: SIGINT to ego-host (pid 7), which tears the enclave down in order")
        state.write_text(json.dumps(server))
        """,
    )
    write_executable(
        bin_dir / "verify.py",
        common
        + """
        record("verify")
        option = lambda name: args[args.index(name) + 1]
        if server["dev"] or (option("--host"), option("--port"), option("--address")) != (
                {LISTENER_NAME!r}, "18200", "127.0.0.1"):
            print("verify.py: NOT TRUSTED: could not fetch the certificate", file=sys.stderr)
            sys.exit(1)
        if "--simulation" not in args and not os.environ.get("FAKE_VERIFIER_ACCEPTS"):
            print("verify.py: NOT TRUSTED: the enclave runs in simulation ('OE_SIMULATION=1'); accept that only for"
                  " a simulation stack (--simulation)", file=sys.stderr)
            sys.exit(1)
        pathlib.Path(option("--ca-file")).write_text(ca())
        print("verify.py: WARNING: openbao.smoke.test runs in simulation: no SGX, nothing attested", file=sys.stderr)
        """.replace("{LISTENER_NAME!r}", repr(LISTENER_NAME)),
    )
    write_executable(
        bin_dir / "curl",
        common
        + """
        record("curl")
        url = args[-1]
        path = url.split(":18200", 1)[1]
        body, code = "", 200
        if url.startswith("https://"):
            pinned = args[args.index("--cacert") + 1] if "--cacert" in args else None
            if server["dev"] or not pinned or pathlib.Path(pinned).read_text() != ca() or (
                    args[args.index("--resolve") + 1] != f"{LISTENER_NAME}:18200:127.0.0.1"):
                print("000" if "-w" in args else "", end="")
                sys.exit(60)  # the peer's certificate cannot be verified
        elif not server["dev"] and not os.environ.get("FAKE_PLAIN_HTTP_SERVED"):
            print("400" if "-w" in args else "Client sent an HTTP request to an HTTPS server.", end="")
            sys.exit(22 if "-f" in args else 0)
        if path == "/v1/sys/health":
            code = 200 if server["unsealed"] else 503 if server["initialized"] or server["dev"] else 501
        elif path == "/v1/sys/seal-status":
            body = json.dumps({"version": os.environ.get("FAKE_VERSION", "2.6.2")})
        elif path == "/v1/sys/init":
            server["initialized"] = True
            body = json.dumps({"keys_base64": ["a2V5"], "root_token": "r"})
        elif path == "/v1/sys/unseal":
            server["unsealed"] = server["initialized"]
            body = json.dumps({"sealed": not server["unsealed"]})
        elif path == "/ui/":
            body = "<title>OpenBao</title>" if os.environ.get("FAKE_UI", "true") == "true" else "UI is not available"
        state.write_text(json.dumps(server))
        if "-w" in args:
            print(code, end="")
        elif "-o" not in args:
            print(body)
        """.replace("{LISTENER_NAME}", LISTENER_NAME),
    )
    return bin_dir


def run_smoke_test(tmp_path: Path, bin_dir: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list]:
    result = subprocess.run(
        ["bash", str(SMOKE_TEST), "registry.example/ego-openbao:t"],
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "SMOKE_VERIFIER": str(bin_dir / "verify.py"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, json_lines(tmp_path / "smoke-calls.jsonl")


def test_smoke_test_runs_the_image_like_the_chart_and_stops_it_with_the_pre_stop(
    tmp_path: Path, fake_docker_and_curl: Path, reference: Path
) -> None:
    result, calls = run_smoke_test(tmp_path, fake_docker_and_curl)
    assert result.returncode == 0, result.stdout + result.stderr
    docker_runs = [call[2:] for call in calls if call[:2] == ["docker", "run"]]
    standalone = chart_server_script(reference, "standalone")
    assert [run[-1] for run in docker_runs] == [
        chart_server_script(reference, "dev"),
        standalone,
        standalone,
        standalone.rstrip("\n") + " -recovery",  # as the chart appends server.extraArgs
    ]
    for run in docker_runs:
        assert run[-4:-1] == ["/bin/sh", "registry.example/ego-openbao:t", "-ec"]
        assert run[run.index("--user") + 1] == "100:1000"
        assert run[run.index("--cap-drop") + 1] == "ALL"
        assert "OE_SIMULATION=1" in run
        assert f"CV_LISTENER_NAMES={LISTENER_NAME}" in run
    assert "BAO_DEV_ROOT_TOKEN_ID=smoke-root-token" in docker_runs[0]
    assert any(arg.endswith(":/openbao/data") for arg in docker_runs[2]), "the restart keeps the data volume"
    execs = [call[2:] for call in calls if call[:2] == ["docker", "exec"]]
    assert len(execs) == 3
    assert all(command[1:] == chart_pre_stop(reference, 0) for command in execs)
    assert any("X-Vault-Token: smoke-root-token" in call for call in calls if call[0] == "curl")
    # The measured server is verified, then every call checks its certificate: no curl ever skips verification.
    curls = [call for call in calls if call[0] == "curl"]
    assert not [call for call in curls if {"-k", "--insecure"} & set(call)]
    tls_calls = [call for call in curls if call[-1].startswith(f"https://{LISTENER_NAME}:18200/")]
    assert {call[-1].split(":18200", 1)[1] for call in tls_calls} >= {"/v1/sys/init", "/v1/sys/unseal"}
    verifications = [call[1:] for call in calls if call[0] == "verify"]
    assert [("--simulation" in call) for call in verifications] == [True, False, True], "pin, refuse, pin again"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAKE_VERSION": "2.0.0"}, "version"),
        ({"FAKE_UI": "no"}, "/ui/"),
        # The measured configuration's promises, each broken once:
        ({"FAKE_HOST_CONFIG_USED": "1"}, "ignoring -config=/tmp/storageconfig.hcl"),
        ({"FAKE_PLAIN_HTTP_SERVED": "1"}, "TLS is not enforced"),
        ({"FAKE_VERIFIER_ACCEPTS": "1"}, "accepted a simulation enclave without --simulation"),
        ({"FAKE_SAME_KEY": "1"}, "its listener key is not new"),
        ({"FAKE_ACCEPTS_RECOVERY": "1"}, "accepted -recovery"),
    ],
)
def test_smoke_test_fails_when_the_server_does_not_do_what_it_must(
    tmp_path: Path, fake_docker_and_curl: Path, env: dict[str, str], message: str
) -> None:
    result, _ = run_smoke_test(tmp_path, fake_docker_and_curl, **env)
    assert result.returncode != 0
    assert message in result.stderr
