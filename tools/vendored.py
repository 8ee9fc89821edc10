"""The Helm charts the program installs, vendored in `charts/` as archives, and the lock that pins their bytes.

    charts/<chart>-<version>.tgz   the archive a Release installs (`helm.v3.Release(chart="./charts/…")`)
    charts/charts.lock.json        per chart: version, chart repository, archive, sha256, upstream source, licence
    charts/LICENSES/               the licence of every upstream chart and bundled sub-chart

The sha256 in the lock is that of the archive file as committed: the bytes `helm template`, the tests and the
cluster all read. An archive is byte-stable in git (no line-ending or mode changes apply to a binary file), so the
digest is simply `sha256sum charts/<chart>-<version>.tgz`. `scripts/vendor_charts.py` writes archives and lock;
`check()` (and `vendor_charts.py --check`, and tests/test_vendored_charts.py) compares them.

Tests read chart files (values.yaml, values.schema.json, CRDs, templates) from `unpacked()`: the archives, checked
against the lock and extracted once per process into a temporary directory. Nothing outside the checkout is read.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHARTS = "charts"
LOCK_NAME = "charts.lock.json"
PINS_FILE = Path("components") / "charts.py"
# The ChartPin(chart, version, repository) lines of components/charts.py, exactly as renovate.json reads them.
PIN_PATTERN = re.compile(r'ChartPin\(\s*"(?P<chart>[^"]+)",\s*"(?P<version>[^"]+)",\s*"(?P<repo>[^"]+)",?\s*\)')


class VendorError(Exception):
    """A vendored chart is missing, or its bytes are not the ones the lock pins."""


def archive_name(chart: str, version: str) -> str:
    """`<chart>-<version>.tgz`, the name `helm pull` and `helm package` give an archive."""
    return f"{chart}-{version}.tgz"


def release_chart_path(chart: str, version: str) -> str:
    """The `chart` of a Release installing the vendored archive: relative to the project directory (where Pulumi runs
    the program and its providers), with a leading `./` so Helm never mistakes a missing file for a repository name."""
    return f"./{CHARTS}/{archive_name(chart, version)}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_lock(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    path = root / CHARTS / LOCK_NAME
    if not path.is_file():
        raise VendorError(f"no chart lock at {path}")
    return json.loads(path.read_text())


def write_lock(lock: Mapping[str, Any], root: Path = PROJECT_ROOT) -> None:
    path = root / CHARTS / LOCK_NAME
    path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


def pins(root: Path = PROJECT_ROOT) -> dict[str, tuple[str, str]]:
    """chart → (version, repository) of the ChartPin lines in `components/charts.py` (read as text, as Renovate does,
    so a scratch copy of the project can be checked without importing it)."""
    text = (root / PINS_FILE).read_text()
    return {m["chart"]: (m["version"], m["repo"]) for m in PIN_PATTERN.finditer(text)}


def archive_members(path: Path) -> dict[str, bytes]:
    """The regular files of a chart archive by path (`<chart>/…`)."""
    with tarfile.open(path) as archive:
        files = {}
        for member in archive.getmembers():
            if member.isfile():
                stream = archive.extractfile(member)
                assert stream is not None
                files[member.name] = stream.read()
        return files


def chart_metadata(path: Path) -> dict[str, Any]:
    """The top-level Chart.yaml of a chart archive."""
    charts = {name: data for name, data in archive_members(path).items() if re.fullmatch(r"[^/]+/Chart\.yaml", name)}
    if len(charts) != 1:
        raise VendorError(f"{path.name}: expected one top-level Chart.yaml, found {sorted(charts)}")
    return yaml.safe_load(next(iter(charts.values())))


def check(root: Path = PROJECT_ROOT) -> list[str]:
    """Every problem with the vendored charts of the project at `root`: an archive missing, not matching its lock
    sha256 or its name/version, a pin of components/charts.py without its locked archive (or the other way round),
    a stray archive, a missing licence file."""
    problems: list[str] = []
    try:
        lock = load_lock(root)
    except VendorError as error:
        return [str(error)]
    charts_dir = root / CHARTS
    entries: dict[str, Any] = lock.get("charts", {})
    pinned = pins(root)
    for chart, (version, repo) in sorted(pinned.items()):
        entry = entries.get(chart)
        if entry is None:
            problems.append(f"{chart} {version}: pinned in {PINS_FILE} but not in the lock")
        elif (entry["version"], entry["repository"]) != (version, repo):
            problems.append(
                f"{chart}: {PINS_FILE} pins {version} from {repo}, the lock has {entry['version']} from "
                f"{entry['repository']} (run scripts/vendor_charts.py {chart} {version})"
            )
    for chart in sorted(set(entries) - set(pinned)):
        problems.append(f"{chart}: in the lock but not pinned in {PINS_FILE}")
    for chart, entry in sorted(entries.items()):
        archive = charts_dir / entry["archive"]
        if entry["archive"] != archive_name(chart, entry["version"]):
            problems.append(f"{chart}: lock names archive {entry['archive']}, expected the {entry['version']} one")
        if not archive.is_file():
            problems.append(f"{chart} {entry['version']}: {archive} is missing")
            continue
        digest = sha256_file(archive)
        if digest != entry["sha256"]:
            problems.append(f"{chart} {entry['version']}: {archive.name} has sha256 {digest}, locked {entry['sha256']}")
            continue
        metadata = chart_metadata(archive)
        if (metadata.get("name"), str(metadata.get("version"))) != (chart, entry["version"]):
            problems.append(f"{archive.name} holds {metadata.get('name')} {metadata.get('version')}")
        for name, record in [(chart, entry), *sorted(entry.get("subcharts", {}).items())]:
            licence = record.get("license_file")
            if not licence or not (charts_dir / licence).is_file():
                problems.append(f"{name}: licence file {licence!r} missing from {charts_dir}")
    locked = {entry["archive"] for entry in entries.values()}
    for stray in sorted(path.name for path in charts_dir.glob("*.tgz") if path.name not in locked):
        problems.append(f"{stray}: in {CHARTS}/ but not in the lock")
    return problems


# --- the archives unpacked, for the tests -----------------------------------------------------------------------------

_scratch_lock = threading.Lock()


@functools.cache
def _scratch_dir() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="cv-charts-"))
    atexit.register(shutil.rmtree, scratch, True)
    return scratch


@functools.cache
def unpacked(chart: str, version: str, root: Path = PROJECT_ROOT) -> Path:
    """The chart tree of the vendored archive (sub-charts under its `charts/`), checked against the lock first."""
    entry = load_lock(root).get("charts", {}).get(chart)
    if entry is None or entry["version"] != version:
        raise VendorError(f"{chart} {version} is not vendored: run scripts/vendor_charts.py {chart} {version}")
    archive = root / CHARTS / entry["archive"]
    if not archive.is_file() or sha256_file(archive) != entry["sha256"]:
        raise VendorError(f"{archive} is missing or not the archive the lock pins (scripts/vendor_charts.py --check)")
    target = _scratch_dir() / entry["sha256"]
    with _scratch_lock, tarfile.open(archive) as packed:  # test threads may ask for the same chart at once
        if not (target / chart / "Chart.yaml").is_file():
            packed.extractall(target, filter="data")
    return target / chart


def chart_trees(root: Path = PROJECT_ROOT) -> dict[tuple[str, str], Path]:
    """(name, version) → tree of every vendored chart and every sub-chart bundled inside one."""
    trees: dict[tuple[str, str], Path] = {}
    for chart, entry in load_lock(root).get("charts", {}).items():
        tree = unpacked(chart, entry["version"], root)
        for chart_yaml in [tree / "Chart.yaml", *sorted(tree.glob("charts/**/Chart.yaml"))]:
            metadata = yaml.safe_load(chart_yaml.read_text())
            trees.setdefault((metadata["name"], str(metadata["version"])), chart_yaml.parent)
    return trees


class _Loader(yaml.CSafeLoader):
    """YAML as the API server reads it: a bare `=` is a string (PyYAML's YAML 1.1 reads it as the `value` tag, and
    the PrometheusRule/AlertmanagerConfig CRDs list `=` among the matcher operators)."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)


