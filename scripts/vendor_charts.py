"""Vendor a Helm chart into charts/ (the archive the program installs) and record it in charts/charts.lock.json.

    python scripts/vendor_charts.py <chart> <version> [--repo URL] [--commit SHA]
    python scripts/vendor_charts.py --check

A bump: fetch the chart repository's `index.yaml`, take the digest it publishes for `<chart>` `<version>` (the
sha256 of the archive), `helm pull` the archive with the pinned Helm (tools/helm.py), refuse it unless its sha256
is that digest, then store it as `charts/<chart>-<version>.tgz` (removing the archive of the version it replaces),
record version, repository, sha256 and licence in the lock, and set the chart's `ChartPin` in components/charts.py
to that version and repository. The repository is the pin's (`--repo` for a new chart or another mirror). Licence and
upstream source are carried over from the previous lock entry (a new chart: its Chart.yaml annotation
`artifacthub.io/license`; keep its licence text in charts/LICENSES/ and name it in the lock).

`--check` compares every vendored archive with the lock and the pins (tools/vendored.check) and exits 1 on any
problem. Needs the network only for a bump; `--root DIR` works on another copy of the project.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import vendored  # noqa: E402
from tools.helm import helm_binary  # noqa: E402


class PullError(Exception):
    """The chart could not be vendored: nothing in the project was changed."""


def published_digest(repo: str, chart: str, version: str) -> str:
    """The sha256 the repository's index.yaml publishes for the chart version."""
    url = repo.rstrip("/") + "/index.yaml"
    if urllib.parse.urlparse(url).scheme not in ("https", "http", "file"):
        raise PullError(f"{repo}: not an http(s) or file chart repository")
    with urllib.request.urlopen(url, timeout=60) as response:
        index = yaml.safe_load(response.read())
    entries = [e for e in (index.get("entries") or {}).get(chart, []) if str(e.get("version")) == version]
    if not entries:
        raise PullError(f"{url} lists no {chart} {version}")
    digest = str(entries[0].get("digest") or "")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise PullError(f"{url}: {chart} {version} has no sha256 digest ({digest!r})")
    return digest


def helm_pull(repo: str, chart: str, version: str, destination: Path) -> Path:
    """`helm pull` the archive (not unpacked) with the pinned Helm and no user configuration."""
    with tempfile.TemporaryDirectory(prefix="cv-helm-home-") as home:
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": home,
            "HELM_CACHE_HOME": f"{home}/cache",
            "HELM_CONFIG_HOME": f"{home}/config",
            "HELM_DATA_HOME": f"{home}/data",
        }
        command = [str(helm_binary()), "pull", chart, "--repo", repo, "--version", version, "-d", str(destination)]
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        raise PullError(f"helm pull {chart} {version} from {repo}: {result.stderr.strip()}")
    archive = destination / vendored.archive_name(chart, version)
    if not archive.is_file():
        raise PullError(f"helm pull {chart} {version} made no {archive.name}")
    return archive


def subchart_records(archive: Path, previous: dict[str, Any]) -> dict[str, Any]:
    """The sub-charts bundled in the archive, with version and repository from it, licence carried over."""
    members = vendored.archive_members(archive)
    parent = vendored.chart_metadata(archive)
    repositories = {d["name"]: d.get("repository") or None for d in parent.get("dependencies") or []}
    records: dict[str, Any] = {}
    for name, data in sorted(members.items()):
        parts = name.split("/")
        if len(parts) == 4 and parts[1] == "charts" and parts[3] == "Chart.yaml":
            metadata = yaml.safe_load(data)
            sub = str(metadata["name"])
            record = {key: value for key, value in previous.get(sub, {}).items() if key != "version"}
            record.setdefault("license", (metadata.get("annotations") or {}).get("artifacthub.io/license"))
            record.setdefault("license_file", None)
            record["version"] = str(metadata["version"])
            record["repository"] = repositories.get(sub)
            records[sub] = record
    return records


