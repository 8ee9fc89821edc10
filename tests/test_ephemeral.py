"""tools/ephemeral.py against a fake Pulumi backend, and its template through the real program."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import load_settings
from harness import run_program
from tools import ephemeral
from tools.ephemeral import (
    COMMENT_MARKER,
    DESTROY_ENV,
    NAMESPACE,
    UsageError,
    check_stack_name,
    encode_config,
    load_template,
    parse_ttl,
    stack_config,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
GOOD_ENV = {"PULUMI_BACKEND_URL": "azblob://state?storage_account=cvstate", "PULUMI_CONFIG_PASSPHRASE": "pass"}
CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


# --- a fake backend: every workspace built by the factory sees the same stacks ------------------------------


@dataclass
class FakeStackState:
    tags: dict[str, str] = field(default_factory=dict)
    config: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    fail_destroy: bool = False
    fail_up: bool = False


@dataclass
class FakeBackend:
    stacks: dict[str, FakeStackState] = field(default_factory=dict)
    listed_prefix: str = ""  # some backends list org/project/name
    events: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (action, stack, workspace env)
    workspaces_built: list[dict[str, str]] = field(default_factory=list)

    def factory(self, env: Mapping[str, str]) -> FakeWorkspace:
        self.workspaces_built.append(dict(env))
        return FakeWorkspace(self, dict(env))

    def actions(self, name: str) -> list[str]:
        return [action for action, stack, _ in self.events if stack == name]


@dataclass
class FakeStack:
    backend: FakeBackend
    name: str
    env: dict[str, str]

    @property
    def state(self) -> FakeStackState:
        return self.backend.stacks[self.name]

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.backend.events.append(("tag", self.name, self.env))
        self.state.tags.update(tags)

    def replace_config(self, config: Mapping[str, str]) -> None:
        self.backend.events.append(("config", self.name, self.env))
        self.state.config = dict(config)

    def up(self) -> dict[str, Any]:
        self.backend.events.append(("up", self.name, self.env))
        if self.state.fail_up:
            raise RuntimeError("up failed: quota exceeded")
        return self.state.outputs

    def destroy(self) -> None:
        self.backend.events.append(("destroy", self.name, self.env))
        if self.state.fail_destroy:
            raise RuntimeError("destroy failed: cluster locked")


@dataclass
class FakeWorkspace:
    backend: FakeBackend
    env: dict[str, str]

    def stack_names(self) -> list[str]:
        return [self.backend.listed_prefix + name for name in self.backend.stacks]

    def tags(self, name: str) -> dict[str, str]:
        return dict(self.backend.stacks[name].tags)

    def create_or_select(self, name: str) -> FakeStack:
        self.backend.stacks.setdefault(name, FakeStackState())
        return FakeStack(self.backend, name, self.env)

    def select(self, name: str) -> FakeStack:
        if name not in self.backend.stacks:
            raise LookupError(f"no stack {name}")
        return FakeStack(self.backend, name, self.env)

    def remove(self, name: str) -> None:
        self.backend.events.append(("remove", name, self.env))
        del self.backend.stacks[name]


def ephemeral_stack(expires_at: datetime | str, **kwargs: Any) -> FakeStackState:
    stamp = expires_at if isinstance(expires_at, str) else ephemeral.format_time(expires_at)
    return FakeStackState(tags={"ephemeral": "true", "expires-at": stamp}, **kwargs)


def run_tool(backend: FakeBackend, *argv: str, env: Mapping[str, str] = GOOD_ENV) -> tuple[int, str]:
    lines: list[str] = []
    code = ephemeral.main(list(argv), workspaces=backend.factory, environ=env, clock=lambda: NOW, say=lines.append)
    return code, "\n".join(lines)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def template() -> dict[str, Any]:
    return load_template()


# --- names and TTLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pr-1", "pr-42", "pr-1234567"])
def test_pr_names_are_accepted(name: str) -> None:
    assert check_stack_name(name) == int(name[3:])


@pytest.mark.parametrize(
    "name", ["dev", "prod", "pr-0", "pr-01", "pr-", "pr-abc", "PR-1", "pr-1 ", "pr-1;rm", "org/pr-1", "pr-12345678"]
)
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="pr-<pull request number>"):
        check_stack_name(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90m", timedelta(minutes=90)), ("15m", timedelta(minutes=15)), ("24h", timedelta(days=1)), ("7d", timedelta(7))],
)
def test_ttl_parsing(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "24", "5x", "0h", "-1h", "1.5h", "h", "14m", "8d", "169h", "1w"])
def test_bad_ttls_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match="bad TTL"):
        parse_ttl(text)


# --- up -----------------------------------------------------------------------------------------------------


def test_up_writes_tags_and_config_from_the_template(backend: FakeBackend, template: dict[str, Any]) -> None:
    code, out = run_tool(backend, "up", "pr-42", "--ttl", "90m")
    assert code == 0, out
    state = backend.stacks["pr-42"]
    assert state.tags == {"ephemeral": "true", "expires-at": "2026-11-23T13:30:00Z"}
    base = template[f"{NAMESPACE}:domain"]
    assert state.config[f"{NAMESPACE}:domain"] == f"pr-42.{base}"
    assert state.config[f"{NAMESPACE}:environment"] == "ephemeral"
    assert state.config[f"{NAMESPACE}:expiresAt"] == "2026-11-23T13:30:00Z"
    # Everything else comes from the template, as the engine would pass it.
    for key, value in encode_config(template).items():
        if key not in (f"{NAMESPACE}:domain", f"{NAMESPACE}:expiresAt"):
            assert state.config[key] == value
    settings = load_settings(state.config)
    assert settings.expires_at == NOW + timedelta(minutes=90)
    # Tagged before anything is deployed, so a failed deployment is still found by reap.
    assert backend.actions("pr-42") == ["tag", "config", "up"]


def test_up_default_ttl_is_a_day(backend: FakeBackend) -> None:
    code, out = run_tool(backend, "up", "pr-7")
    assert code == 0, out
    state = backend.stacks["pr-7"]
    assert state.tags["expires-at"] == "2026-11-24T12:00:00Z"
    assert state.config[f"{NAMESPACE}:expiresAt"] == "2026-11-24T12:00:00Z"


def test_up_prints_url_outputs_and_writes_the_pr_comment(backend: FakeBackend, tmp_path: Path) -> None:
    backend.stacks["pr-3"] = ephemeral_stack(NOW)
    backend.stacks["pr-3"].outputs = {
        "urls": {"vault": "https://vault.pr-3.example.com", "traefik": "https://traefik.pr-3.example.com/dashboard/"},
        "vaultUrl": "https://vault.pr-3.example.com",
        "grafanaUrl": "https://grafana.pr-3.example.com",
        "environment": "ephemeral",
        "clusterName": "aks-pr-3",
        "vaultEnclave": {"uniqueId": None},
    }
    summary = tmp_path / "comment.md"
    code, out = run_tool(backend, "up", "pr-3", "--summary-file", str(summary))
    assert code == 0, out
    assert "  vault: https://vault.pr-3.example.com" in out
    assert "  traefik: https://traefik.pr-3.example.com/dashboard/" in out
    assert "  grafanaUrl: https://grafana.pr-3.example.com" in out
    assert "vaultUrl" not in out  # the same URL once
    assert "aks-pr-3" not in out
    comment = summary.read_text()
    assert comment.startswith(COMMENT_MARKER)
    assert "| vault | https://vault.pr-3.example.com |" in comment
    assert "2026-11-24T12:00:00Z" in comment
    assert "staging** CA" in comment
    assert "dev mode" in comment


def test_the_pr_comment_follows_the_template(backend: FakeBackend, tmp_path: Path) -> None:
    document = yaml.safe_load(ephemeral.TEMPLATE.read_text())
    document["config"][f"{NAMESPACE}:acme"]["server"] = "production"
    document["config"][f"{NAMESPACE}:vault"]["mode"] = "server"
    template_path = tmp_path / "ephemeral.yaml"
    template_path.write_text(yaml.safe_dump(document))
    summary = tmp_path / "comment.md"
    argv = ["up", "pr-3", "--summary-file", str(summary)]
    code = ephemeral.main(
        argv, workspaces=backend.factory, environ=GOOD_ENV, clock=lambda: NOW, say=print, template_path=template_path
    )
    assert code == 0
    comment = summary.read_text()
    assert "### Ephemeral stack `pr-3`" in comment
    assert "| vault | https://vault.pr-3." in comment
    assert "staging" not in comment
    assert "dev mode" not in comment


def test_up_without_url_outputs_shows_the_service_hosts(backend: FakeBackend, template: dict[str, Any]) -> None:
    code, out = run_tool(backend, "up", "pr-5")
    assert code == 0
    assert f"https://vault.pr-5.{template[f'{NAMESPACE}:domain']}" in out


def test_up_extends_an_existing_ephemeral_stack(backend: FakeBackend) -> None:
    backend.stacks["pr-9"] = ephemeral_stack(NOW + timedelta(hours=1))
    code, _ = run_tool(backend, "up", "pr-9", "--ttl", "3d")
    assert code == 0
    assert backend.stacks["pr-9"].tags["expires-at"] == "2026-11-26T12:00:00Z"


def test_up_refuses_an_existing_stack_that_is_not_ephemeral(backend: FakeBackend) -> None:
    backend.stacks["pr-8"] = FakeStackState(tags={"owner": "someone"}, config={"keep": "me"})
    code, out = run_tool(backend, "up", "pr-8")
    assert code == 2
    assert "not tagged ephemeral=true" in out
    assert backend.actions("pr-8") == []
    assert backend.stacks["pr-8"].config == {"keep": "me"}


def test_up_failure_exits_non_zero_and_leaves_a_reapable_stack(backend: FakeBackend) -> None:
    backend.stacks["pr-4"] = ephemeral_stack(NOW, fail_up=True)
    code, out = run_tool(backend, "up", "pr-4")
    assert code == 1
    assert "quota exceeded" in out
    assert backend.stacks["pr-4"].tags["expires-at"] == "2026-11-24T12:00:00Z"


def test_up_validates_the_config_before_touching_the_backend(backend: FakeBackend, tmp_path: Path) -> None:
    document = yaml.safe_load(ephemeral.TEMPLATE.read_text())
    document["config"][f"{NAMESPACE}:vault"]["mode"] = "sealed"
    broken = tmp_path / "ephemeral.yaml"
    broken.write_text(yaml.safe_dump(document))
    lines: list[str] = []
    code = ephemeral.main(
        ["up", "pr-1"],
        workspaces=backend.factory,
        environ=GOOD_ENV,
        clock=lambda: NOW,
        say=lines.append,
        template_path=broken,
    )
    assert code == 2
    assert f"{NAMESPACE}:vault.mode: is not a known value (got 'sealed'" in "\n".join(lines)
    assert backend.workspaces_built == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["up", "prod"], "refusing stack 'prod'"),
        (["up", "pr-1", "--ttl", "2w"], "bad TTL '2w'"),
        (["up", "pr-1", "--ttl", "30d"], "between 15m and 7d"),
        (["destroy", "dev"], "refusing stack 'dev'"),
    ],
)
def test_bad_input_exits_2_without_touching_the_backend(backend: FakeBackend, argv: list[str], message: str) -> None:
    code, out = run_tool(backend, *argv)
    assert code == 2
    assert message in out
    assert backend.workspaces_built == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PULUMI_CONFIG_PASSPHRASE": "pass"}, "no state backend: set PULUMI_BACKEND_URL"),
        ({"PULUMI_BACKEND_URL": "file:///tmp/state"}, "no passphrase: set PULUMI_CONFIG_PASSPHRASE"),
        ({"PULUMI_BACKEND_URL": "file:///tmp/state", "PULUMI_CONFIG_PASSPHRASE": ""}, "no passphrase"),
    ],
)
def test_missing_backend_or_passphrase_is_a_clear_error(
    backend: FakeBackend, env: dict[str, str], message: str
) -> None:
    backend.stacks["pr-1"] = ephemeral_stack(NOW - timedelta(days=1))
    for argv in (["up", "pr-1"], ["destroy", "pr-1"], ["reap"]):
        code, out = run_tool(backend, *argv, env=env)
        assert code == 2
        assert message in out
    assert backend.workspaces_built == []
    assert "pr-1" in backend.stacks


def test_passphrase_file_or_key_vault_provider_are_enough(backend: FakeBackend) -> None:
    url = {"PULUMI_BACKEND_URL": "file:///tmp/state"}
    assert run_tool(backend, "reap", env={**url, "PULUMI_CONFIG_PASSPHRASE_FILE": "/run/pass"})[0] == 0
    key_vault = ["--secrets-provider", "azurekeyvault://cv.vault.azure.net/keys/pulumi", "reap"]
    assert run_tool(backend, *key_vault, env=url)[0] == 0
    assert run_tool(backend, "--backend-url", "file:///x", "reap", env={"PULUMI_CONFIG_PASSPHRASE": "p"})[0] == 0


# --- destroy ------------------------------------------------------------------------------------------------


def test_destroy_runs_with_delete_unreachable_and_removes_the_stack(backend: FakeBackend) -> None:
    backend.stacks["pr-6"] = ephemeral_stack(NOW + timedelta(hours=3))
    code, out = run_tool(backend, "destroy", "pr-6")
    assert code == 0, out
    assert "pr-6" not in backend.stacks
    events = [(action, env) for action, stack, env in backend.events if stack == "pr-6"]
    assert [action for action, _ in events] == ["destroy", "remove"]
    for _, env in events:
        assert env["PULUMI_K8S_DELETE_UNREACHABLE"] == "true"
    assert DESTROY_ENV == {"PULUMI_K8S_DELETE_UNREACHABLE": "true"}


def test_destroy_is_idempotent(backend: FakeBackend) -> None:
    backend.stacks["pr-6"] = ephemeral_stack(NOW)
    assert run_tool(backend, "destroy", "pr-6")[0] == 0
    code, out = run_tool(backend, "destroy", "pr-6")
    assert code == 0
    assert "no such stack" in out
    assert backend.actions("pr-6") == ["destroy", "remove"]


def test_destroy_of_a_stack_that_never_existed_succeeds(backend: FakeBackend) -> None:
    backend.stacks["pr-2"] = ephemeral_stack(NOW)
    code, _ = run_tool(backend, "destroy", "pr-99")
    assert code == 0
    assert "pr-2" in backend.stacks
    assert backend.events == []


def test_destroy_refuses_a_pr_named_stack_without_the_ephemeral_tag(backend: FakeBackend) -> None:
    backend.stacks["pr-5"] = FakeStackState(tags={"ephemeral": "false", "expires-at": "2020-01-01T00:00:00Z"})
    code, out = run_tool(backend, "destroy", "pr-5")
    assert code == 2
    assert "not tagged ephemeral=true" in out
    assert "pr-5" in backend.stacks
    assert backend.events == []


def test_destroy_finds_stacks_listed_with_org_and_project() -> None:
    backend = FakeBackend(listed_prefix="organization/confidential-vault/")
    backend.stacks["pr-6"] = ephemeral_stack(NOW)
    assert run_tool(backend, "destroy", "pr-6")[0] == 0
    assert "pr-6" not in backend.stacks


def test_destroy_failure_keeps_the_stack_and_exits_1(backend: FakeBackend) -> None:
    backend.stacks["pr-6"] = ephemeral_stack(NOW, fail_destroy=True)
    code, out = run_tool(backend, "destroy", "pr-6")
    assert code == 1
    assert "cluster locked" in out
    assert "pr-6" in backend.stacks
    assert "remove" not in backend.actions("pr-6")


# --- reap ---------------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_backend() -> FakeBackend:
    backend = FakeBackend()
    past, future = NOW - timedelta(minutes=1), NOW + timedelta(hours=2)
    backend.stacks["dev"] = FakeStackState(tags={"expires-at": "2020-01-01T00:00:00Z"})
    backend.stacks["prod"] = FakeStackState()
    backend.stacks["pr-1"] = ephemeral_stack(past)
    backend.stacks["pr-2"] = ephemeral_stack(future)
    backend.stacks["pr-3"] = ephemeral_stack(past, fail_destroy=True)
    backend.stacks["pr-4"] = ephemeral_stack(NOW)  # expires exactly now: due
    backend.stacks["pr-5"] = ephemeral_stack("next tuesday")
    backend.stacks["pr-6"] = ephemeral_stack("2026-11-01T00:00:00")  # no time zone: not guessed
    backend.stacks["staging"] = ephemeral_stack(past)  # tagged by hand, not a PR stack
    backend.stacks["pr-7"] = FakeStackState(tags={"expires-at": "2020-01-01T00:00:00Z"})  # not tagged ephemeral
    return backend


def test_reap_destroys_expired_stacks_and_continues_past_failures(mixed_backend: FakeBackend) -> None:
    code, out = run_tool(mixed_backend, "reap")
    assert code == 1
    assert set(mixed_backend.stacks) == {"dev", "prod", "pr-2", "pr-3", "pr-5", "pr-6", "staging", "pr-7"}
    destroyed = [stack for action, stack, _ in mixed_backend.events if action == "remove"]
    assert destroyed == ["pr-1", "pr-4"]  # pr-4 comes after the failing pr-3
    for action, _, env in mixed_backend.events:
        if action in ("destroy", "remove"):
            assert env == DESTROY_ENV
    assert "FAILED     pr-3: destroy failed: cluster locked" in out
    assert "FAILED     pr-5: invalid expires-at tag 'next tuesday'" in out
    assert "FAILED     pr-6: invalid expires-at" in out
    assert "FAILED     staging: tagged ephemeral but not named pr-<n>" in out
    assert "kept       pr-2 (expires 2026-11-23T14:00:00Z)" in out
    assert "reap: destroyed 2, kept 1, failed 4" in out
    for untouched in ("dev", "prod", "pr-7", "staging", "pr-5", "pr-6", "pr-2"):
        assert mixed_backend.actions(untouched) == []


def test_reap_dry_run_destroys_nothing(mixed_backend: FakeBackend) -> None:
    before = set(mixed_backend.stacks)
    code, out = run_tool(mixed_backend, "reap", "--dry-run")
    assert set(mixed_backend.stacks) == before
    assert mixed_backend.events == []
    assert "expired    pr-1 (dry run: not destroyed)" in out
    assert "expired    pr-3 (dry run: not destroyed)" in out
    assert "reap: would destroy 3, kept 1, failed 3" in out
    assert code == 1  # the badly tagged stacks still need a human


def test_reap_succeeds_when_nothing_fails(backend: FakeBackend) -> None:
    backend.stacks["pr-1"] = ephemeral_stack(NOW - timedelta(hours=1))
    backend.stacks["pr-2"] = ephemeral_stack(NOW + timedelta(hours=1))
    backend.stacks["dev"] = FakeStackState()
    code, out = run_tool(backend, "reap")
    assert code == 0, out
    assert set(backend.stacks) == {"pr-2", "dev"}


def test_reap_of_an_empty_backend(backend: FakeBackend) -> None:
    code, out = run_tool(backend, "reap")
    assert code == 0
    assert "reap: destroyed 0, kept 0, failed 0" in out


# --- the template through the real program ------------------------------------------------------------------


def test_template_is_not_a_stack_file() -> None:
    """A root Pulumi.ephemeral.yaml would be run as a stack without expiresAt; the template lives elsewhere."""
    assert ephemeral.TEMPLATE.parent.name == "templates"
    assert not (ephemeral.PROJECT_ROOT / "Pulumi.ephemeral.yaml").exists()


def test_template_config_deploys_a_small_staging_dev_mode_stack(template: dict[str, Any]) -> None:
    # A fixed expiry far ahead: the program refuses an `expiresAt` that has passed by the real clock.
    expires_at = datetime(2099, 11, 24, 12, 0, 0, tzinfo=UTC)
    config = stack_config(template, "pr-42", expires_at)
    settings = load_settings(encode_config(config))
    assert settings.environment == "ephemeral"
    assert settings.acme_server == "staging"
    assert settings.vault.mode == "dev"
    assert not settings.protected
    assert settings.domain == f"pr-42.{template[f'{NAMESPACE}:domain']}"

    run = run_program(config, stack="pr-42")
    assert run.outputs["environment"] == "ephemeral"
    cluster = run.one(CLUSTER)
    assert cluster.inputs["tags"]["expires-at"] == "2099-11-24T12:00:00Z"
    assert cluster.inputs["tags"]["environment"] == "ephemeral"
    assert cluster.inputs["tags"]["stack"] == "pr-42"
    assert not any(registration.protect for registration in run.registrations)
    # Small pools: one system node, one fixed SGX node.
    assert [profile["count"] for profile in cluster.inputs["agentPoolProfiles"]] == [1]
    pool = run.one(AGENT_POOL)
    assert pool.inputs["count"] == 1
    assert pool.inputs["enableAutoScaling"] is False
    assert pool.inputs["tags"]["expires-at"] == "2099-11-24T12:00:00Z"
    # Let's Encrypt's staging CA on the Traefik resolver, and OpenBao's dev server.
    traefik = run.one(HELM_RELEASE, "traefik").inputs["values"]
    [resolver] = traefik["certificatesResolvers"].values()
    assert resolver["acme"]["caServer"].startswith("https://acme-staging-v02.api.letsencrypt.org/")
    vault = run.one(HELM_RELEASE, "openbao").inputs["values"]
    assert vault["server"]["dev"]["enabled"] is True
    assert run.outputs["vaultMode"] == "dev"
    # What `up` would print and comment: every service under the stack's own subdomain.
    exported = run.outputs["urls"]
    domain = settings.domain
    assert exported == {
        "vault": f"https://vault.{domain}",
        "grafana": f"https://grafana.{domain}",
        "argocd": f"https://argocd.{domain}",
        "traefik": f"https://traefik.{domain}/dashboard/",
    }
    urls = ephemeral.service_urls(run.outputs, settings.domain)
    assert {service: urls[service] for service in exported} == exported
