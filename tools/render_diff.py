"""Rendered-manifest diff: the Kubernetes objects a change adds, removes and changes, stack by stack.

    python -m tools.render_diff [--base origin/main] [--head REV] [--stack dev ...] [--output-dir DIR]
                                [--repo PATH]

Each side — the base revision, and the head: a revision, or by default the working tree with its uncommitted
changes — has its program run under the test harness's mocks (`tests/harness.py` of that very tree, in a
subprocess; a revision is unpacked with `git archive` into a temporary directory), so no cloud credentials are
needed and nothing is deployed. Every Helm release the program registers is rendered with the pinned Helm
(tools/render.py) and set next to the Kubernetes objects the program registers itself. The report lists the
objects added, removed and changed, with the changed fields.

Secrets never appear: the data of every Secret, and any value that contains a secret the program passes
(a value under a Pulumi secret marker, as such or base64-encoded), show as "(secret)" — a changed one as
"changed", never its content. The mocks make every run deterministic, so an unchanged object never shows up.

Markdown goes to stdout, or with `--output-dir` into `<dir>/<stack>.md` (what the preview workflow posts as one
comment per stack). Each side's charts are the archives vendored in that side's own tree (`charts/`, the files its
Releases name), so a chart bump renders the old archive on the base side and the new one on the head side, and
nothing outside the repository is read.

Exit codes: 0 the report was made (changes or not), 1 a side could not be run or rendered (the report says
why), 2 bad arguments (e.g. an unknown revision).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import difflib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.render import (
    RELEASE_TYPE,
    RenderError,
    chart_label,
    effective_namespace,
    integral,
    object_id,
    render_releases,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKING_TREE = "working tree"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker of a secret value
MASK = "(secret)"
# Secret strings shorter than this are only masked where a value equals them ("admin" is in many a sentence).
_SHORTEST_CONTAINED_SECRET = 6
_LINES_PER_OBJECT = 40
_TEXT_DIFF_LINES = 12
# GitHub refuses comments over 65536 characters.
MAX_REPORT_CHARS = 60_000
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

# Runs inside the tree of one side, with that tree's own harness: only `STACKS`, `stack_config`, `run_program`
# and the `type`/`name`/`custom`/`inputs`/`raw_inputs` of its registrations are relied on.
_COLLECT = """
import json, sys
tree, output, *wanted = sys.argv[1:]
sys.path[:0] = [tree + "/tests", tree]
import harness
stacks = {}
for stack in [s for s in wanted if s in harness.STACKS] if wanted else harness.STACKS:
    config, secret_keys = harness.stack_config(stack)
    run = harness.run_program(config, stack=stack, secret_keys=secret_keys)
    stacks[stack] = [
        {"type": r.type, "name": r.name, "inputs": r.inputs, "raw_inputs": r.raw_inputs}
        for r in run.registrations
        if r.custom and r.type.startswith("kubernetes:")
    ]
with open(output, "w") as stream:
    json.dump({"stacks": stacks, "known": list(harness.STACKS)}, stream, default=str)
