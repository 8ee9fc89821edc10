"""Rendered manifests: every Helm release of every stack (and of the variants that change what is rendered),
rendered with the pinned Helm exactly as the program registers it, then checked as the objects the cluster gets.

- render succeeds: no template error, `fail`, values-schema error or Helm warning (tools/render.py);
- built-in objects validate strictly against Kubernetes 1.33 (kubernetes-validate's strict schemas), custom
  resources against their CRD schemas (unknown fields fail), and every custom resource's API is served by a
  CRD the stack installs;
- cross-object facts that break deploys: routes reach an existing Service port, middleware, entry point and
  resolver; ServiceMonitors select a Service with the named port; Prometheus selects every monitor and rule;
  pods reference Secrets, ConfigMaps, volumes and service accounts that exist; no object is created twice;
  every namespace exists;
- what the edge, Argo CD and monitoring promise, asserted on the rendered objects rather than on values.

Objects the program registers itself (routes, Secrets, alerts, ...) take part in every cross-object check.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from importlib import resources as package_resources
from pathlib import Path
from typing import Any

import bcrypt
import jsonschema
import pytest
import yaml
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource

from components.charts import TRAEFIK
from harness import (
    FAKE_PUBLIC_IP,
    PROJECT,
    STACKS,
    ProgramRun,
    crd_schema,
    custom_resource_body,
    require_reference,
    run_program,
    stack_config,
    strict_crd_schema,
    with_overrides,
)
from tools import helm as helm_tool
from tools.render import (
    KUBE_VERSION,
    RELEASE_TYPE,
    RenderError,
    effective_namespace,
    integral,
    object_id,
    render_release,
    render_releases,
    served_api_versions,
)

# Stacks, and variants of dev that together flip every setting that changes what is rendered (combined where
# they are independent, to keep the suite fast): the secret store's dev-mode server and simulation, an existing
# cluster, monitoring off, an Argo CD application and the HTTP challenge. The secret store's objects get the
# generic checks here; what it promises is tested with its component.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **{stack: (stack, {}) for stack in STACKS},
    "dev-mode-server+http-challenge+argocd-application": (
        "dev",
        {
            "vault.mode": "dev",
            "acme.challenge": "http",
            "argocd.applications": [
                {"name": "web", "repoURL": "https://github.com/example/web.git", "path": "deploy", "namespace": "web"}
            ],
        },
    ),
    "simulation+existing-cluster": (
        "dev",
        {
            "cluster": {"provider": "existing", "kubeconfigPath": "/home/ops/.kube/config"},
            "vault.sgx.simulation": True,
        },
    ),
    "monitoring-off": ("dev", {"monitoring.enabled": False}),
}
AKS_VARIANTS = [name for name, (_, overrides) in VARIANTS.items() if "cluster" not in overrides]
MONITORED_VARIANTS = [name for name, (_, overrides) in VARIANTS.items() if "monitoring.enabled" not in overrides]

# Namespaces every cluster has before anything is deployed.
CLUSTER_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LOAD_BALANCER_RESOURCE_GROUP = "service.beta.kubernetes.io/azure-load-balancer-resource-group"
# Secrets the charts create at install time with a hook Job rather than in the manifest: (namespace, Secret) → Job.
SECRETS_MADE_BY_HOOK_JOBS: dict[tuple[str, str], str] = {
    ("argocd", "argocd-redis"): "argocd-redis-secret-init",
    ("monitoring", "kube-prometheus-stack-admission"): "kube-prometheus-stack-admission-create",
}


# --- the rendered stack ------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """One object as it lands in the cluster: where it comes from, its namespace and its body."""

    origin: str
    """`release <name>`, `program <type> <name>` or `cluster` (made by Kubernetes or an operator)."""
    namespace: str
    body: dict[str, Any]
    cluster_scoped: frozenset[str] = frozenset()

    @property
    def kind(self) -> str:
        return str(self.body.get("kind"))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def labels(self) -> dict[str, str]:
        return (self.body.get("metadata") or {}).get("labels") or {}

    @property
    def id(self) -> str:
        return object_id(self.body, self.namespace, self.cluster_scoped)

    def __str__(self) -> str:
        return f"{self.id} ({self.origin})"


@dataclass
class RenderedStack:
    """A program run with every release rendered and every Kubernetes object the program registers."""

    variant: str
    config: dict[str, Any]
    run: ProgramRun
    releases: dict[str, list[Placed]]
    program: list[Placed]
    extra: list[Placed] = field(default_factory=list)
    """Objects the cluster itself provides that monitors point at (the API server's Service, ...)."""

    @property
    def objects(self) -> list[Placed]:
        return [placed for objects in self.releases.values() for placed in objects] + self.program

    def everything(self) -> list[Placed]:
        return self.objects + self.extra

    def of_kind(self, kind: str, namespace: str | None = None) -> list[Placed]:
        return [o for o in self.everything() if o.kind == kind and (namespace is None or o.namespace == namespace)]

    def find(self, kind: str, namespace: str, name: str) -> Placed | None:
        found = [o for o in self.of_kind(kind, namespace) if o.name == name]
        return found[0] if found else None

    def get(self, kind: str, namespace: str, name: str) -> Placed:
        found = self.find(kind, namespace, name)
        assert found is not None, f"{self.variant}: no {kind} {namespace}/{name} rendered or registered"
        return found


def program_objects(run: ProgramRun) -> list[tuple[str, dict[str, Any]]]:
    """Kubernetes objects the program registers itself (not releases, not providers): (origin, body)."""
    return [
        (f"program {registration.type} {registration.name}", integral(custom_resource_body(registration)))
        for registration in run.registrations
        if registration.custom and registration.type.startswith("kubernetes:") and registration.type != RELEASE_TYPE
    ]


def render_stack(variant: str, run: ProgramRun, config: dict[str, Any]) -> RenderedStack:
    registrations = run.of_type(RELEASE_TYPE)
    rendered = render_releases([registration.inputs for registration in registrations])
    crds = [obj for objects in rendered for obj in objects if obj.get("kind") == "CustomResourceDefinition"]
    cluster_scoped = frozenset(crd["spec"]["names"]["kind"] for crd in crds if crd["spec"].get("scope") == "Cluster")
    releases: dict[str, list[Placed]] = {}
    for registration, objects in zip(registrations, rendered, strict=True):
        namespace = str(registration.inputs.get("namespace") or "default")
        releases[str(registration.inputs["name"])] = [
            Placed(
                f"release {registration.inputs['name']}",
                effective_namespace(obj, namespace, cluster_scoped),
                obj,
                cluster_scoped,
            )
            for obj in objects
        ]
    program = [
        Placed(origin, effective_namespace(body, "default", cluster_scoped), body, cluster_scoped)
        for origin, body in program_objects(run)
    ]
    stack = RenderedStack(variant, config, run, releases, program)
    stack.extra = cluster_provided_services(stack)
    return stack


def cluster_provided_services(stack: RenderedStack) -> list[Placed]:
    """Services that exist without being in any manifest, which monitors may select.

    The API server's `default/kubernetes` Service, and the kubelet Service the Prometheus Operator maintains
    when its Deployment is told to (`--kubelet-service=<namespace>/<name>`).
    """
    services = [
        Placed(
            "cluster",
            "default",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"ports": [{"name": "https", "port": 443}]},
            },
        )
    ]
    for deployment in [o for o in stack.objects if o.kind == "Deployment"]:
        for container in pod_spec(deployment.body).get("containers", []):
            for argument in container.get("args") or []:
                if argument.startswith("--kubelet-service="):
                    namespace, name = argument.split("=", 1)[1].split("/")
                    labels = {
                        "app.kubernetes.io/managed-by": "prometheus-operator",
                        "app.kubernetes.io/name": "kubelet",
                        "k8s-app": "kubelet",
                    }
                    ports = [{"name": "https-metrics", "port": 10250}, {"name": "http-metrics", "port": 10255}]
                    ports.append({"name": "cadvisor", "port": 4194})
                    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels}}
                    services.append(
                        Placed(f"cluster (made by {deployment.name})", namespace, {**body, "spec": {"ports": ports}})
                    )
    return services


