"""Ephemeral test stacks: create, destroy and reap `pr-<n>` stacks built from `templates/ephemeral.yaml`.

Run from the project root inside the program's virtualenv (it needs the Pulumi CLI on PATH):

    python -m tools.ephemeral up pr-42 [--ttl 24h] [--summary-file FILE]
    python -m tools.ephemeral destroy pr-42
    python -m tools.ephemeral reap [--dry-run]

The backend comes from `--backend-url` or `PULUMI_BACKEND_URL` (never a silent default: an ephemeral stack in
a backend the reaper does not look at would live forever). With the default passphrase secrets provider,
`PULUMI_CONFIG_PASSPHRASE` or `PULUMI_CONFIG_PASSPHRASE_FILE` must be set; `--secrets-provider azurekeyvault://…`
needs neither.

Every stack `up` creates is tagged `ephemeral=true` and `expires-at=<UTC ISO time>` before anything is deployed,
so even a failed deployment is found by `reap`. `destroy` and `reap` only ever touch stacks that carry the tag
*and* are named `pr-<n>`.

Exit codes: 0 success, 1 an operation failed, 2 bad input or a refused request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

if TYPE_CHECKING:
    from components.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = PROJECT_ROOT / "templates" / "ephemeral.yaml"
NAMESPACE = "confidential-vault"

STACK_NAME = re.compile(r"^pr-[1-9][0-9]{0,6}$")
_TTL = re.compile(r"^([1-9][0-9]*)([mhd])$")
_TTL_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
DEFAULT_TTL = "24h"
MIN_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(days=7)

TAG_EPHEMERAL = "ephemeral"
TAG_EXPIRES_AT = "expires-at"
# Lets the Kubernetes provider drop resources of a cluster that is already gone instead of failing the destroy.
DESTROY_ENV = {"PULUMI_K8S_DELETE_UNREACHABLE": "true"}
# Marks the tool's PR comment so the workflow edits it in place instead of adding one per push.
COMMENT_MARKER = "<!-- confidential-vault:ephemeral-stack -->"
_EXPECTED_SERVICES = ("vault", "grafana", "argocd", "traefik")


class UsageError(Exception):
    """Bad input or a refused request: reported without a traceback, exit code 2."""


# --- pure helpers -------------------------------------------------------------------------------------------


def check_stack_name(name: str) -> int:
    """The PR number of an ephemeral stack name; anything but `pr-<n>` is refused."""
    if not STACK_NAME.match(name):
        raise UsageError(f"refusing stack '{name}': ephemeral stacks are named pr-<pull request number>, e.g. pr-42")
    return int(name.removeprefix("pr-"))


def parse_ttl(text: str) -> timedelta:
    """`90m`, `24h`, `3d` → timedelta, between MIN_TTL and MAX_TTL."""
    match = _TTL.match(text.strip())
    if not match:
        raise UsageError(f"bad TTL '{text}': use <number><m|h|d>, e.g. 90m, 24h, 3d")
    ttl = timedelta(**{_TTL_UNITS[match.group(2)]: int(match.group(1))})
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise UsageError(f"bad TTL '{text}': must be between 15m and 7d")
    return ttl


def format_time(moment: datetime) -> str:
    """UTC ISO 8601 with a `Z`, to the second: the form of the `expires-at` tag and the `expiresAt` config."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an `expires-at` tag; a value without a time zone is rejected rather than guessed."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.utcoffset() is None:
        raise ValueError(f"'{text}' has no time zone")
    return moment


def short_name(listed: str) -> str:
    """`org/project/pr-42` (as some backends list stacks) → `pr-42`."""
    return listed.rsplit("/", 1)[-1]


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The `config:` map of the ephemeral template."""
    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config")
    if not isinstance(config, dict) or f"{NAMESPACE}:domain" not in config:
        raise UsageError(f"{path}: expected a `config:` map with {NAMESPACE}:domain (the base domain)")
    return config


def stack_config(template: Mapping[str, Any], name: str, expires_at: datetime) -> dict[str, Any]:
    """The config of stack `name`: the template, published under `<name>.<base domain>`, expiring at `expires_at`."""
    check_stack_name(name)
    config = json.loads(json.dumps(template))
    config[f"{NAMESPACE}:environment"] = "ephemeral"
    config[f"{NAMESPACE}:domain"] = f"{name}.{config[f'{NAMESPACE}:domain']}"
    config[f"{NAMESPACE}:expiresAt"] = format_time(expires_at)
    return config


def encode_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Config values as the Pulumi engine hands them to the program: strings, objects and lists as JSON."""
    return {key: _encode(value) for key, value in config.items()}


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def validate_config(config: Mapping[str, Any]) -> Settings:
    """Check the stack config with the program's own rules before anything touches the backend."""
    from components.config import ConfigError, load_settings

    try:
        return load_settings(encode_config(config))
    except ConfigError as error:
        raise UsageError(str(error)) from None