"""


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class SideError(Exception):
    """One side could not be run or rendered: reported, exit code 1."""


@dataclass(frozen=True)
class Entry:
    """One object of one side: its origin (`release <name> (<chart> <version>)` or `program`) and body."""

    origin: str
    body: dict[str, Any]


@dataclass
class Side:
    """What one side renders, per stack: object id → entry, and the secret strings its program passes."""

    label: str
    stacks: dict[str, dict[str, Entry]] = field(default_factory=dict)
    secrets: dict[str, set[str]] = field(default_factory=dict)
    error: str | None = None


# --- collecting one side -----------------------------------------------------------------------


def git(repo: Path, *arguments: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[Any]:
    return subprocess.run(["git", "-C", str(repo), *arguments], stdout=stdout, stderr=subprocess.PIPE, check=False)


def describe(repo: Path, revision: str) -> str:
    """`revision (abcdef123456)`; UsageError for a revision git does not know."""
    found = git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if found.returncode != 0:
        raise UsageError(f"unknown revision {revision!r} in {repo}")
    commit = found.stdout.decode().strip()
    return revision if revision.startswith(commit[:12]) else f"{revision} ({commit[:12]})"


def unpack(repo: Path, revision: str, destination: Path) -> None:
    archive = git(repo, "archive", "--format=tar", revision)
    if archive.returncode != 0:
        raise SideError(f"git archive {revision}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")


def collect(tree: Path, stacks: Sequence[str]) -> dict[str, Any]:
    """Run the tree's program under its own harness's mocks, in a subprocess; the registrations per stack."""
    with tempfile.TemporaryDirectory(prefix="cv-collect-") as scratch:
        output = Path(scratch) / "registrations.json"
        environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(
            [sys.executable, "-c", _COLLECT, str(tree), str(output), *stacks],
            cwd=tree,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise SideError(f"the program did not run under the mocks:\n{tail}")
        return json.loads(output.read_text())


def secret_strings(raw: Any, inside: bool = False) -> Iterator[str]:
    """The string values under Pulumi secret markers in wire-format inputs."""
    if isinstance(raw, dict):
        if raw.get(SECRET_SIG) is not None and "value" in raw:
            yield from secret_strings(raw["value"], True)
        else:
            for item in raw.values():
                yield from secret_strings(item, inside)
    elif isinstance(raw, list):
        for item in raw:
            yield from secret_strings(item, inside)
    elif inside and isinstance(raw, str) and raw:
        yield raw
    elif inside and raw is not None and not isinstance(raw, bool):
        yield str(raw)


def render_side(registrations: list[dict[str, Any]], tree: Path) -> dict[str, Entry]:
    """Every object of one stack on one side, by id; `tree` is that side's project tree (its vendored charts)."""
    releases = [r for r in registrations if r["type"] == RELEASE_TYPE]
    rendered = render_releases([release["inputs"] for release in releases], root=tree)
    cluster_scoped = {
        obj["spec"]["names"]["kind"]
        for objects in rendered
        for obj in objects
        if obj.get("kind") == "CustomResourceDefinition" and obj["spec"].get("scope") == "Cluster"
    }
    entries: dict[str, Entry] = {}

    def add(origin: str, body: dict[str, Any], namespace: str) -> None:
        key = object_id(body, namespace, cluster_scoped)
        if key in entries:  # the tests fail on this; the report still shows both
            key = f"{key} (again, {origin})"
        entries[key] = Entry(origin, body)

    for release, objects in zip(releases, rendered, strict=True):
        inputs = release["inputs"]
        origin = f"release {inputs['name']} ({chart_label(inputs)})"
        for obj in objects:
            add(origin, obj, effective_namespace(obj, str(inputs.get("namespace") or "default"), cluster_scoped))
    for registration in registrations:
        if registration["type"] != RELEASE_TYPE:
            body = integral({k: v for k, v in registration["inputs"].items() if k != "__defaults"})
            add("program", body, effective_namespace(body, "default", cluster_scoped))
    return entries


def load_side(repo: Path, revision: str | None, stacks: Sequence[str]) -> Side:
    """Run and render one side; a failure is recorded on the side, not raised."""
    side = Side(WORKING_TREE if revision is None else describe(repo, revision))
    try:
        if revision is None:
            _collect_and_render(side, repo, stacks)
        else:
            with tempfile.TemporaryDirectory(prefix="cv-tree-") as tree:
                unpack(repo, revision, Path(tree))
                _collect_and_render(side, Path(tree), stacks)
    except (SideError, RenderError) as error:
        side.error = str(error)
    return side


def _collect_and_render(side: Side, tree: Path, stacks: Sequence[str]) -> None:
    collected = collect(tree, stacks)
    for stack, registrations in collected["stacks"].items():
        # Known before rendering, so that even Helm's error messages are masked.
        side.secrets[stack] = {secret for r in registrations for secret in secret_strings(r["raw_inputs"])}
        side.stacks[stack] = render_side(registrations, tree)


# --- comparing ---------------------------------------------------------------------------------