class _Stacks(dict[str, RenderedStack]):
    """Rendered variants, each made on first use (a test of one variant does not pay for the others)."""

    def __init__(self, stack_runs: Mapping[str, ProgramRun]) -> None:
        super().__init__()
        self._stack_runs = stack_runs

    def __missing__(self, variant: str) -> RenderedStack:
        stack, overrides = VARIANTS[variant]
        config, secret_keys = stack_config(stack)
        config = with_overrides(config, overrides)
        # The plain stacks reuse the runs the other stack tests share.
        run = run_program(config, stack=stack, secret_keys=secret_keys) if overrides else self._stack_runs[stack]
        self[variant] = render_stack(variant, run, config)
        return self[variant]


@pytest.fixture(scope="session")
def rendered(stack_runs: dict[str, ProgramRun]) -> dict[str, RenderedStack]:
    require_reference()
    return _Stacks(stack_runs)


def setting(stack: RenderedStack, key: str) -> Any:
    """A value of the variant's stack config by dotted key (`acme.email`), None when unset."""
    top, *rest = key.split(".")
    node: Any = stack.config.get(f"{PROJECT}:{top}")
    for part in rest:
        node = node.get(part) if isinstance(node, dict) else None
    return node


# --- shapes shared by the checks ---------------------------------------------------------------


def pod_spec(body: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod); {} otherwise."""
    kind = body.get("kind")
    spec = body.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}
    return {}


def containers(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(body)
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects `labels`; None selects nothing."""
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def namespace_labels(stack: RenderedStack, namespace: str) -> dict[str, str]:
    declared = stack.find("Namespace", "", namespace)
    return {"kubernetes.io/metadata.name": namespace, **(declared.labels if declared else {})}


def selected_namespaces(stack: RenderedStack, selector: Mapping[str, Any] | None, own: str) -> Callable[[str], bool]:
    """The Prometheus Operator's namespace selectors: absent means its own namespace, `{}` every namespace."""
    if selector is None:
        return lambda namespace: namespace == own
    return lambda namespace: matches(selector, namespace_labels(stack, namespace))


def traefik_arguments(stack: RenderedStack) -> list[str]:
    deployment = stack.get("Deployment", "traefik", "traefik")
    (traefik,) = [container for container in pod_spec(deployment.body)["containers"] if container["name"] == "traefik"]
    return list(traefik["args"])


def traefik_flag(arguments: Iterable[str], name: str) -> str | None:
    """The value of a Traefik flag (Traefik reads flag names case-insensitively); None when absent."""
    prefix = f"--{name.lower()}="
    found = [argument.split("=", 1)[1] for argument in arguments if argument.lower().startswith(prefix)]
    assert len(found) <= 1, f"--{name} given {len(found)} times"
    return found[0] if found else None