def service_urls(outputs: Mapping[str, Any], domain: str) -> dict[str, str]:
    """URLs to show for a stack: the `https://` values among its outputs (maps such as `urls` first, then
    top-level strings, each URL once), or the standard service hosts if it exports none."""
    maps = [value for _, value in sorted(outputs.items()) if isinstance(value, Mapping)]
    candidates = [item for value in maps for item in sorted(value.items())]
    candidates += [item for item in sorted(outputs.items()) if isinstance(item[1], str)]
    urls: dict[str, str] = {}
    for label, url in candidates:
        if isinstance(url, str) and url.startswith("https://") and url not in urls.values():
            urls[str(label)] = url
    return urls or {service: f"https://{service}.{domain}" for service in _EXPECTED_SERVICES}


# --- what the tool needs from Pulumi (the real one below, fakes in tests) ------------------------------------


class StackHandle(Protocol):
    """One selected stack."""

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def replace_config(self, config: Mapping[str, str]) -> None: ...

    def up(self) -> dict[str, Any]:
        """Deploy; returns the non-secret stack outputs."""
        ...

    def destroy(self) -> None: ...


class Workspace(Protocol):
    """The stacks of this project in one backend."""

    def stack_names(self) -> list[str]: ...

    def tags(self, name: str) -> dict[str, str]: ...

    def create_or_select(self, name: str) -> StackHandle: ...

    def select(self, name: str) -> StackHandle: ...

    def remove(self, name: str) -> None: ...


# Builds a workspace whose Pulumi commands run with these extra environment variables.
WorkspaceFactory = Callable[[Mapping[str, str]], Workspace]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class UpReport:
    name: str
    settings: Settings
    expires_at: datetime
    urls: dict[str, str]

    @property
    def domain(self) -> str:
        return self.settings.domain

    def markdown(self) -> str:
        """The PR comment for this stack."""
        lines = [
            COMMENT_MARKER,
            f"### Ephemeral stack `{self.name}`",
            "",
            f"Deployed at `{self.domain}`; expires **{format_time(self.expires_at)}** and is destroyed after that "
            "(push to the PR or re-add the label to extend it; remove the label to destroy it now).",
            "",
            "| | URL |",
            "|---|---|",
            *(f"| {key} | {url} |" for key, url in self.urls.items()),
        ]
        notes = []
        if self.settings.acme_server == "staging":
            notes.append("Certificates come from the Let's Encrypt **staging** CA: browsers will warn.")
        if self.settings.vault.mode == "dev":
            notes.append("OpenBao runs in **dev mode**: in memory, its data goes with the stack.")
        if notes:
            lines += ["", " ".join(notes)]
        return "\n".join(lines) + "\n"


@dataclass
class ReapReport:
    destroyed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # dry run: would be destroyed
    kept: dict[str, str] = field(default_factory=dict)  # name → expires-at
    failed: dict[str, str] = field(default_factory=dict)  # name → reason