class Masker:
    """Decides which values are secret: Secret data, and anything containing a secret the program passes."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.contained: set[str] = set()
        for secret in secrets:
            forms = {secret, base64.b64encode(secret.encode()).decode()}
            self.exact |= forms
            if len(secret) >= _SHORTEST_CONTAINED_SECRET:
                self.contained |= forms

    def is_secret(self, body: Mapping[str, Any], path: tuple[str, ...], value: Any) -> bool:
        if body.get("kind") == "Secret" and path and path[0] in ("data", "stringData"):
            return True
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return text in self.exact or any(secret in text for secret in self.contained)

    def text(self, message: str) -> str:
        for secret in sorted(self.contained, key=len, reverse=True):
            message = message.replace(secret, MASK)
        return message


def flatten(value: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaves by path. Lists of named items are keyed by name; lists of scalars are one leaf."""
    if isinstance(value, dict) and value:
        leaves: dict[tuple[str, ...], Any] = {}
        for key, item in value.items():
            leaves.update(flatten(item, (*path, str(key))))
        return leaves
    if isinstance(value, list) and value and not all(not isinstance(item, (dict, list)) for item in value):
        names = [item.get("name") for item in value if isinstance(item, dict)]
        named = len(names) == len(value) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)
        leaves = {}
        for index, item in enumerate(value):
            leaves.update(flatten(item, (*path, f"[{names[index]}]" if named else f"[{index}]")))
        return leaves
    return {path: value}


def dotted(path: tuple[str, ...]) -> str:
    text = ""
    for part in path:
        if part.startswith("["):
            text += part
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def field_changes(before: Mapping[str, Any], after: Mapping[str, Any], masker: Masker) -> list[str]:
    """`- path: old` / `+ path: new` lines for one object; secrets as `! path: changed (secret)`."""
    old, new = flatten(before), flatten(after)
    lines: list[str] = []
    for path in sorted(set(old) | set(new)):
        if path in old and path in new and old[path] == new[path]:
            continue
        name = dotted(path)
        secret = any(
            side is not None and masker.is_secret(body, path, side)
            for side, body in ((old.get(path), before), (new.get(path), after))
        )
        if secret:
            state = "added" if path not in old else "removed" if path not in new else "changed"
            lines.append(f"! {name}: {state} {MASK}")
        elif path in old and path in new and isinstance(old[path], list) and isinstance(new[path], list):
            removed = [item for item in old[path] if item not in new[path]]
            added = [item for item in new[path] if item not in old[path]]
            lines += [f"- {name}: {show(item)}" for item in removed] + [f"+ {name}: {show(item)}" for item in added]
            if not removed and not added:
                lines.append(f"~ {name}: reordered")
        elif (
            path in old
            and path in new
            and isinstance(old[path], str)
            and isinstance(new[path], str)
            and ("\n" in old[path] + new[path])
        ):
            lines.append(f"~ {name}:")
            text_diff = list(difflib.unified_diff(old[path].splitlines(), new[path].splitlines(), lineterm="", n=0))
            body = [line for line in text_diff[2:] if not line.startswith("@@")]
            lines += [f"{line[0]}     {line[1:]}" for line in body[:_TEXT_DIFF_LINES]]
            if len(body) > _TEXT_DIFF_LINES:
                lines.append(f"~     … {len(body) - _TEXT_DIFF_LINES} more changed lines")
        else:
            if path in old:
                lines.append(f"- {name}: {show(old[path])}")
            if path in new:
                lines.append(f"+ {name}: {show(new[path])}")
    return lines


@dataclass
class StackDiff:
    stack: str
    added: list[tuple[str, Entry]] = field(default_factory=list)
    removed: list[tuple[str, Entry]] = field(default_factory=list)
    changed: list[tuple[str, Entry, list[str]]] = field(default_factory=list)
    total: int = 0


def compare(stack: str, base: Mapping[str, Entry], head: Mapping[str, Entry], masker: Masker) -> StackDiff:
    result = StackDiff(stack, total=len(head))
    for key in sorted(set(base) | set(head)):
        if key not in base:
            result.added.append((key, head[key]))
        elif key not in head:
            result.removed.append((key, base[key]))
        else:
            lines = field_changes(base[key].body, head[key].body, masker)
            if base[key].origin != head[key].origin:
                lines.insert(0, f"~ moved from {base[key].origin}")
            if lines:
                result.changed.append((key, head[key], lines))
    return result


# --- reporting ---------------------------------------------------------------------------------