# --- render succeeds ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_release_renders(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    registered = sorted(str(r.inputs["name"]) for r in stack.run.of_type(RELEASE_TYPE))
    assert registered, "the program registers no Helm release"
    assert sorted(stack.releases) == registered
    for name, objects in stack.releases.items():
        assert [o for o in objects if o.kind in ("Deployment", "StatefulSet", "DaemonSet")], f"{name}: no workload"


def test_variants_change_what_is_rendered(rendered: dict[str, RenderedStack]) -> None:
    """Each variant renders something the dev stack does not: otherwise it tests nothing new."""
    dev = {json.dumps(o.body, sort_keys=True) for o in rendered["dev"].objects}
    for variant in VARIANTS:
        if variant != "dev":
            assert {json.dumps(o.body, sort_keys=True) for o in rendered[variant].objects} != dev, variant


def test_rendering_is_deterministic(rendered: dict[str, RenderedStack]) -> None:
    """The same inputs render the same objects: no fresh timestamp, random password or certificate per render
    (a render diff in a PR would show noise, and a `pulumi up` would replace them every time)."""
    stack = rendered["dev"]
    api_versions = served_api_versions(o.body for o in stack.objects)
    for registration in stack.run.of_type(RELEASE_TYPE):
        again = render_release(registration.inputs, api_versions=api_versions, cache=False)
        assert again == [o.body for o in stack.releases[str(registration.inputs["name"])]], registration.name


# --- schemas -----------------------------------------------------------------------------------