@dataclass
class Ephemeral:
    """The logic of the tool, over an injected workspace factory."""

    workspaces: WorkspaceFactory
    template: Mapping[str, Any]
    clock: Callable[[], datetime] = _utc_now
    say: Callable[[str], None] = print

    def up(self, name: str, ttl: timedelta) -> UpReport:
        """Create or update `name` from the template; tags it before deploying so a failed `up` is still reaped."""
        check_stack_name(name)
        expires_at = self.clock() + ttl
        config = stack_config(self.template, name, expires_at)
        settings = validate_config(config)
        workspace = self.workspaces({})
        if name in {short_name(listed) for listed in workspace.stack_names()}:
            self._require_ephemeral(workspace, name)
        stack = workspace.create_or_select(name)
        stack.set_tags({TAG_EPHEMERAL: "true", TAG_EXPIRES_AT: format_time(expires_at)})
        stack.replace_config(encode_config(config))
        self.say(f"deploying {name} (expires {format_time(expires_at)})")
        outputs = stack.up()
        return UpReport(name, settings, expires_at, service_urls(outputs, settings.domain))

    def destroy(self, name: str) -> bool:
        """Destroy and remove `name`; True if it existed. A missing stack is success (idempotent)."""
        check_stack_name(name)
        workspace = self.workspaces(DESTROY_ENV)
        if name not in {short_name(listed) for listed in workspace.stack_names()}:
            self.say(f"{name}: no such stack, nothing to destroy")
            return False
        self._require_ephemeral(workspace, name)
        self.say(f"destroying {name}")
        workspace.select(name).destroy()
        workspace.remove(name)
        self.say(f"{name}: destroyed and removed")
        return True

    def reap(self, dry_run: bool = False) -> ReapReport:
        """Destroy every ephemeral stack past its `expires-at`; one failure does not stop the others."""
        report = ReapReport()
        now = self.clock()
        workspace = self.workspaces({})
        for listed in workspace.stack_names():
            name = short_name(listed)
            try:
                tags = workspace.tags(name)
            except Exception as error:
                report.failed[name] = f"cannot read tags: {error}"
                continue
            if tags.get(TAG_EPHEMERAL) != "true":
                continue
            if not STACK_NAME.match(name):
                report.failed[name] = "tagged ephemeral but not named pr-<n>: left alone"
                continue
            try:
                expires_at = parse_time(tags.get(TAG_EXPIRES_AT, ""))
            except ValueError:
                report.failed[name] = f"invalid {TAG_EXPIRES_AT} tag {tags.get(TAG_EXPIRES_AT)!r}: left alone"
                continue
            if now < expires_at:
                report.kept[name] = format_time(expires_at)
            elif dry_run:
                report.expired.append(name)
            else:
                try:
                    self.destroy(name)
                    report.destroyed.append(name)
                except Exception as error:
                    report.failed[name] = str(error) or type(error).__name__
        return report

    @staticmethod
    def _require_ephemeral(workspace: Workspace, name: str) -> None:
        if workspace.tags(name).get(TAG_EPHEMERAL) != "true":
            raise UsageError(f"refusing stack '{name}': it exists but is not tagged {TAG_EPHEMERAL}=true")


# --- the real Pulumi Automation API ----------------------------------------------------------------------


class _PulumiStack:
    def __init__(self, stack: Any, say: Callable[[str], None]) -> None:
        self._stack = stack
        self._say = say

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._stack.set_tag(key, value)

    def replace_config(self, config: Mapping[str, str]) -> None:
        from pulumi import automation as auto

        stale = [key for key in self._stack.get_all_config() if key not in config]
        if stale:
            self._stack.remove_all_config(stale)
        self._stack.set_all_config({key: auto.ConfigValue(value=value) for key, value in config.items()})

    def up(self) -> dict[str, Any]:
        result = self._stack.up(on_output=self._say, color="never")
        return {key: output.value for key, output in result.outputs.items() if not output.secret}

    def destroy(self) -> None:
        self._stack.destroy(on_output=self._say, color="never")


class _PulumiWorkspace:
    def __init__(self, workspace: Any, say: Callable[[str], None]) -> None:
        self._workspace = workspace
        self._say = say

    def stack_names(self) -> list[str]:
        return [summary.name for summary in self._workspace.list_stacks()]

    def tags(self, name: str) -> dict[str, str]:
        return dict(self._workspace.list_tags(name))

    def create_or_select(self, name: str) -> StackHandle:
        from pulumi import automation as auto

        return _PulumiStack(auto.Stack.create_or_select(name, self._workspace), self._say)

    def select(self, name: str) -> StackHandle:
        from pulumi import automation as auto

        return _PulumiStack(auto.Stack.select(name, self._workspace), self._say)

    def remove(self, name: str) -> None:
        self._workspace.remove_stack(name)