def markdown(diff: StackDiff, base: Side, head: Side) -> str:
    """The report of one stack: a headline, then the added, removed and changed objects."""
    title = f"### Rendered manifests: `{diff.stack}`"
    sides = f"Base `{base.label}` → head `{head.label}`"
    if base.error or head.error:
        failed = base if base.error else head
        masker = Masker(head.secrets.get(diff.stack, set()) | base.secrets.get(diff.stack, set()))
        message = masker.text(failed.error or "")
        return f"{title}\n\n{sides}: **the {failed.label} side could not be rendered.**\n\n```text\n{message}\n```\n"
    if diff.stack not in base.stacks:
        headline = f"new stack: **{len(diff.added)} objects**"
    elif diff.stack not in head.stacks:
        headline = f"stack removed: **{len(diff.removed)} objects**"
    elif not (diff.added or diff.removed or diff.changed):
        return f"{title}\n\n{sides}: **no change** in the {diff.total} rendered objects.\n"
    else:
        headline = (
            f"**{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed** "
            f"of {diff.total} objects"
        )
    parts = [
        title,
        "",
        f"{sides}: {headline} (Helm releases rendered with the pinned Helm, plus the objects the "
        "program registers itself; secret values are never shown).",
    ]
    for heading, entries in (("Added", diff.added), ("Removed", diff.removed)):
        if entries:
            parts += ["", f"<details><summary>{heading} ({len(entries)})</summary>", ""]
            parts += [f"- `{key}` — {entry.origin}" for key, entry in entries]
            parts += ["", "</details>"]
    if diff.changed:
        parts += ["", f"<details open><summary>Changed ({len(diff.changed)})</summary>", ""]
        for key, entry, lines in diff.changed:
            shown = lines[:_LINES_PER_OBJECT]
            if len(lines) > _LINES_PER_OBJECT:
                shown.append(f"~ … {len(lines) - _LINES_PER_OBJECT} more changed fields")
            parts += [f"`{key}` — {entry.origin}", "", "```diff", *shown, "```", ""]
        parts += ["</details>"]
    report = "\n".join(parts) + "\n"
    if len(report) > MAX_REPORT_CHARS:
        cut = report[:MAX_REPORT_CHARS].rsplit("\n", 1)[0]
        report = (
            f"{cut}\n```\n\n</details>\n\n**Truncated**: run `python -m tools.render_diff --base <base> "
            f"--stack {diff.stack}` for the whole report.\n"
        )
    return report


def report(base: Side, head: Side, stacks: Sequence[str]) -> dict[str, str]:
    reports = {}
    for stack in stacks:
        masker = Masker(base.secrets.get(stack, set()) | head.secrets.get(stack, set()))
        diff = compare(stack, base.stacks.get(stack, {}), head.stacks.get(stack, {}), masker)
        reports[stack] = markdown(diff, base, head)
    return reports


def run(repo: Path, base: str, head: str | None, stacks: Sequence[str]) -> tuple[dict[str, str], bool]:
    """The report per stack and whether both sides rendered."""
    describe(repo, base)
    if head is not None:
        describe(repo, head)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        base_future = pool.submit(load_side, repo, base, stacks)
        head_future = pool.submit(load_side, repo, head, stacks)
        base_side, head_side = base_future.result(), head_future.result()
    names = list(stacks) or sorted(set(base_side.stacks) | set(head_side.stacks))
    if not names and (base_side.error or head_side.error):
        names = ["all stacks"]
    return report(base_side, head_side, names), not (base_side.error or head_side.error)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render_diff", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--base", default="origin/main", help="base revision (default: origin/main)")
    parser.add_argument("--head", help="head revision (default: the working tree, uncommitted changes included)")
    parser.add_argument("--stack", action="append", default=[], help="stack to report (repeatable; default: all)")
    parser.add_argument("--output-dir", type=Path, help="write <stack>.md files here instead of printing")
    parser.add_argument("--repo", type=Path, help="the git repository (default: the one holding this tool)")
    arguments = parser.parse_args(argv)
    repo = arguments.repo or PROJECT_ROOT
    try:
        reports, rendered = run(repo, arguments.base, arguments.head, arguments.stack)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if arguments.output_dir:
        arguments.output_dir.mkdir(parents=True, exist_ok=True)
        for stack, text in reports.items():
            (arguments.output_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stack)}.md").write_text(text)
    else:
        print("\n".join(reports.values()))
    return 0 if rendered else 1


if __name__ == "__main__":
    sys.exit(main())