def is_builtin(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


_SCHEMAS = package_resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{KUBE_VERSION}-local-strict"


@functools.cache
def _kubernetes_definitions() -> Resource[Any]:
    return Resource.from_contents(json.loads((_SCHEMAS / "_definitions.json").read_text()))


@functools.cache
def kubernetes_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """kubernetes-validate's strict Kubernetes 1.33 schema of one kind, loaded once (its own `validate` re-reads
    the 1.4 MB definitions for every object)."""
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_file = _SCHEMAS / f"{kind.lower()}-{short}.json"
    assert schema_file.is_file(), f"{api_version} {kind} is not served by Kubernetes 1.33"
    schema = json.loads(schema_file.read_text())
    registry = Resource.from_contents(schema) @ (_kubernetes_definitions() @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _kubernetes_errors(body_json: str) -> tuple[str, ...]:
    body = json.loads(body_json)
    validator = kubernetes_validator(body["apiVersion"], body["kind"])
    return tuple(
        f"{'.'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in validator.iter_errors(body)
    )


@functools.cache
def _crd_validator(schema_json: str) -> Validator:
    schema = strict_crd_schema(json.loads(schema_json))
    return validator_for(schema)(schema)


def crd_schemas(stack: RenderedStack) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) → the openAPIV3Schema (as JSON) of every CRD version the stack installs."""
    schemas = {}
    for crd in stack.of_kind("CustomResourceDefinition"):
        spec = crd.body["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                schema = json.dumps(version["schema"]["openAPIV3Schema"], sort_keys=True)
                schemas[f"{spec['group']}/{version['name']}", spec["names"]["kind"]] = schema
    return schemas


@functools.cache
def _custom_resource_errors(schema_json: str, body_json: str) -> tuple[str, ...]:
    errors = _crd_validator(schema_json).iter_errors(json.loads(body_json))
    return tuple(f"{'.'.join(map(str, error.absolute_path))}: {error.message[:200]}" for error in errors)


@pytest.mark.parametrize("variant", VARIANTS)
def test_builtin_objects_are_valid_kubernetes_1_33(variant: str, rendered: dict[str, RenderedStack]) -> None:
    problems = []
    for placed in rendered[variant].objects:
        if is_builtin(placed.body["apiVersion"]):
            problems += [f"{placed}: {error}" for error in _kubernetes_errors(json.dumps(placed.body, sort_keys=True))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_custom_resources_match_their_crd(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """Every custom resource against the schema of the CRD the stack installs (not served: a failure below)."""
    stack = rendered[variant]
    schemas = crd_schemas(stack)
    problems = []
    for placed in stack.objects:
        schema = schemas.get((placed.body["apiVersion"], placed.kind))
        if schema is not None:
            errors = _custom_resource_errors(schema, json.dumps(placed.body, sort_keys=True))
            problems += [f"{placed}: {error}" for error in errors]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_custom_resource_api_is_installed_by_the_stack(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """A custom resource whose CRD no release of the stack installs fails to apply (monitoring off: no monitors)."""
    stack = rendered[variant]
    served = crd_schemas(stack)
    orphans = [
        str(o)
        for o in stack.objects
        if not is_builtin(o.body["apiVersion"]) and (o.body["apiVersion"], o.kind) not in served
    ]
    assert not orphans, orphans


def test_installed_crds_are_those_of_the_vendored_charts(rendered: dict[str, RenderedStack], reference: Path) -> None:
    """The CRDs the releases render are the ones in the vendored charts' own `crds/` files, which the program's
    tests validate its custom resources against (harness.crd_schema)."""
    schemas = crd_schemas(rendered["dev"])
    for needed in (
        ("traefik.io/v1alpha1", "IngressRoute"),
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
        ("argoproj.io/v1alpha1", "Application"),  # a CRD Argo CD ships as a template
    ):
        assert needed in schemas, needed
    for api_version, kind in schemas:
        assert json.loads(schemas[api_version, kind]) == crd_schema(reference, api_version, kind), (api_version, kind)


def test_schema_checks_catch_an_unknown_field(rendered: dict[str, RenderedStack]) -> None:
    """The checks above can fail: a typo in a Deployment and in a custom resource is caught."""
    stack = rendered["dev"]
    deployment = copy.deepcopy(stack.get("Deployment", "traefik", "traefik").body)
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy "] = "Always"
    assert _kubernetes_errors(json.dumps(deployment, sort_keys=True))
    route = copy.deepcopy(next(o for o in stack.program if o.kind == "IngressRoute").body)
    route["spec"]["routes"][0]["middleware"] = []
    schema = crd_schemas(stack)["traefik.io/v1alpha1", "IngressRoute"]
    assert _custom_resource_errors(schema, json.dumps(route, sort_keys=True))


# --- cross-object facts ------------------------------------------------------------------------


def duplicates(objects: Iterable[Placed]) -> dict[str, list[str]]:
    origins: dict[str, list[str]] = {}
    for placed in objects:
        origins.setdefault(placed.id, []).append(placed.origin)
    return {object_key: found for object_key, found in origins.items() if len(found) > 1}


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_object_is_created_twice(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """Two releases, or a release and the program, owning the same object: the second apply fails or fights."""
    assert duplicates(rendered[variant].objects) == {}


def test_a_duplicate_would_be_found(rendered: dict[str, RenderedStack]) -> None:
    stack = rendered["dev"]
    grafana_admin = next(o for o in stack.program if o.kind == "Secret" and o.name == "grafana-admin")
    twice = [*stack.objects, Placed("release kube-prometheus-stack", "monitoring", grafana_admin.body)]
    assert list(duplicates(twice)) == [grafana_admin.id]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_namespace_exists(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """Each object lands in a namespace the program, a release (`createNamespace`) or the cluster creates."""
    stack = rendered[variant]
    created = set(CLUSTER_NAMESPACES) | {o.name for o in stack.of_kind("Namespace")}
    created |= {str(r.inputs["namespace"]) for r in stack.run.of_type(RELEASE_TYPE) if r.inputs.get("createNamespace")}
    missing = [str(o) for o in stack.objects if o.namespace and o.namespace not in created]
    assert not missing, missing


def route_problems(stack: RenderedStack, route: Placed) -> Iterator[str]:
    """What makes one Traefik IngressRoute fail: a missing Service or port, middleware, entry point or resolver."""
    arguments = traefik_arguments(stack)
    for entry_point in route.body["spec"].get("entryPoints") or []:
        if traefik_flag(arguments, f"entryPoints.{entry_point}.address") is None:
            yield f"{route}: entry point {entry_point} is not defined in Traefik"
    resolver = (route.body["spec"].get("tls") or {}).get("certResolver")
    if resolver and not any(a.lower().startswith(f"--certificatesresolvers.{resolver.lower()}.") for a in arguments):
        yield f"{route}: certificate resolver {resolver} is not configured in Traefik"
    for rule in route.body["spec"]["routes"]:
        for middleware in rule.get("middlewares") or []:
            namespace = middleware.get("namespace", route.namespace)
            if stack.find("Middleware", namespace, middleware["name"]) is None:
                yield f"{route}: no Middleware {namespace}/{middleware['name']}"
        for backend in rule.get("services") or []:
            if backend.get("kind", "Service") == "TraefikService":
                if not backend["name"].endswith("@internal") and not stack.find(
                    "TraefikService", route.namespace, backend["name"]
                ):
                    yield f"{route}: no TraefikService {backend['name']}"
                continue
            namespace = backend.get("namespace", route.namespace)
            if namespace != route.namespace:
                yield f"{route}: backend {backend['name']} in another namespace (Traefik forbids cross-namespace)"
            yield from service_port_problems(stack, str(route), namespace, backend["name"], backend.get("port"))


def service_port_problems(stack: RenderedStack, user: str, namespace: str, name: str, port: Any) -> Iterator[str]:
    service = stack.find("Service", namespace, name)
    if service is None:
        yield f"{user}: no Service {namespace}/{name}"
        return
    ports = service.body["spec"].get("ports") or []
    if port is not None and not any(p.get("port") == port or p.get("name") == port for p in ports):
        known = [(p.get("name"), p["port"]) for p in ports]
        yield f"{user}: Service {namespace}/{name} has no port {port!r} (ports {known})"


@pytest.mark.parametrize("variant", VARIANTS)
def test_routes_reach_existing_services(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    routes = stack.of_kind("IngressRoute") + stack.of_kind("IngressRouteTCP")
    assert routes, "no IngressRoute"
    problems = [problem for route in routes for problem in route_problems(stack, route)]
    for ingress in stack.of_kind("Ingress"):
        for rule in ingress.body["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                service = path["backend"]["service"]
                port = service.get("port", {}).get("number") or service.get("port", {}).get("name")
                problems += service_port_problems(stack, str(ingress), ingress.namespace, service["name"], port)
    assert not problems, "\n".join(problems)


def test_route_check_finds_a_wrong_port(rendered: dict[str, RenderedStack]) -> None:
    stack = rendered["dev"]
    route = next(o for o in stack.program if o.kind == "IngressRoute" and o.name == "argocd")
    broken = copy.deepcopy(route.body)
    broken["spec"]["routes"][0]["services"][0]["port"] = 8443
    broken["spec"]["routes"][0]["middlewares"] = [{"name": "nowhere"}]
    problems = list(route_problems(stack, Placed(route.origin, route.namespace, broken)))
    assert len(problems) == 2, problems
    assert "no Middleware argocd/nowhere" in problems[0]
    assert "has no port 8443" in problems[1]


def monitor_problems(stack: RenderedStack, monitor: Placed) -> Iterator[str]:
    """A ServiceMonitor that selects no Service, or names a port none of its Services has, scrapes nothing."""
    spec = monitor.body["spec"]
    namespace_selector = spec.get("namespaceSelector") or {}
    if namespace_selector.get("any"):
        namespaces: Callable[[str], bool] = lambda _: True  # noqa: E731
    elif namespace_selector.get("matchNames"):
        namespaces = lambda namespace: namespace in namespace_selector["matchNames"]  # noqa: E731
    else:
        namespaces = lambda namespace: namespace == monitor.namespace  # noqa: E731
    services = [s for s in stack.of_kind("Service") if namespaces(s.namespace) and matches(spec["selector"], s.labels)]
    if not services:
        yield f"{monitor}: selects no Service"
        return
    for endpoint in spec.get("endpoints") or []:
        if "port" in endpoint:
            names = {port.get("name") for service in services for port in service.body["spec"].get("ports") or []}
            if endpoint["port"] not in names:
                known = sorted(map(str, names))
                yield f"{monitor}: no selected Service has a port named {endpoint['port']!r} ({known})"


@pytest.mark.parametrize("variant", MONITORED_VARIANTS)
def test_service_monitors_select_a_service_and_port(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    monitors = stack.of_kind("ServiceMonitor")
    assert [m for m in monitors if m.origin.startswith("program")], "the program's own ServiceMonitors are checked"
    problems = [problem for monitor in monitors for problem in monitor_problems(stack, monitor)]
    assert not problems, "\n".join(problems)


def test_monitor_check_finds_a_wrong_port_name(rendered: dict[str, RenderedStack]) -> None:
    stack = rendered["dev"]
    monitor = stack.get("ServiceMonitor", "traefik", "traefik")
    broken = copy.deepcopy(monitor.body)
    broken["spec"]["endpoints"][0]["port"] = "http-metrics"
    assert len(list(monitor_problems(stack, Placed(monitor.origin, monitor.namespace, broken)))) == 1
    broken["spec"]["selector"] = {"matchLabels": {"app": "nothing"}}
    assert [p.endswith("selects no Service") for p in monitor_problems(stack, Placed("x", "traefik", broken))] == [True]


@pytest.mark.parametrize("variant", MONITORED_VARIANTS)
def test_prometheus_selects_every_monitor_and_rule(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """Monitors and rules of other releases and of the program reach Prometheus, not only its own release's."""
    stack = rendered[variant]
    (prometheus,) = stack.of_kind("Prometheus")
    spec = prometheus.body["spec"]
    unselected = []
    for kind, selector_key in (
        ("ServiceMonitor", "serviceMonitor"),
        ("PodMonitor", "podMonitor"),
        ("Probe", "probe"),
        ("PrometheusRule", "rule"),
    ):
        in_namespace = selected_namespaces(stack, spec.get(f"{selector_key}NamespaceSelector"), prometheus.namespace)
        for item in stack.of_kind(kind):
            if not (in_namespace(item.namespace) and matches(spec.get(f"{selector_key}Selector"), item.labels)):
                unselected.append(str(item))
    assert not unselected, unselected
    assert [r for r in stack.of_kind("PrometheusRule") if r.origin.startswith("program")], "the project's alerts"


def pod_reference_problems(stack: RenderedStack, workload: Placed) -> Iterator[str]:
    """References of a pod template to objects that must exist when the pod starts."""
    namespace = workload.namespace
    spec = pod_spec(workload.body)

    def lookup(kind: str, name: str) -> Placed | None:
        found = stack.find(kind, namespace, name)
        if found is None and kind == "Secret" and (namespace, name) in SECRETS_MADE_BY_HOOK_JOBS:
            return stack.find("Job", namespace, SECRETS_MADE_BY_HOOK_JOBS[namespace, name])
        return found

    def check(kind: str, name: str, key: str | None = None, optional: bool | None = False) -> Iterator[str]:
        if optional:
            return
        found = lookup(kind, name)
        if found is None:
            yield f"{workload}: no {kind} {namespace}/{name}"
        elif key is not None and found.kind == kind:
            keys = {*(found.body.get("data") or {}), *(found.body.get("stringData") or {})}
            if key not in keys:
                yield f"{workload}: {kind} {namespace}/{name} has no key {key!r} ({sorted(keys)})"

    account = spec.get("serviceAccountName")
    if account and account != "default":
        yield from check("ServiceAccount", account)
    claim_templates = {
        t["metadata"]["name"] for t in (workload.body.get("spec") or {}).get("volumeClaimTemplates") or []
    }
    for volume in spec.get("volumes") or []:
        if "secret" in volume:
            yield from check("Secret", volume["secret"]["secretName"], optional=volume["secret"].get("optional"))
        if "configMap" in volume:
            yield from check("ConfigMap", volume["configMap"]["name"], optional=volume["configMap"].get("optional"))
        if "persistentVolumeClaim" in volume and volume["persistentVolumeClaim"]["claimName"] not in claim_templates:
            yield from check("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            for kind, key in (("Secret", "secret"), ("ConfigMap", "configMap")):
                if key in source:
                    yield from check(kind, source[key]["name"], optional=source[key].get("optional"))
    for container in containers(workload.body):
        for variable in container.get("env") or []:
            reference = variable.get("valueFrom") or {}
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if key in reference:
                    ref = reference[key]
                    yield from check(kind, ref["name"], ref["key"], optional=ref.get("optional"))
        for source in container.get("envFrom") or []:
            for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if key in source:
                    yield from check(kind, source[key]["name"], optional=source[key].get("optional"))
        mounts = {volume["name"] for volume in spec.get("volumes") or []} | claim_templates
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in mounts:
                yield f"{workload}: container {container['name']} mounts undeclared volume {mount['name']}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_reference_objects_that_exist(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """Secrets, ConfigMaps (and their keys), claims and service accounts a pod needs: a missing one leaves it
    stuck in ContainerCreating. Optional references are exempt; Secrets a chart's hook Job creates at install
    count when that Job is rendered."""
    stack = rendered[variant]
    workloads = [o for o in stack.objects if pod_spec(o.body)]
    problems = [problem for workload in workloads for problem in pod_reference_problems(stack, workload)]
    assert not problems, "\n".join(problems)


def test_pod_reference_check_finds_a_missing_key(rendered: dict[str, RenderedStack]) -> None:
    stack = rendered["dev"]
    grafana = copy.deepcopy(stack.get("Deployment", "monitoring", "kube-prometheus-stack-grafana").body)
    for container in grafana["spec"]["template"]["spec"]["containers"]:
        for variable in container.get("env") or []:
            if variable["name"] == "GF_SECURITY_ADMIN_PASSWORD":
                variable["valueFrom"]["secretKeyRef"]["key"] = "password"
    problems = list(pod_reference_problems(stack, Placed("release x", "monitoring", grafana)))
    assert problems == [
        f"{'apps/Deployment monitoring/kube-prometheus-stack-grafana'} (release x): Secret monitoring/grafana-admin "
        "has no key 'password' (['admin-password', 'admin-user'])"
    ]


# --- what the components promise, on the rendered objects --------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_traefik_resolver_challenge_and_redirect(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    arguments = traefik_arguments(stack)
    resolver = "certificatesresolvers.letsencrypt.acme"
    environment = setting(stack, "environment")
    assert traefik_flag(arguments, f"{resolver}.caServer") == (PRODUCTION if environment == "prod" else STAGING)
    assert traefik_flag(arguments, f"{resolver}.email") == setting(stack, "acme.email")
    if setting(stack, "acme.challenge") == "http":
        assert traefik_flag(arguments, f"{resolver}.tlsChallenge") is None
        assert traefik_flag(arguments, f"{resolver}.httpChallenge.entryPoint") == "web"
    else:
        assert traefik_flag(arguments, f"{resolver}.tlsChallenge") == "true"
        assert traefik_flag(arguments, f"{resolver}.httpChallenge.entryPoint") is None
    # Plain HTTP answers with a permanent redirect to the HTTPS port of the public Service.
    service = stack.get("Service", "traefik", "traefik").body
    https_port = next(port["port"] for port in service["spec"]["ports"] if port["name"] == "websecure")
    assert traefik_flag(arguments, "entryPoints.web.http.redirections.entryPoint.to") == f":{https_port}"
    assert traefik_flag(arguments, "entryPoints.web.http.redirections.entryPoint.scheme") == "https"
    assert traefik_flag(arguments, "entryPoints.web.http.redirections.entryPoint.permanent") == "true"


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_traefik_keeps_certificates_private_on_its_volume(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """Let's Encrypt state survives restarts (one replica, a claim), and acme.json is 0600 before Traefik starts."""
    stack = rendered[variant]
    deployment = stack.get("Deployment", "traefik", "traefik").body
    assert deployment["spec"]["replicas"] == 1  # Traefik's ACME supports one replica only
    storage = traefik_flag(traefik_arguments(stack), "certificatesresolvers.letsencrypt.acme.storage")
    assert storage is not None
    spec = pod_spec(deployment)
    (traefik,) = [container for container in spec["containers"] if container["name"] == "traefik"]
    (mount,) = [m for m in traefik["volumeMounts"] if storage.startswith(m["mountPath"].rstrip("/") + "/")]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    stack.get("PersistentVolumeClaim", "traefik", volume["persistentVolumeClaim"]["claimName"])
    chmods = [
        container
        for container in spec.get("initContainers") or []
        if "chmod" in " ".join(container.get("command", []) + container.get("args", []))
        and "600" in " ".join(container.get("command", []) + container.get("args", []))
        and any(m["name"] == mount["name"] for m in container.get("volumeMounts") or [])
    ]
    assert chmods, "no init container makes the ACME file private"


@pytest.mark.parametrize("variant", AKS_VARIANTS)
def test_traefik_service_holds_the_static_ip(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    service = stack.get("Service", "traefik", "traefik").body
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerIP"] == FAKE_PUBLIC_IP
    resource_group = stack.run.one("azure-native:resources:ResourceGroup").inputs["resourceGroupName"]
    assert service["metadata"]["annotations"][LOAD_BALANCER_RESOURCE_GROUP] == resource_group


def test_traefik_service_on_an_existing_cluster_takes_any_address(rendered: dict[str, RenderedStack]) -> None:
    service = rendered["simulation+existing-cluster"].get("Service", "traefik", "traefik").body
    assert service["spec"]["type"] == "LoadBalancer"
    assert "loadBalancerIP" not in service["spec"]
    assert LOAD_BALANCER_RESOURCE_GROUP not in (service["metadata"].get("annotations") or {})


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_argocd_server_runs_insecure_behind_traefik_at_its_url(
    variant: str, rendered: dict[str, RenderedStack]
) -> None:
    stack = rendered[variant]
    params = stack.get("ConfigMap", "argocd", "argocd-cmd-params-cm").body["data"]
    assert params["server.insecure"] == "true"
    server = stack.get("Deployment", "argocd", "argocd-server").body
    (variable,) = [v for c in containers(server) for v in c.get("env") or [] if v["name"] == "ARGOCD_SERVER_INSECURE"]
    assert variable["valueFrom"]["configMapKeyRef"] == {
        "name": "argocd-cmd-params-cm",
        "key": "server.insecure",
        "optional": True,
    }
    assert (
        stack.get("ConfigMap", "argocd", "argocd-cm").body["data"]["url"]
        == f"https://argocd.{setting(stack, 'domain')}"
    )
    assert not [o for o in stack.releases["argocd"] if o.kind == "Deployment" and "dex" in o.name], "Dex is disabled"


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_argocd_admin_password_is_the_exported_one(variant: str, rendered: dict[str, RenderedStack]) -> None:
    """The admin password the stack exports opens Argo CD: the rendered Secret holds its bcrypt hash."""
    stack = rendered[variant]
    data = stack.get("Secret", "argocd", "argocd-secret").body["data"]
    stored_hash = base64.b64decode(data["admin.password"])
    assert bcrypt.checkpw(stack.run.outputs["argocdAdminPassword"].encode(), stored_hash)
    # Argo CD takes a new admin password only with its mtime; that it is fixed, not "now", is
    # test_rendering_is_deterministic's business.
    assert base64.b64decode(data["admin.passwordMtime"])


@pytest.mark.parametrize("variant", MONITORED_VARIANTS)
def test_prometheus_keeps_the_configured_history(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    (prometheus,) = stack.of_kind("Prometheus")
    spec = prometheus.body["spec"]
    assert spec["retention"] == (setting(stack, "monitoring.prometheusRetention") or "15d")  # README default
    size = setting(stack, "monitoring.prometheusStorageSize") or "20Gi"
    assert spec["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == size
    assert spec["retentionSize"].endswith("MB")
    assert int(spec["retentionSize"][:-2]) < int(size[:-2]) * 1024


@pytest.mark.parametrize("variant", MONITORED_VARIANTS)
def test_grafana_uses_the_program_secret_and_dashboards(variant: str, rendered: dict[str, RenderedStack]) -> None:
    stack = rendered[variant]
    grafana = stack.get("Deployment", "monitoring", "kube-prometheus-stack-grafana")
    environment = {v["name"]: v for c in containers(grafana.body) for v in c.get("env") or []}
    for variable in ("GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"):
        reference = environment[variable]["valueFrom"]["secretKeyRef"]
        secret = stack.get("Secret", "monitoring", reference["name"])
        assert secret.origin.startswith("program"), f"{variable} must come from the program's Secret"
    user_key = environment["GF_SECURITY_ADMIN_USER"]["valueFrom"]["secretKeyRef"]["key"]
    assert secret.body["stringData"][user_key] == stack.run.outputs["grafanaAdminUser"]
    ini = stack.get("ConfigMap", "monitoring", "kube-prometheus-stack-grafana").body["data"]["grafana.ini"]
    assert f"root_url = https://grafana.{setting(stack, 'domain')}/" in ini.splitlines()
    # The dashboard sidecar picks up the project's dashboard ConfigMaps.
    (sidecar,) = [c for c in containers(grafana.body) if c["name"] == "grafana-sc-dashboard"]
    wanted = {v["name"]: v.get("value") for v in sidecar["env"]}
    dashboards = [o for o in stack.program if o.kind == "ConfigMap" and o.name.startswith("dashboard-")]
    assert dashboards
    for dashboard in dashboards:
        assert dashboard.labels.get(wanted["LABEL"]) == wanted["LABEL_VALUE"], dashboard
        assert wanted.get("NAMESPACE") in ("ALL", dashboard.namespace), dashboard


# --- the renderer itself -----------------------------------------------------------------------

MINI_CHART = {
    "Chart.yaml": "apiVersion: v2\nname: mini\nversion: 0.1.0\n",
    "values.yaml": "greeting: hello\nfailWith: ''\n",
    "crds/widget.yaml": (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\n"
        "spec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets}\n"
        "  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n"
    ),
    "templates/configmap.yaml": (
        "{{- if .Values.failWith }}{{ fail .Values.failWith }}{{ end }}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        'data:\n  greeting: {{ .Values.greeting | default "<deleted>" | quote }}\n'
        "  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"
        '  widgets: {{ .Capabilities.APIVersions.Has "example.com/v1" | quote }}\n'
    ),
    "templates/tests/test-pod.yaml": (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: mini-test\n  annotations: {helm.sh/hook: test}\n"
        "spec: {containers: [{name: t, image: busybox}]}\n"
    ),
}


def pack_chart(files: Mapping[str, str], archive: Path) -> Path:
    """A chart archive as `helm package` lays it out: every file under `<chart name>/`."""
    name = yaml.safe_load(files["Chart.yaml"])["name"]
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as packed:
        for path, text in sorted(files.items()):
            data = text.encode()
            member = tarfile.TarInfo(f"{name}/{path}")
            member.size = len(data)
            packed.addfile(member, io.BytesIO(data))
    return archive


@pytest.fixture
def mini_reference(tmp_path: Path) -> Path:
    """A project tree holding one tiny vendored chart, `charts/mini-0.1.0.tgz`."""
    pack_chart(MINI_CHART, tmp_path / "charts" / "mini-0.1.0.tgz")
    return tmp_path


def mini(values: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    return {
        "chart": "./charts/mini-0.1.0.tgz",
        "version": "0.1.0",
        "name": "demo",
        "namespace": "demo",
        "values": values,
        **inputs,
    }


def mini_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    (config_map,) = [o for o in objects if o["kind"] == "ConfigMap"]
    return config_map["data"]


def test_renderer_targets_kubernetes_1_33_and_installs_crds(mini_reference: Path) -> None:
    objects = render_release(mini({}), root=mini_reference)
    assert mini_data(objects)["kube"] == "v1.33.0"
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "CustomResourceDefinition"]  # no test hook
    assert [o["kind"] for o in render_release(mini({}, skipCrds=True), root=mini_reference)] == ["ConfigMap"]


def test_renderer_drops_nulls_like_pulumi_kubernetes(mini_reference: Path) -> None:
    """A null does not delete the chart's default (Helm's own meaning), because pulumi-kubernetes drops it first."""
    assert mini_data(render_release(mini({"greeting": None}), root=mini_reference))["greeting"] == "hello"
    with_nulls = mini({"greeting": None}, allowNullValues=True)
    assert mini_data(render_release(with_nulls, root=mini_reference))["greeting"] == "<deleted>"


def test_api_versions_come_from_the_crds_the_releases_install(mini_reference: Path) -> None:
    with_crd, without_crd = mini({}, name="with-crd"), mini({}, name="without-crd", skipCrds=True)
    assert mini_data(render_releases([with_crd, without_crd], root=mini_reference)[1])["widgets"] == "true"
    assert mini_data(render_releases([without_crd], root=mini_reference)[0])["widgets"] == "false"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"failWith": "the chart refuses this"}, "the chart refuses this"),
        # Only a warning (Helm exits 0 and renders "map[nested:table]"), still a failure here.
        ({"greeting": {"nested": "table"}}, "skipped value for mini.greeting: Not a table"),
    ],
)
def test_renderer_fails_on_errors_and_warnings(mini_reference: Path, values: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_release(mini(values), root=mini_reference)


def test_renderer_fails_on_a_values_schema_error(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    traefik = next(r for r in stack_runs["dev"].of_type(RELEASE_TYPE) if r.inputs["chart"] == TRAEFIK.path)
    inputs = {**traefik.inputs, "values": {**traefik.inputs["values"], "redirectTo": {"port": "websecure"}}}
    with pytest.raises(RenderError, match="additional properties 'redirectTo' not allowed"):
        render_release(inputs)


def test_renderer_fails_without_the_chart_archive(mini_reference: Path) -> None:
    missing = mini({}, chart="./charts/mini-9.9.9.tgz", version="9.9.9")
    with pytest.raises(RenderError, match=r"no chart at .*/charts/mini-9\.9\.9\.tgz .*scripts/vendor_charts\.py"):
        render_release(missing, root=mini_reference)


def test_relative_chart_paths_are_taken_from_the_given_tree(mini_reference: Path, tmp_path_factory: Any) -> None:
    """The same Release inputs render each tree's own archive (what the render diff relies on for its two sides)."""
    other = tmp_path_factory.mktemp("other")
    pack_chart({**MINI_CHART, "values.yaml": "greeting: bonjour\nfailWith: ''\n"}, other / "charts" / "mini-0.1.0.tgz")
    assert mini_data(render_release(mini({}), root=mini_reference))["greeting"] == "hello"
    assert mini_data(render_release(mini({}), root=other))["greeting"] == "bonjour"


def test_renderer_refuses_a_chart_from_a_repository(mini_reference: Path) -> None:
    """A Release that names a chart repository would install whatever it serves at `pulumi up`, not vendored bytes."""
    with pytest.raises(RenderError, match=r"\['repositoryOpts'\] are not supported"):
        render_release(mini({}, repositoryOpts={"repo": "https://charts.example"}), root=mini_reference)


# --- the pinned Helm ---------------------------------------------------------------------------


def test_helm_is_the_pinned_binary() -> None:
    binary = helm_tool.helm_binary()
    assert hashlib.sha256(binary.read_bytes()).hexdigest() == helm_tool.HELM_SHA256
    version = subprocess.run(
        [binary, "version", "--template", "{{.Version}}"], capture_output=True, text=True, check=True
    )
    assert version.stdout == helm_tool.HELM_VERSION
    requirements = (Path(helm_tool.__file__).resolve().parent.parent / "requirements-dev.txt").read_text()
    assert f"{helm_tool.HELM_WHEEL}=={helm_tool.HELM_WHEEL_VERSION}" in requirements.splitlines()


@pytest.fixture
def fresh_helm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """helm_binary() without its per-process memo and with an empty cache directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CV_HELM", raising=False)
    helm_tool.helm_binary.cache_clear()
    yield tmp_path
    helm_tool.helm_binary.cache_clear()


def test_helm_override_must_be_the_pinned_version(fresh_helm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = fresh_helm / "helm"
    other.write_text("#!/bin/sh\necho v3.19.0\n")
    other.chmod(0o755)
    monkeypatch.setenv("CV_HELM", str(other))
    with pytest.raises(helm_tool.HelmError, match=r"is Helm v3\.19\.0, v4\.1\.4 is pinned"):
        helm_tool.helm_binary()


def test_missing_helm_wheel_is_an_error_not_a_skip(fresh_helm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(helm_tool.metadata, "distribution", not_installed)
    with pytest.raises(helm_tool.HelmError, match=r"requirements-dev\.txt"):
        helm_tool.helm_binary()


def test_a_tampered_cached_helm_is_refused(fresh_helm: Path) -> None:
    cached = helm_tool.helm_binary()
    assert cached.is_relative_to(fresh_helm / "cache")
    cached.write_bytes(b"#!/bin/sh\n")
    helm_tool.helm_binary.cache_clear()
    with pytest.raises(helm_tool.HelmError, match="sha256"):
        helm_tool.helm_binary()
