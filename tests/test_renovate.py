"""renovate.json: valid for the pinned Renovate release's JSON schema, with no key the schema does not know, and its
managers find every pin they are meant to bump.

The schema is Renovate's own (AGPL-3.0-only), so it is not kept in this repository: the test takes it from the npm
package at the pinned version (`npm pack`, the npm registry) into the user's cache and checks its sha256.

Renovate reads a `managerFilePatterns` entry `/…/` as a regular expression and a `matchStrings` entry as one
(named groups `(?<name>…)`), without flags; both are evaluated here with Python's `re` after translating the group
syntax, on the files as they are in the repository. That a pull request really follows (datasource look-ups,
Renovate's own parsing of Dockerfiles, workflows and requirements files) is not provable offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from components.charts import ALL_CHARTS
from harness import PROJECT_ROOT
from tools import vendored

RENOVATE_VERSION = "44.121.2"
# sha256 of package/renovate-schema.json in the npm package renovate@44.121.2.
SCHEMA_SHA256 = "989a29d9d8f1c421436b68de9472898283b55db6c5cf98fb243489e40e338a02"


def renovate_schema_file() -> Path:
    """Renovate's schema at the pinned version, from the npm registry once, then from the cache; sha256-checked."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "confidential-vault"
    target = cache / f"renovate-schema-{RENOVATE_VERSION}.json"
    if not target.exists():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to fetch Renovate's JSON schema (npm pack renovate@<version>)"
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(
                [npm, "pack", f"renovate@{RENOVATE_VERSION}", "--silent", "--pack-destination", scratch],
                check=True,
                capture_output=True,
                timeout=300,
            )
            (tarball,) = Path(scratch).glob("renovate-*.tgz")
            with tarfile.open(tarball) as archive:
                member = archive.extractfile("package/renovate-schema.json")
                assert member is not None
                data = member.read()
        assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, "renovate-schema.json is not the pinned release's"
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(target)
    return target


SCHEMA_FILE = renovate_schema_file()
CONFIG = json.loads((PROJECT_ROOT / "renovate.json").read_text())
SCHEMA = json.loads(SCHEMA_FILE.read_text())
DOCKERFILE = PROJECT_ROOT / "images" / "ego-openbao" / "Dockerfile"


def repository_files() -> list[str]:
    skip = {".git", "venv", ".venv", "__pycache__", ".pytest_cache", "node_modules", ".ruff_cache"}
    return sorted(
        path.relative_to(PROJECT_ROOT).as_posix()
        for path in PROJECT_ROOT.rglob("*")
        if path.is_file() and not skip & set(path.relative_to(PROJECT_ROOT).parts)
    )


def python_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", pattern))


def file_pattern(entry: str) -> re.Pattern[str]:
    assert entry.startswith("/"), f"not a regex pattern: {entry}"
    assert entry.endswith("/"), f"not a regex pattern: {entry}"
    return python_regex(entry[1:-1])


def matched_files(patterns: list[str]) -> list[str]:
    compiled = [file_pattern(entry) for entry in patterns]
    return [path for path in repository_files() if any(pattern.search(path) for pattern in compiled)]


def extracted(manager: dict[str, Any]) -> list[dict[str, str]]:
    """What a regex manager extracts from the files it matches, as Renovate's `matchStrings` would."""
    found = []
    for path in matched_files(manager["managerFilePatterns"]):
        text = (PROJECT_ROOT / path).read_text()
        for match_string in manager["matchStrings"]:
            found += [{"file": path, **match.groupdict()} for match in python_regex(match_string).finditer(text)]
    return found


def custom_manager(described: str) -> dict[str, Any]:
    (manager,) = [m for m in CONFIG["customManagers"] if m["description"].startswith(described)]
    return manager


def test_schema_is_the_vendored_release() -> None:
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA["title"].startswith("JSON schema for Renovate 44.121.2")


def test_config_validates_against_the_schema() -> None:
    jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(CONFIG)


def test_config_uses_only_keys_the_schema_knows() -> None:
    # The schema accepts unknown keys; Renovate warns about them and ignores them, so a typo would do nothing.
    options = set(SCHEMA["properties"])
    assert set(CONFIG) - {"$schema"} <= options, set(CONFIG) - options
    definitions = SCHEMA["definitions"]
    manager_options = set(definitions["helm-values"]["items"]["allOf"][0]["properties"])
    assert set(CONFIG["helm-values"]) <= options | manager_options
    manager_keys = set(definitions["customManagers"]["items"]["allOf"][0]["properties"])
    for manager in CONFIG["customManagers"]:
        assert set(manager) <= manager_keys, set(manager) - manager_keys
    # A rule takes its own match options and (almost) any configuration option besides.
    rule_keys = set(definitions["packageRules"]["items"]["allOf"][0]["properties"]) | options
    for rule in CONFIG["packageRules"]:
        assert set(rule) <= rule_keys, set(rule) - rule_keys


def test_validation_catches_a_wrong_value() -> None:
    broken = json.loads(json.dumps(CONFIG))
    broken["customManagers"][0]["customType"] = "regexp"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_every_chart_pin_is_found_with_its_repository() -> None:
    manager = custom_manager("Helm charts")
    assert manager["datasourceTemplate"] == "helm"
    found = {(d["depName"], d["currentValue"], d["registryUrl"]) for d in extracted(manager)}
    assert found == {(pin.chart, pin.version, pin.repo) for pin in ALL_CHARTS}


