"""Render the program's Helm releases with real Helm: the objects a `pulumi up` would make the cluster create.

`render_release(inputs)` takes one `kubernetes:helm.sh/v3:Release` registration's inputs (chart, version, release
name, namespace and exactly the values the program passes, secrets unwrapped) and runs the pinned Helm
(`tools/helm.py`) offline on the chart the Release names — the vendored archive `./charts/<chart>-<version>.tgz`,
resolved against the project tree it came from (`root`, default this checkout), the same bytes the cluster gets:

    helm template <name> <root>/charts/<chart>-<version>.tgz --namespace <namespace> \
        --values <values as JSON> --kube-version 1.33.0 --api-versions <custom resource APIs> \
        --skip-tests --include-crds

What a Release installs: like pulumi-kubernetes, nulls are dropped from the values (unless `allowNullValues`),
the CRDs of the chart's `crds/` directory are included (unless `skipCrds`), hooks too (unless `disableWebhooks`),
test hooks never. Any failure — a template `fail`, a values-schema error — and any message Helm prints (e.g.
"skipped value for …: Not a table.", printed for a value of the wrong type) raises `RenderError`. Renders are
cached per input, so identical releases in several test variants run Helm once; `render_releases` renders the
releases of one program run with the custom resource APIs their own CRDs serve.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from tools.helm import helm_binary

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
# The Kubernetes minor version the platform targets (AKS); charts branch on it through .Capabilities.KubeVersion.
KUBE_VERSION = "1.33.0"
# Custom resource APIs the cluster serves once the platform's releases are installed (Traefik, kube-prometheus-stack
# and Argo CD ship these CRDs); charts check them with .Capabilities.APIVersions.Has (e.g. before a ServiceMonitor).
# `render_releases` derives the set from the CRDs the releases really render; this is only its first guess.
PLATFORM_API_VERSIONS = ("argoproj.io/v1alpha1", "monitoring.coreos.com/v1", "traefik.io/v1alpha1")
# Inputs of a Release this renderer cannot reproduce: refusing beats rendering something else. A chart repository
# (`repositoryOpts`) would be read at install time, not the vendored bytes: the program never passes one.
_UNSUPPORTED_INPUTS = ("valueYamlFiles", "postrender", "dependencyUpdate", "devel", "repositoryOpts")
_MESSAGE_LINE_LIMIT = 400


class RenderError(Exception):
    """Helm failed, a template called `fail`, the values broke the chart's schema, or Helm printed a warning."""


class _Loader(yaml.CSafeLoader):
    """YAML as the API server reads it: a bare `=` is a string (PyYAML's YAML 1.1 reads it as the `value` tag)."""


_Loader.add_constructor("tag:yaml.org,2002:value", _Loader.construct_yaml_str)


def chart_path(inputs: Mapping[str, Any], root: Path = PROJECT_ROOT) -> Path:
    """The chart a Release installs: its `chart` as a path (an archive or a chart directory), a relative one taken
    from `root`, the project directory Pulumi runs the program in."""
    chart = Path(str(inputs["chart"]))
    path = chart if chart.is_absolute() else root / chart
    if not (path.is_file() or (path / "Chart.yaml").is_file()):
        raise RenderError(
            f"release {inputs.get('name')!r}: no chart at {path} ({inputs['chart']} {inputs.get('version')}); "
            "the program installs vendored charts: scripts/vendor_charts.py <chart> <version>"
        )
    return path


def chart_label(inputs: Mapping[str, Any]) -> str:
    """`<chart> <version>` of a Release, the chart named as its archive or directory is."""
    name = Path(str(inputs["chart"])).name
    version = str(inputs.get("version") or "")
    name = name.removesuffix(".tgz").removesuffix(f"-{version}") if version else name.removesuffix(".tgz")
    return f"{name} {version}".strip()


