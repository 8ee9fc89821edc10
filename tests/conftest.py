"""Pytest fixtures over the mock harness in `harness.py`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import STACKS, ProgramRun, require_reference, run_program, stack_config

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A skipped test is not a passed test: any skip fails the run."""
    if _skipped and exitstatus == 0:
        print(f"\n{len(_skipped)} test(s) skipped, which this project treats as failures: {_skipped}")
        session.exitstatus = 1


@pytest.fixture(scope="session")
def stack_runs() -> dict[str, ProgramRun]:
    """One run of the program per `Pulumi.<stack>.yaml`, shared by the tests that only read it."""
    runs = {}
    for stack in STACKS:
        config, secret_keys = stack_config(stack)
        runs[stack] = run_program(config, stack=stack, secret_keys=secret_keys)
    return runs


@pytest.fixture
def dev_config() -> dict[str, Any]:
    """The dev stack's config, a fresh copy per test."""
    return stack_config("dev")[0]


@pytest.fixture
def run() -> Callable[..., ProgramRun]:
    return run_program


@pytest.fixture(scope="session")
def reference() -> Path:
    """The vendored charts, checked against their lock and unpacked (harness.require_reference): nothing beside
    the checkout."""
    return require_reference()
