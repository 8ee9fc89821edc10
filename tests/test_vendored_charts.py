"""The charts the program installs are vendored in charts/ and pinned by sha256 in charts/charts.lock.json.

- every archive is the locked bytes, and the lock, the archives and components/charts.py agree;
- the Releases the program registers (under the mocks) name those archives and no chart repository;
- scripts/vendor_charts.py, end to end against a chart repository served on loopback (`helm package` +
  `helm repo index` + http.server): pulls, checks the index's digest, stores, locks and re-pins; refuses an archive
  whose digest is not the published one; `--check` fails on a tampered archive;
- nothing in the repository reads beside the checkout.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml

from components.charts import ALL_CHARTS
from harness import PROJECT_ROOT, ProgramRun
from tools import vendored
from tools.helm import helm_binary

RELEASE = "kubernetes:helm.sh/v3:Release"
SCRIPT = PROJECT_ROOT / "scripts" / "vendor_charts.py"


def test_every_vendored_archive_is_the_locked_bytes() -> None:
    lock = vendored.load_lock()["charts"]
    assert set(lock) == {pin.chart for pin in ALL_CHARTS}
    for pin in ALL_CHARTS:
        entry = lock[pin.chart]
        archive = PROJECT_ROOT / pin.path
        assert archive.name == entry["archive"] == f"{pin.chart}-{pin.version}.tgz"
        assert hashlib.sha256(archive.read_bytes()).hexdigest() == entry["sha256"], pin.chart
        assert (entry["version"], entry["repository"]) == (pin.version, pin.repo)
        for name, record in [(pin.chart, entry), *entry["subcharts"].items()]:
            assert record["license"] in ("Apache-2.0", "MPL-2.0"), name
            assert (PROJECT_ROOT / "charts" / record["license_file"]).is_file(), name
    assert vendored.check() == []


def test_bundled_subcharts_are_locked_with_their_versions() -> None:
    """kube-prometheus-stack ships Grafana, kube-state-metrics, the exporters and its CRDs inside its archive."""
    tree = vendored.unpacked("kube-prometheus-stack", "88.5.3")
    bundled = {
        meta["name"]: str(meta["version"])
        for meta in (yaml.safe_load(path.read_text()) for path in tree.glob("charts/*/Chart.yaml"))
    }
    locked = vendored.load_lock()["charts"]["kube-prometheus-stack"]["subcharts"]
    assert bundled == {name: record["version"] for name, record in locked.items()}
    assert {"grafana", "kube-state-metrics", "prometheus-node-exporter", "crds"} <= set(bundled)


def test_program_releases_install_the_vendored_archives(stack_runs: dict[str, ProgramRun]) -> None:
    """Every Release of every stack names a vendored archive (relative to the project directory), its locked
    version, and no chart repository."""
    lock = vendored.load_lock()["charts"]
    expected = {f"./charts/{entry['archive']}": (chart, entry) for chart, entry in lock.items()}
    seen = set()
    for stack, run in stack_runs.items():
        for release in run.of_type(RELEASE):
            chart = release.inputs["chart"]
            assert chart in expected, (stack, release.name, chart)
            name, entry = expected[chart]
            assert release.inputs["version"] == entry["version"], (stack, release.name)
            assert "repositoryOpts" not in release.inputs, (stack, release.name)
            seen.add(name)
    assert seen == set(lock), "every vendored chart is installed by some stack"


# --- scripts/vendor_charts.py ------------------------------------------------------------------


def scratch_project(directory: Path) -> Path:
    """A copy of what the script reads and writes: charts/ and components/charts.py."""
    shutil.copytree(PROJECT_ROOT / "charts", directory / "charts")
    (directory / "components").mkdir()
    shutil.copy(PROJECT_ROOT / "components" / "charts.py", directory / "components" / "charts.py")
    return directory


def helm(*arguments: str, home: Path) -> None:
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    subprocess.run([str(helm_binary()), *arguments], env=environment, check=True, capture_output=True)


def vendor_script(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, check=False)


@pytest.fixture
def chart_repository(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A chart repository on 127.0.0.1 serving `traefik` 99.0.0 (with a sub-chart), made by Helm itself."""
    served = tmp_path / "repository"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    source = tmp_path / "source" / "traefik"
    (source / "templates").mkdir(parents=True)
    (source / "Chart.yaml").write_text(
        "apiVersion: v2\nname: traefik\nversion: 99.0.0\nannotations: {artifacthub.io/license: Apache-2.0}\n"
        "dependencies: [{name: helper, version: 1.0.0, repository: 'https://helpers.example'}]\n"
    )
    (source / "templates" / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\n")
    (source / "charts" / "helper" / "templates").mkdir(parents=True)
    (source / "charts" / "helper" / "Chart.yaml").write_text("apiVersion: v2\nname: helper\nversion: 1.0.0\n")
    helm("package", str(source), "-d", str(served), home=tmp_path / "home")
    helm("repo", "index", str(served), "--url", url, home=tmp_path / "home")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, served
    finally:
        server.shutdown()
        server.server_close()


def test_vendor_charts_pulls_checks_locks_and_repins(tmp_path: Path, chart_repository: tuple[str, Path]) -> None:
    url, served = chart_repository
    project = scratch_project(tmp_path / "project")
    published = yaml.safe_load((served / "index.yaml").read_text())["entries"]["traefik"][0]["digest"]

    result = vendor_script("traefik", "99.0.0", "--repo", url, "--root", str(project))

    assert result.returncode == 0, result.stderr
    archive = project / "charts" / "traefik-99.0.0.tgz"
    assert archive.read_bytes() == (served / "traefik-99.0.0.tgz").read_bytes()
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == published
    assert not (project / "charts" / "traefik-41.3.0.tgz").exists()  # the version it replaces
    entry = vendored.load_lock(project)["charts"]["traefik"]
    assert entry["version"] == "99.0.0"
    assert entry["repository"] == url
    assert entry["sha256"] == entry["index_digest"] == published
    assert entry["license_file"] == "LICENSES/traefik+traefik-helm-chart.txt"  # carried over
    assert entry["subcharts"] == {
        "helper": {"version": "1.0.0", "repository": "https://helpers.example", "license": None, "license_file": None}
    }
    assert vendored.pins(project)["traefik"] == ("99.0.0", url)
    assert vendored.pins(project)["openbao"] == ("0.29.2", "https://openbao.github.io/openbao-helm")  # untouched
    assert "helper: no licence file recorded" in result.stdout
    # A sub-chart without a recorded licence fails the check until its text is kept and named.
    check = vendor_script("--check", "--root", str(project))
    assert (check.returncode, check.stderr.strip()) == (
        1,
        f"error: helper: licence file None missing from {project / 'charts'}",
    )
    (project / "charts" / "LICENSES" / "helpers.txt").write_text("Apache License 2.0\n")
    lock = vendored.load_lock(project)
    lock["charts"]["traefik"]["subcharts"]["helper"].update(license="Apache-2.0", license_file="LICENSES/helpers.txt")
    vendored.write_lock(lock, project)
    check = vendor_script("--check", "--root", str(project))
    assert check.returncode == 0, check.stderr


def test_vendor_charts_refuses_bytes_the_index_does_not_publish(
    tmp_path: Path, chart_repository: tuple[str, Path]
) -> None:
    url, served = chart_repository
    index = served / "index.yaml"
    document = yaml.safe_load(index.read_text())
    document["entries"]["traefik"][0]["digest"] = "0" * 64
    index.write_text(yaml.safe_dump(document))
    project = scratch_project(tmp_path / "project")
    before = {path.name: path.read_bytes() for path in (project / "charts").iterdir() if path.is_file()}

    result = vendor_script("traefik", "99.0.0", "--repo", url, "--root", str(project))

    assert result.returncode == 1
    assert f"the repository index says {'0' * 64}" in result.stderr
    after = {path.name: path.read_bytes() for path in (project / "charts").iterdir() if path.is_file()}
    assert after == before
    assert vendored.pins(project)["traefik"][0] == "41.3.0"


def test_check_fails_on_a_tampered_archive_and_an_unvendored_bump(tmp_path: Path) -> None:
    project = scratch_project(tmp_path / "project")
    assert vendor_script("--check", "--root", str(project)).returncode == 0
    archive = project / "charts" / "openbao-0.29.2.tgz"
    data = bytearray(archive.read_bytes())
    data[-1] ^= 1
    archive.write_bytes(bytes(data))
    pins = project / "components" / "charts.py"
    pins.write_text(pins.read_text().replace('"traefik", "41.3.0"', '"traefik", "41.4.0"'))

    result = vendor_script("--check", "--root", str(project))

    assert result.returncode == 1
    assert "openbao 0.29.2: openbao-0.29.2.tgz has sha256" in result.stderr
    assert "traefik: components/charts.py pins 41.4.0" in result.stderr
    assert "run scripts/vendor_charts.py traefik 41.4.0" in result.stderr


# --- a bare clone is enough --------------------------------------------------------------------

# Spelt in pieces so that this file does not match itself.
BESIDE_THE_CHECKOUT = ("../" + "shared", "shared/" + "reference", "CV_" + "REFERENCE_DIR", "fetch_" + "reference")


def test_nothing_in_the_repository_reads_beside_the_checkout() -> None:
    """No file of the project (tracked or new, as git lists them) names the directory beside the checkout that
    the tests once read, its environment variable or the script that filled it."""
    listed = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    offenders = []
    for name in sorted({name for name in listed.split("\0") if name}):
        path = PROJECT_ROOT / name
        if not path.is_file() or path.suffix == ".tgz":
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        offenders += [f"{name}: {needle}" for needle in BESIDE_THE_CHECKOUT if needle in text]
    assert not offenders, offenders