def _chart_identity(path: Path) -> str:
    """What a render depends on: an archive's bytes (two checkouts of one chart render once), a directory's path."""
    if path.is_file():
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return str(path)


def drop_nulls(value: Any) -> Any:
    """`value` without None entries in maps and lists, as pulumi-kubernetes passes Release values to Helm."""
    if isinstance(value, Mapping):
        return {key: drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value if item is not None]
    return value


def render_release(
    inputs: Mapping[str, Any],
    *,
    api_versions: Collection[str] = PLATFORM_API_VERSIONS,
    cache: bool = True,
    root: Path = PROJECT_ROOT,
) -> list[dict[str, Any]]:
    """Every object Helm renders for one Release registration (`Registration.inputs`), None documents removed.

    `api_versions` are the custom resource APIs the cluster serves (built-in Kubernetes APIs are always there).
    `cache=False` runs Helm again even for inputs it rendered before. `root` is the project tree the program ran
    in (its relative chart paths are taken from there). The result is a fresh copy: callers may change it.
    """
    unsupported = sorted(key for key in _UNSUPPORTED_INPUTS if inputs.get(key))
    if unsupported:
        raise RenderError(f"release {inputs.get('name')!r}: inputs {unsupported} are not supported by the renderer")
    values = inputs.get("values") or {}
    chart = chart_path(inputs, root)
    request = {
        "chart": str(chart),
        "label": chart_label(inputs),
        "name": str(inputs["name"]),
        "namespace": str(inputs.get("namespace") or "default"),
        "values": values if inputs.get("allowNullValues") else drop_nulls(values),
        "api_versions": sorted(set(api_versions)),
        "include_crds": not inputs.get("skipCrds"),
        "hooks": not inputs.get("disableWebhooks"),
    }
    if not cache:
        return copy.deepcopy(_helm_template(request))
    identity = {**request, "chart": _chart_identity(chart)}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    with _cache_lock:
        pending = _cache.get(key)
        owner = pending is None
        if pending is None:
            pending = _cache[key] = Future()
    if owner:
        try:
            pending.set_result(_helm_template(request))
        except BaseException as error:
            pending.set_exception(error)
            with _cache_lock:
                _cache.pop(key, None)  # a failure is not cached: the next caller sees Helm's error afresh
    return copy.deepcopy(pending.result())


_cache: dict[str, Future[list[dict[str, Any]]]] = {}
_cache_lock = threading.Lock()


def _helm_template(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="cv-render-") as scratch:
        values_file = Path(scratch) / "values.json"
        values_file.write_text(json.dumps(request["values"]))
        command = [
            str(helm_binary()),
            "template",
            request["name"],
            request["chart"],
            "--namespace",
            request["namespace"],
            "--values",
            str(values_file),
            "--kube-version",
            KUBE_VERSION,
            # A Release installs no test hooks (only `helm test` runs them).
            "--skip-tests",
        ]
        for api_version in request["api_versions"]:
            command += ["--api-versions", api_version]
        if request["include_crds"]:
            command.append("--include-crds")
        if not request["hooks"]:
            command.append("--no-hooks")
        # HOME and Helm's own directories point into the scratch directory: no user repositories or plugins leak in.
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": scratch,
            "HELM_CACHE_HOME": f"{scratch}/cache",
            "HELM_CONFIG_HOME": f"{scratch}/config",
            "HELM_DATA_HOME": f"{scratch}/data",
        }
        result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    label = f"helm template {request['name']} ({request['label']})"
    if result.returncode != 0 or result.stderr.strip():
        raise RenderError(f"{label} failed:\n{_shorten(result.stderr)}")
    try:
        documents = [_parse_document(text) for text in _DOCUMENT_SEPARATOR.split(result.stdout)]
    except yaml.YAMLError as error:
        raise RenderError(f"{label} rendered invalid YAML: {error}") from None
    objects = [document for document in documents if document is not None]
    malformed = [document for document in objects if not isinstance(document, dict) or "kind" not in document]
    if malformed:
        raise RenderError(f"{label} rendered documents that are not Kubernetes objects: {str(malformed)[:300]}")
    return objects