def test_chart_bumps_run_the_vendoring_script_and_never_touch_the_lock() -> None:
    """A bump changes the pin; the archive and its lock entry come from scripts/vendor_charts.py (postUpgradeTasks
    on a self-hosted Renovate, else the note tells the reviewer), never from a regex edit of the lock."""
    managers = [*CONFIG["customManagers"], CONFIG["helm-values"]]
    touched = {path for manager in managers for path in matched_files(manager["managerFilePatterns"])}
    assert not {path for path in touched if path.startswith("charts/")}
    rules = merged_rules({"packageName": "traefik", "depName": "traefik", "datasource": "helm", "manager": "regex"})
    (command,) = rules["postUpgradeTasks"]["commands"]
    assert command == "python scripts/vendor_charts.py {{{depName}}} {{{newVersion}}}"
    script = PROJECT_ROOT / command.split()[1]
    assert script.is_file()
    assert set(rules["postUpgradeTasks"]["fileFilters"]) == {"charts/**", "components/charts.py"}
    (note,) = rules["prBodyNotes"]
    assert "python scripts/vendor_charts.py {{{depName}}} {{{newVersion}}}" in note
    # What the command does with Renovate's values filled in: the pin it rewrites is the one the manager reads.
    (pin,) = [d for d in extracted(custom_manager("Helm charts")) if d["depName"] == "traefik"]
    assert vendored.pins(PROJECT_ROOT)["traefik"] == (pin["currentValue"], pin["registryUrl"])


def _dockerfile_args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", DOCKERFILE.read_text(), flags=re.MULTILINE))


def test_openbao_release_and_its_commit_move_together() -> None:
    manager = custom_manager("OpenBao built into the enclave image")
    (dependency,) = extracted(manager)
    args = _dockerfile_args()
    assert dependency["currentValue"] == args["OPENBAO_REF"]
    assert dependency["currentDigest"] == args["OPENBAO_COMMIT"]
    assert dependency["packageName"] == args["OPENBAO_REPO"]
    assert manager["datasourceTemplate"] == "git-tags"


def rules_for(dependency: dict[str, str]) -> list[dict[str, Any]]:
    """The package rules that apply to a dependency, by Renovate's matchers as far as this config uses them: exact
    names; `matchPackageNames` compares the package name (for the OpenBao tags, the repository URL), not the
    dependency's name (lib/util/package-rules/package-names.ts)."""
    fields = {
        "matchPackageNames": "packageName",
        "matchDepNames": "depName",
        "matchDatasources": "datasource",
        "matchManagers": "manager",
        "matchFileNames": "file",
        "matchDepTypes": "depType",
        "matchUpdateTypes": "updateType",
    }
    assert all(key in fields or not key.startswith("match") for rule in CONFIG["packageRules"] for key in rule)
    return [
        rule
        for rule in CONFIG["packageRules"]
        if all(dependency.get(fields[key]) in rule[key] for key in rule if key in fields)
    ]


def merged_rules(dependency: dict[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for rule in rules_for(dependency):
        merged |= rule
    return merged


def test_openbao_bumps_are_marked_as_identity_changes_and_held_below_2_7() -> None:
    (tags,) = extracted(custom_manager("OpenBao built into the enclave image"))
    release = merged_rules({**tags, "depName": "openbao", "datasource": "git-tags", "manager": "regex"})
    assert "enclave-identity" in release["labels"]
    assert release["allowedVersions"] == "<2.7.0"
    assert release["prBodyNotes"]
    # The chart of the same name is no enclave change.
    chart = merged_rules({"packageName": "openbao", "depName": "openbao", "datasource": "helm", "manager": "regex"})
    assert "enclave-identity" not in chart["labels"]


def test_ego_images_move_together_and_are_marked_as_identity_changes() -> None:
    images = set(re.findall(r"^FROM (\S+):\S+", DOCKERFILE.read_text(), flags=re.MULTILINE))
    ego = {image for image in images if image.startswith("ghcr.io/edgelesssys/")}
    assert ego == {"ghcr.io/edgelesssys/ego-dev", "ghcr.io/edgelesssys/ego-deploy"}
    for image in ego:
        rules = merged_rules({"packageName": image, "depName": image, "datasource": "docker", "manager": "dockerfile"})
        assert rules["groupName"] == "EGo"
        assert "enclave-identity" in rules["labels"]


def test_pulumi_sdk_and_cli_move_together() -> None:
    sdk = merged_rules({"packageName": "pulumi", "depName": "pulumi", "datasource": "pypi"})
    # What Renovate's github-actions manager extracts from pulumi/actions' `pulumi-version`.
    cli = merged_rules({"packageName": "pulumi/pulumi", "depName": "pulumi", "manager": "github-actions"})
    assert sdk["groupName"] == cli["groupName"] == "Pulumi"


def test_helm_values_manager_reads_every_values_file() -> None:
    values_files = [path for path in repository_files() if path.startswith("values/")]
    assert values_files
    assert matched_files(CONFIG["helm-values"]["managerFilePatterns"]) == values_files


def test_package_rules_point_at_files_that_exist() -> None:
    for rule in CONFIG["packageRules"]:
        for name in rule.get("matchFileNames", []):
            assert (PROJECT_ROOT / name).is_file(), name
