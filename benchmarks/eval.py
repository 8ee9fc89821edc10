"""How much the program's evaluation costs beyond importing its SDKs.

Runs, each in a fresh interpreter and several times, (a) the real program for a stack under the test
mocks and (b) a minimal program with the same imports that registers a single resource. "The same
imports" means every module the real program ended up loading: the SDKs load most submodules lazily
(pulumi-azure-native's `network` alone takes over a second), so the minimal run imports exactly the
list the program run reports, and the ratio isolates what the program itself costs. Prints the
median wall time and peak memory of both and their ratio; `--check` exits non-zero when the program
is over the targets (≤ 1.5x the minimal program's time, ≤ 250 MB peak).

    python benchmarks/eval.py [--stack dev] [--runs 5] [--check]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIME_RATIO_TARGET = 1.5
PEAK_MB_TARGET = 250

# Runs in a child interpreter: imports what the program imports, then runs either the program or
# a one-resource stand-in under the same mocks, and reports time since start and peak RSS.
CHILD = r"""
import resource, sys, time, json
started = time.perf_counter()
sys.path.insert(0, {tests!r}); sys.path.insert(0, {root!r})
import harness
import importlib
import pulumi
{imports}
for module in {preload!r}:
    importlib.import_module(module)
if {minimal!r}:
    import runpy, pathlib, tempfile
    program = pathlib.Path(tempfile.mkdtemp()) / "__main__.py"
    program.write_text("from pulumi_azure_native import resources\nresources.ResourceGroup('rg')\n")
    harness.PROJECT_ROOT = program.parent
    config = {{}}
    harness.run_program(config, stack={stack!r})
else:
    config, secret_keys = harness.stack_config({stack!r})
    harness.run_program(config, stack={stack!r}, secret_keys=secret_keys)
elapsed = time.perf_counter() - started
packages = {{"pulumi", "pulumi_azure_native", "pulumi_kubernetes", "pulumi_random", "bcrypt", "yaml"}}
loaded = sorted(name for name in sys.modules if name.split(".")[0] in packages)
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": elapsed, "peak_mb": peak_mb, "modules": loaded}}))
"""


def program_imports() -> str:
    """Import every component module, so both runs pay the same import cost as the program."""
    return "\n".join(f"import components.{path.stem}" for path in sorted((ROOT / "components").glob("*.py")))


def measure(minimal: bool, stack: str, preload: list[str]) -> dict[str, Any]:
    code = CHILD.format(
        tests=str(ROOT / "tests"),
        root=str(ROOT),
        imports=program_imports(),
        minimal=minimal,
        stack=stack,
        preload=preload,
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--check", action="store_true", help="fail when over the targets")
    args = parser.parse_args()

    program = [measure(False, args.stack, [])]
    minimal = []
    # Interleaved, so a machine that slows down mid-run skews both sides alike.
    for _ in range(args.runs):
        minimal.append(measure(True, args.stack, program[0]["modules"]))
        program.append(measure(False, args.stack, []))
    program = program[1:]
    program_s = statistics.median(run["seconds"] for run in program)
    minimal_s = statistics.median(run["seconds"] for run in minimal)
    peak_mb = max(run["peak_mb"] for run in program)
    ratio = program_s / minimal_s
    print(f"program  {program_s:.3f} s  peak {peak_mb:.0f} MB  (stack {args.stack}, median of {args.runs})")
    print(f"minimal  {minimal_s:.3f} s  peak {max(r['peak_mb'] for r in minimal):.0f} MB")
    print(f"ratio    {ratio:.2f}x  (target <= {TIME_RATIO_TARGET}x, <= {PEAK_MB_TARGET} MB)")
    if args.check and (ratio > TIME_RATIO_TARGET or peak_mb > PEAK_MB_TARGET):
        print("over target", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