def pulumi_workspaces(
    backend_url: str, secrets_provider: str | None, say: Callable[[str], None] = print
) -> WorkspaceFactory:
    """Workspaces over this project directory (the real program) in the given backend."""

    def build(extra_env: Mapping[str, str]) -> Workspace:
        from pulumi import automation as auto

        workspace = auto.LocalWorkspace(
            work_dir=str(PROJECT_ROOT),
            env_vars={"PULUMI_BACKEND_URL": backend_url, **extra_env},
            secrets_provider=secrets_provider,
        )
        return _PulumiWorkspace(workspace, say)

    return build


def check_environment(environ: Mapping[str, str], backend_url: str | None, secrets_provider: str | None) -> str:
    """The backend URL; a missing backend or passphrase is a usage error, not a Pulumi prompt in CI."""
    url = backend_url or environ.get("PULUMI_BACKEND_URL", "")
    if not url:
        raise UsageError(
            "no state backend: set PULUMI_BACKEND_URL or --backend-url "
            "(e.g. azblob://state?storage_account=<account>, see scripts/bootstrap-backend.sh)"
        )
    passphrase_provider = secrets_provider in (None, "", "passphrase")
    has_passphrase = environ.get("PULUMI_CONFIG_PASSPHRASE") or environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if passphrase_provider and not has_passphrase:
        raise UsageError(
            "no passphrase: set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE "
            "(or use --secrets-provider azurekeyvault://<vault>.vault.azure.net/keys/<key>)"
        )
    return url


# --- command line -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ephemeral", description="Ephemeral pr-<n> test stacks.")
    parser.add_argument("--backend-url", help="state backend (default: $PULUMI_BACKEND_URL)")
    parser.add_argument("--secrets-provider", help="secrets provider for new stacks (default: passphrase)")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="create or update a pr-<n> stack from templates/ephemeral.yaml")
    up.add_argument("name", help="stack name, pr-<pull request number>")
    up.add_argument("--ttl", default=DEFAULT_TTL, help="time to live: <n>m, <n>h or <n>d, 15m..7d (default 24h)")
    up.add_argument("--summary-file", type=Path, help="also write the stack's URLs as a Markdown PR comment here")
    destroy = commands.add_parser("destroy", help="destroy and remove a pr-<n> stack (a missing one is success)")
    destroy.add_argument("name")
    reap = commands.add_parser("reap", help="destroy every ephemeral stack past its expires-at tag")
    reap.add_argument("--dry-run", action="store_true", help="only report what would be destroyed")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    workspaces: WorkspaceFactory | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = _utc_now,
    say: Callable[[str], None] = print,
    template_path: Path = TEMPLATE,
) -> int:
    """Run one command; returns the exit code (0 ok, 1 failed, 2 bad input or refused)."""
    args = _parser().parse_args(argv)
    try:
        ttl = parse_ttl(args.ttl) if args.command == "up" else None
        if args.command in ("up", "destroy"):
            check_stack_name(args.name)
        url = check_environment(os.environ if environ is None else environ, args.backend_url, args.secrets_provider)
        tool = Ephemeral(
            workspaces or pulumi_workspaces(url, args.secrets_provider, say),
            load_template(template_path),
            clock,
            say,
        )
        if args.command == "up":
            assert ttl is not None
            report = tool.up(args.name, ttl)
            say(f"{report.name} is up at {report.domain}, expires {format_time(report.expires_at)}:")
            for key, link in report.urls.items():
                say(f"  {key}: {link}")
            if args.summary_file:
                args.summary_file.write_text(report.markdown())
            return 0
        if args.command == "destroy":
            tool.destroy(args.name)
            return 0
        return _print_reap(tool.reap(args.dry_run), args.dry_run, say)
    except UsageError as error:
        say(f"error: {error}")
        return 2
    except Exception as error:
        say(f"error: {type(error).__name__}: {error}")
        return 1


def _print_reap(report: ReapReport, dry_run: bool, say: Callable[[str], None]) -> int:
    for name in report.destroyed:
        say(f"destroyed  {name}")
    for name in report.expired:
        say(f"expired    {name} (dry run: not destroyed)")
    for name, expires_at in report.kept.items():
        say(f"kept       {name} (expires {expires_at})")
    for name, reason in report.failed.items():
        say(f"FAILED     {name}: {reason}")
    verb = "would destroy" if dry_run else "destroyed"
    count = len(report.expired) if dry_run else len(report.destroyed)
    say(f"reap: {verb} {count}, kept {len(report.kept)}, failed {len(report.failed)}")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
