"""The alert rules, checked and unit-tested with the real `promtool` (Debian package `prometheus`).

`promtool check rules` reads every file in `alerts/`. The unit tests in `tests/rules/` feed synthetic series to
the rules and say which alerts must fire when, with which labels, and when nothing may fire. They run on the
rules the program deploys (the PrometheusRule specs of the dev stack, which applies every file), written out as
rule files next to a copy of the tests in the same layout as the repository, in one promtool run. Annotations are
reduced to `summary` first: the test shows that its template renders with the series' labels and values, while
descriptions and runbooks are prose that promtool would otherwise have to match word for word.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PROJECT_ROOT, ProgramRun

RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
ALERT_FILES = sorted((PROJECT_ROOT / "alerts").glob("*.yaml"))
TEST_FILES = sorted((PROJECT_ROOT / "tests" / "rules").glob("*.yaml"))


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool not found: install the Debian package prometheus (.ci/run does)"
    return path


def alerts_in(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(alert name, severity) of every alerting rule in a PrometheusRule spec."""
    return {
        (rule["alert"], rule["labels"]["severity"])
        for group in spec["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_every_rule_file_passes_promtool_check(promtool: str) -> None:
    assert ALERT_FILES
    result = subprocess.run(
        [promtool, "check", "rules", *map(str, ALERT_FILES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(ALERT_FILES), result.stdout


def test_the_deployed_rules_pass_their_unit_tests(
    promtool: str, stack_runs: dict[str, ProgramRun], tmp_path: Path
) -> None:
    deployed = {r.inputs["metadata"]["name"]: copy.deepcopy(r.inputs["spec"]) for r in stack_runs["dev"].of_type(RULE)}
    assert sorted(deployed) == sorted(path.stem for path in ALERT_FILES)
    (tmp_path / "alerts").mkdir()
    for name, spec in deployed.items():
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule["annotations"] = {"summary": rule["annotations"]["summary"]}
        (tmp_path / "alerts" / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    copies = tmp_path / "tests" / "rules"
    copies.mkdir(parents=True)
    for path in TEST_FILES:
        shutil.copy(path, copies / path.name)
    result = subprocess.run(
        [promtool, "test", "rules", *(str(copies / path.name) for path in TEST_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_every_alert_is_tested_firing_and_silent() -> None:
    shipped: set[tuple[str, str]] = set()
    for path in ALERT_FILES:
        shipped |= alerts_in(yaml.safe_load(path.read_text()))
    fires: set[tuple[str, str]] = set()
    silent: set[str] = set()
    tested_files: dict[str, set[str]] = defaultdict(set)
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        for rule_file in document["rule_files"]:
            tested_files[(path.parent / rule_file).resolve().name].add(path.name)
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                if not case.get("exp_alerts"):
                    silent.add(case["alertname"])
                for alert in case.get("exp_alerts") or []:
                    fires.add((case["alertname"], alert["exp_labels"]["severity"]))
    assert shipped
    assert not shipped - fires, f"alerts never shown to fire: {sorted(shipped - fires)}"
    assert not {name for name, _ in shipped} - silent, "alerts never shown to stay silent"
    assert set(tested_files) == {path.name for path in ALERT_FILES}