# Helm starts every document with a `---` line of its own; inside a document such a line would be indented.
_DOCUMENT_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


@functools.lru_cache(maxsize=8192)
def _parse_document(text: str) -> Any:
    """One YAML document, parsed once per distinct text: the same CRDs and objects come back in every variant and
    in both passes of `render_releases`, and parsing (not Helm) is what takes the time. Callers must not change
    the result (`render_release` hands out copies)."""
    return yaml.load(text, Loader=_Loader)


def _shorten(message: str) -> str:
    """Helm's messages, each line cut short: its warnings dump whole value tables."""
    lines = [
        line if len(line) <= _MESSAGE_LINE_LIMIT else line[:_MESSAGE_LINE_LIMIT] + " …" for line in message.splitlines()
    ]
    return "\n".join(lines).strip() or "(no message)"


def served_api_versions(objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """`group/version` and `group/version/Kind` of every served version of the CRDs among `objects`."""
    served = set()
    for crd in objects:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec.get("versions") or []:
            if version.get("served", True):
                served.add(f"{spec['group']}/{version['name']}")
                served.add(f"{spec['group']}/{version['name']}/{spec['names']['kind']}")
    return served


def render_releases(releases: Sequence[Mapping[str, Any]], root: Path = PROJECT_ROOT) -> list[list[dict[str, Any]]]:
    """Render the releases of one program run together, in parallel, with the cluster's API versions.

    The custom resource APIs a chart sees are those whose CRDs these very releases install (the cluster of a
    stack without monitoring serves no `monitoring.coreos.com`). A first pass uses a guess (what the last call
    with the same charts found, PLATFORM_API_VERSIONS at first); where the rendered CRDs say otherwise, the
    releases are rendered again with the real set. CRDs do not depend on the API versions, so that is final.
    """
    charts = tuple(sorted({(str(inputs["chart"]), str(inputs["version"])) for inputs in releases}))
    guess = _served_by_charts.get(charts, frozenset(PLATFORM_API_VERSIONS))
    rendered = _render_all(releases, guess, root)
    served = frozenset().union(*(served_api_versions(objects) for objects in rendered))
    if served != guess:
        rendered = _render_all(releases, served, root)
    _served_by_charts[charts] = served
    return rendered


_served_by_charts: dict[tuple[tuple[str, str], ...], frozenset[str]] = {}


def _render_all(
    releases: Sequence[Mapping[str, Any]], api_versions: Collection[str], root: Path
) -> list[list[dict[str, Any]]]:
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(releases)))) as pool:
        return list(pool.map(lambda inputs: render_release(inputs, api_versions=api_versions, root=root), releases))


# Built-in kinds that are not namespaced (the custom ones say so in their CRD's `spec.scope`).
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


def integral(value: Any) -> Any:
    """Numbers as the API server receives them (Pulumi's wire format makes every number a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


def effective_namespace(obj: Mapping[str, Any], release_namespace: str, cluster_scoped: Collection[str] = ()) -> str:
    """The namespace the object lands in ("" for cluster-scoped kinds): its own, else the release's."""
    kind = obj.get("kind", "")
    if kind in CLUSTER_SCOPED_KINDS or kind in cluster_scoped:
        return ""
    return (obj.get("metadata") or {}).get("namespace") or release_namespace


def object_id(obj: Mapping[str, Any], release_namespace: str, cluster_scoped: Collection[str] = ()) -> str:
    """`group/Kind namespace/name`: what identifies one object in a cluster (the API version aside)."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else "core"
    namespace = effective_namespace(obj, release_namespace, cluster_scoped)
    name = (obj.get("metadata") or {}).get("name", "")
    return f"{group}/{obj.get('kind')} {namespace + '/' if namespace else ''}{name}"