# Helm directives alone on a line ({{- if .Values.crds.install }}, {{- end }}, {{- toYaml . | nindent 4 }}): what
# wraps the CRDs a chart ships as templates (Argo CD's templates/crds/); without them the file is the plain CRD.
_DIRECTIVE_LINE = re.compile(r"^\s*\{\{-?.*-?\}\}\s*$")


def _crd_documents(path: Path) -> Iterator[dict[str, Any]]:
    text = path.read_text()
    # Helm templates only what is under templates/; a `crds/` file is applied as written, `{{` in a description too.
    if "templates" in path.parts:
        text = "\n".join(line for line in text.splitlines() if not _DIRECTIVE_LINE.match(line))
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as error:
        # Skipping it would quietly drop CRDs the tests validate against.
        raise VendorError(f"{path}: not readable as CRDs: {error}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
            yield document


@functools.cache
def crd_schemas(root: Path = PROJECT_ROOT) -> dict[str, dict[str, Any]]:
    """`group/version/Kind` → openAPIV3Schema of every CRD the vendored charts ship (`crds/`, and CRDs kept as
    templates), read from the chart files themselves."""
    lock = load_lock(root).get("charts", {})
    return crd_schemas_in(unpacked(chart, entry["version"], root) for chart, entry in sorted(lock.items()))


def crd_schemas_in(trees: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """`group/version/Kind` → openAPIV3Schema of the CRDs in the `crds` directories of chart trees (sub-charts too)."""
    schemas: dict[str, dict[str, Any]] = {}
    for tree in trees:
        for path in sorted(tree.rglob("*.yaml")):
            if path.parent.name != "crds":  # crds/ of a chart or sub-chart, or templates/crds/
                continue
            for crd in _crd_documents(path):
                spec = crd["spec"]
                for version in spec.get("versions") or []:
                    schema = (version.get("schema") or {}).get("openAPIV3Schema")
                    if schema is not None:
                        schemas[f"{spec['group']}/{version['name']}/{spec['names']['kind']}"] = schema
    return schemas