def set_pin(root: Path, chart: str, version: str, repo: str) -> bool:
    """Point the chart's ChartPin in components/charts.py at `version` from `repo`; False when it has none."""
    path = root / vendored.PINS_FILE
    text = path.read_text()

    def replace(match: re.Match[str]) -> str:
        if match["chart"] != chart:
            return match[0]
        # Only the two quoted values change, so the line keeps its layout (and Renovate's pattern still finds it).
        offset = match.start()
        (version_start, version_end), (repo_start, repo_end) = match.span("version"), match.span("repo")
        text = match[0]
        return (
            text[: version_start - offset]
            + version
            + text[version_end - offset : repo_start - offset]
            + repo
            + text[repo_end - offset :]
        )

    updated = vendored.PIN_PATTERN.sub(replace, text)
    if updated != text:
        path.write_text(updated)
    return any(m["chart"] == chart for m in vendored.PIN_PATTERN.finditer(text))


def vendor(root: Path, chart: str, version: str, repo: str | None, commit: str | None) -> list[str]:
    """Vendor one chart version into `root`; the lines to report."""
    lock = vendored.load_lock(root)
    entries = lock.setdefault("charts", {})
    previous = entries.get(chart, {})
    pinned = vendored.pins(root).get(chart)
    repo = repo or previous.get("repository") or (pinned[1] if pinned else None)
    if not repo:
        raise PullError(f"{chart} is neither pinned nor locked: give its chart repository with --repo")
    digest = published_digest(repo, chart, version)
    charts_dir = root / vendored.CHARTS
    with tempfile.TemporaryDirectory(prefix="cv-pull-") as scratch:
        pulled = helm_pull(repo, chart, version, Path(scratch))
        data = pulled.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise PullError(f"{chart} {version} from {repo}: sha256 {actual}, the repository index says {digest}")
        metadata = vendored.chart_metadata(pulled)
        if (metadata.get("name"), str(metadata.get("version"))) != (chart, version):
            raise PullError(f"{pulled.name} holds {metadata.get('name')} {metadata.get('version')}")
        subcharts = subchart_records(pulled, previous.get("subcharts", {}))
    target = charts_dir / vendored.archive_name(chart, version)
    target.write_bytes(data)
    report = [f"{chart} {version}: {target.relative_to(root)} sha256 {actual} (= the repository index's digest)"]
    old = previous.get("archive")
    if old and old != target.name and (charts_dir / old).is_file():
        (charts_dir / old).unlink()
        report.append(f"removed {vendored.CHARTS}/{old}")
    entry = {
        **{key: value for key, value in previous.items() if key in ("source", "path", "license", "license_file")},
        "version": version,
        "repository": repo,
        "archive": target.name,
        "sha256": actual,
        "index_digest": digest,
        "origin": f"helm pull from {repo}; sha256 checked against the repository's index.yaml digest",
        "commit": commit,
        "subcharts": subcharts,
    }
    entry.setdefault("license", (metadata.get("annotations") or {}).get("artifacthub.io/license"))
    entry.setdefault("license_file", None)
    entry.setdefault("source", next(iter(metadata.get("sources") or []), None))
    entries[chart] = entry
    vendored.write_lock(lock, root)
    if set_pin(root, chart, version, repo):
        report.append(f"{vendored.PINS_FILE}: {chart} pinned at {version} from {repo}")
    else:
        report.append(f"{vendored.PINS_FILE} has no ChartPin for {chart}: add one to install it")
    for name, record in [(chart, entry), *subcharts.items()]:
        if not record.get("license_file"):
            report.append(f"{name}: no licence file recorded; add its text under charts/LICENSES/ and to the lock")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("chart", nargs="?")
    parser.add_argument("version", nargs="?")
    parser.add_argument("--repo", help="chart repository URL (default: the pin's or the lock's)")
    parser.add_argument("--commit", help="upstream source commit of this version, if known")
    parser.add_argument("--check", action="store_true", help="verify every vendored chart against the lock")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project to work on (default: this one)")
    arguments = parser.parse_args(argv)
    if arguments.check:
        problems = vendored.check(arguments.root)
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if not problems:
            lock = vendored.load_lock(arguments.root)["charts"]
            print(
                f"{len(lock)} vendored charts match the lock: "
                + ", ".join(f"{c} {e['version']}" for c, e in sorted(lock.items()))
            )
        return 1 if problems else 0
    if not (arguments.chart and arguments.version):
        parser.error("give <chart> <version>, or --check")
    try:
        report = vendor(arguments.root, arguments.chart, arguments.version, arguments.repo, arguments.commit)
    except (PullError, vendored.VendorError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
