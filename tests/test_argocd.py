"""The ArgoCd component: chart values, admin password, routes, GitOps applications and config rules."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import bcrypt
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.argocd import ArgoCd, ArgoCdArgs
from components.charts import ARGO_CD, TRAEFIK
from components.config import ArgoCdSettings, ConfigError, Settings, load_settings
from components.routes import EdgeRouting
from harness import (
    PROJECT,
    ProgramRun,
    Registration,
    chart_values_file,
    custom_resource_body,
    encode_config,
    fake_password,
    is_secret,
    run_function,
    run_program,
    stack_config,
    validate_chart_values,
    validate_custom_resource,
    with_overrides,
)
from tools import vendored

RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRoute"
PROJECT_KIND = "kubernetes:argoproj.io/v1alpha1:AppProject"
APPLICATION = "kubernetes:argoproj.io/v1alpha1:Application"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
COMPONENT = "confidential-vault:argocd:ArgoCd"
HOST = "argocd.dev.example.org"
CONFIGURED_PASSWORD = "configured-Argo-pw-42"

APPLICATIONS = [
    {"name": "guestbook", "repoURL": "https://github.com/argoproj/argocd-example-apps.git", "path": "guestbook",
     "namespace": "guestbook"},
    {"name": "helm-guestbook", "repoURL": "git@github.com:example/apps.git", "path": "helm-guestbook",
     "targetRevision": "v1.2.0", "namespace": "demo", "automated": False},
    {"name": "guestbook-two", "repoURL": "https://github.com/argoproj/argocd-example-apps.git",
     "namespace": "guestbook"},
]  # fmt: skip


def run_argocd(settings: dict[str, Any] | None = None) -> ProgramRun:
    """The component alone, on a stand-in provider, behind a stand-in for Traefik's CRDs."""

    def program() -> None:
        provider = k8s.Provider("cluster-provider", kubeconfig="fake")
        traefik_crds = k8s.core.v1.ConfigMap("traefik-crds", opts=pulumi.ResourceOptions(provider=provider))
        argocd = ArgoCd(
            "argocd",
            ArgoCdArgs(
                settings=ArgoCdSettings.model_validate(settings or {}),
                host=HOST,
                routing=EdgeRouting(cert_resolver="letsencrypt", entry_point="websecure", crds=traefik_crds),
                provider=provider,
            ),
        )
        pulumi.export("adminPassword", argocd.admin_password)
        pulumi.export("url", argocd.url)

    return run_function(program)


@pytest.fixture(scope="module")
def default_run() -> ProgramRun:
    return run_argocd()


@pytest.fixture(scope="module")
def apps_run() -> ProgramRun:
    return run_argocd({"applications": APPLICATIONS})


def chart_values(run: ProgramRun) -> dict[str, Any]:
    return run.one(RELEASE, "argocd").inputs["values"]


def secret_values(run: ProgramRun) -> dict[str, Any]:
    return run.one(RELEASE, "argocd").raw_inputs["values"]["configs"]["secret"]


# --- the release ------------------------------------------------------------------------------


def test_release_is_the_pinned_chart_in_namespace_argocd(default_run: ProgramRun) -> None:
    pinned = vendored.load_lock()["charts"]["argo-cd"]
    release = default_run.one(RELEASE)
    assert (release.inputs["chart"], release.inputs["version"]) == (f"./charts/{pinned['archive']}", pinned["version"])
    assert "repositoryOpts" not in release.inputs  # the vendored archive, never the chart repository
    assert release.inputs["namespace"] == "argocd"
    assert default_run.one(NAMESPACE).inputs["metadata"]["name"] == "argocd"
    # An explicit release name: Pulumi would otherwise add a random suffix to it.
    assert release.inputs["name"] == "argocd"


def test_values_conform_to_the_chart(default_run: ProgramRun, reference: Path) -> None:
    # configs.params is the chart's free-form argocd-cmd-params-cm ("add parameters here"), but its
    # values.yaml lists only `create` and `annotations`, so the one parameter we set is named here.
    validate_chart_values(
        reference, "argo-cd", "10.1.1", chart_values(default_run), allowed_extra=("configs.params.server.insecure",)
    )


def test_conformance_check_catches_a_misspelt_key(default_run: ProgramRun, reference: Path) -> None:
    values = json.loads(json.dumps(chart_values(default_run)))
    values["configs"]["secret"]["argocdServerAdminPasswordMTime"] = "x"
    with pytest.raises(AssertionError, match="argocdServerAdminPasswordMTime"):
        validate_chart_values(reference, "argo-cd", "10.1.1", values, allowed_extra=("configs.params.server.insecure",))


def test_server_is_insecure_behind_traefik(default_run: ProgramRun) -> None:
    assert chart_values(default_run)["configs"]["params"]["server.insecure"] is True


def test_domain_is_the_public_host(default_run: ProgramRun) -> None:
    assert chart_values(default_run)["global"]["domain"] == HOST
    assert default_run.outputs["url"] == f"https://{HOST}"


# --- the admin password -----------------------------------------------------------------------


def test_generated_admin_password_is_secret_and_hashed(default_run: ProgramRun) -> None:
    password = fake_password("admin-password")
    secret = secret_values(default_run)
    assert is_secret(secret["argocdServerAdminPassword"])
    password_hash = secret["argocdServerAdminPassword"]["value"]
    assert password_hash.startswith("$2a$10$")
    assert bcrypt.checkpw(password.encode(), password_hash.encode())
    assert is_secret(default_run.raw_outputs["adminPassword"])
    assert default_run.outputs["adminPassword"] == password
    exposed = default_run.plaintext()
    assert password not in exposed
    assert password_hash not in exposed
    assert fake_password("admin-password-salt") not in exposed


def test_configured_admin_password_is_hashed_and_nothing_generated_for_it() -> None:
    run = run_argocd({"adminPassword": CONFIGURED_PASSWORD})
    password_hash = secret_values(run)["argocdServerAdminPassword"]["value"]
    assert bcrypt.checkpw(CONFIGURED_PASSWORD.encode(), password_hash.encode())
    assert run.outputs["adminPassword"] == CONFIGURED_PASSWORD
    assert is_secret(run.raw_outputs["adminPassword"])
    assert [r.name for r in run.of_type(RANDOM_PASSWORD)] == ["admin-password-salt"]
    assert CONFIGURED_PASSWORD not in run.plaintext()


def test_hash_and_mtime_are_stable_across_runs(default_run: ProgramRun) -> None:
    again = secret_values(run_argocd())
    first = secret_values(default_run)
    assert again["argocdServerAdminPassword"] == first["argocdServerAdminPassword"]
    assert again["argocdServerAdminPasswordMtime"] == first["argocdServerAdminPasswordMtime"]
    # Fixed, not empty: the chart renders an empty mtime as "now", a new Secret on every deploy.
    datetime.fromisoformat(first["argocdServerAdminPasswordMtime"])


def test_another_password_gives_another_hash(default_run: ProgramRun) -> None:
    configured = secret_values(run_argocd({"adminPassword": CONFIGURED_PASSWORD}))
    assert configured["argocdServerAdminPassword"] != secret_values(default_run)["argocdServerAdminPassword"]


# --- the routes -------------------------------------------------------------------------------


def rendered_server_service(values: dict[str, Any], release_name: str, upstream: dict[str, Any]) -> tuple[str, Any]:
    """Name and HTTP port of the server Service as the chart's helpers render them (argo-cd.server.fullname)."""
    name = values.get("nameOverride") or upstream["nameOverride"] or "argo-cd"
    fullname = values.get("fullnameOverride") or (release_name if name in release_name else f"{release_name}-{name}")
    server = {**upstream["server"], **values.get("server", {})}
    service = {**upstream["server"]["service"], **server.get("service", {})}
    return f"{fullname[:63]}-{server['name']}", service["servicePortHttp"]


def test_ui_and_grpc_rules_reach_the_server_service(default_run: ProgramRun, reference: Path) -> None:
    release = default_run.one(RELEASE)
    upstream = chart_values_file(reference, "argo-cd", "10.1.1")
    service_name, port = rendered_server_service(release.inputs["values"], release.inputs["name"], upstream)

    route = default_run.one(ROUTE)
    spec = route.inputs["spec"]
    assert route.inputs["metadata"]["namespace"] == "argocd"
    assert spec["entryPoints"] == ["websecure"]
    assert spec["tls"] == {"certResolver": "letsencrypt"}
    rules = {rule["priority"]: rule for rule in spec["routes"]}
    assert set(rules) == {10, 11}
    ui, grpc = rules[10], rules[11]
    assert ui["match"] == f"Host(`{HOST}`)"
    assert ui["services"] == [{"name": service_name, "port": port, "kind": "Service"}]
    # The more specific gRPC rule must win over the catch-all UI rule: higher priority, h2c to the same port.
    assert grpc["match"] == f"Host(`{HOST}`) && Header(`Content-Type`, `application/grpc`)"
    assert grpc["services"] == [{"name": service_name, "port": port, "kind": "Service", "scheme": "h2c"}]


def test_route_is_conformant(default_run: ProgramRun, reference: Path) -> None:
    validate_custom_resource(reference, custom_resource_body(default_run.one(ROUTE)))


# --- GitOps applications ----------------------------------------------------------------------


def test_no_applications_no_project(default_run: ProgramRun) -> None:
    assert not default_run.of_type(APPLICATION)
    assert not default_run.of_type(PROJECT_KIND)


def test_project_and_applications_are_conformant(apps_run: ProgramRun, reference: Path) -> None:
    resources = [apps_run.one(PROJECT_KIND), *apps_run.of_type(APPLICATION)]
    assert len(resources) == 1 + len(APPLICATIONS)
    for resource in resources:
        validate_custom_resource(reference, custom_resource_body(resource))


def test_project_limits_the_applications_to_their_repos_and_namespaces(apps_run: ProgramRun) -> None:
    project = apps_run.one(PROJECT_KIND).inputs
    spec = project["spec"]
    assert project["metadata"]["namespace"] == "argocd"
    assert sorted(spec["sourceRepos"]) == sorted({app["repoURL"] for app in APPLICATIONS})
    namespaces = {app["namespace"] for app in APPLICATIONS}
    assert sorted(d["namespace"] for d in spec["destinations"]) == sorted(namespaces)
    assert {d["server"] for d in spec["destinations"]} == {"https://kubernetes.default.svc"}
    # Cluster-scoped: only the applications' own Namespaces (CreateNamespace=true needs them), nothing else.
    assert sorted(spec["clusterResourceWhitelist"], key=lambda item: item["name"]) == [
        {"group": "", "kind": "Namespace", "name": namespace} for namespace in sorted(namespaces)
    ]
    for application in apps_run.of_type(APPLICATION):
        assert application.inputs["spec"]["project"] == project["metadata"]["name"]


def test_each_application_follows_its_config(apps_run: ProgramRun) -> None:
    registered = {r.inputs["metadata"]["name"]: r.inputs for r in apps_run.of_type(APPLICATION)}
    assert set(registered) == {app["name"] for app in APPLICATIONS}
    for app in APPLICATIONS:
        body = registered[app["name"]]
        spec = body["spec"]
        assert body["metadata"]["namespace"] == "argocd"  # where Argo CD watches Applications
        assert spec["source"] == {
            "repoURL": app["repoURL"],
            "path": app.get("path", "."),
            "targetRevision": app.get("targetRevision", "HEAD"),
        }
        assert spec["destination"] == {"server": "https://kubernetes.default.svc", "namespace": app["namespace"]}
        assert "CreateNamespace=true" in spec["syncPolicy"]["syncOptions"]
        if app.get("automated", True):
            assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        else:
            assert "automated" not in spec["syncPolicy"]


# --- dependency shape -------------------------------------------------------------------------


def dependency_urns(run: ProgramRun, registration: Registration) -> set[str]:
    urns = set(registration.dependencies)
    for property_urns in registration.property_dependencies.values():
        urns.update(property_urns)
    return urns


def closure(run: ProgramRun, registration: Registration) -> set[str]:
    """Everything a registration waits for, directly or through its dependencies."""
    seen: set[str] = set()
    pending = [registration]
    while pending:
        for urn in dependency_urns(run, pending.pop()) - seen:
            seen.add(urn)
            pending.append(run.by_urn(urn))
    return seen


def test_release_needs_the_cluster_provider_only(apps_run: ProgramRun) -> None:
    provider = apps_run.one("pulumi:providers:kubernetes", "cluster-provider")
    release = apps_run.one(RELEASE)
    assert release.provider.startswith(provider.urn)
    assert release.parent == apps_run.one(COMPONENT).urn
    waits_for = {apps_run.by_urn(urn).type for urn in closure(apps_run, release)}
    # Its own namespace and the password inputs of the hash; not Traefik, not its route, not the applications.
    assert waits_for == {NAMESPACE, RANDOM_PASSWORD}
    assert apps_run.one(NAMESPACE).provider.startswith(provider.urn)


def test_route_waits_for_traefik_crds_not_for_argo_cd(apps_run: ProgramRun) -> None:
    route = apps_run.one(ROUTE)
    traefik_crds = apps_run.one("kubernetes:core/v1:ConfigMap", "traefik-crds")
    assert apps_run.depends_on(route, traefik_crds)
    assert apps_run.one(RELEASE).urn not in closure(apps_run, route)


def test_applications_wait_for_the_release_and_their_project_only(apps_run: ProgramRun) -> None:
    release = apps_run.one(RELEASE)
    project = apps_run.one(PROJECT_KIND)
    assert dependency_urns(apps_run, project) == {release.urn}
    for application in apps_run.of_type(APPLICATION):
        assert dependency_urns(apps_run, application) == {release.urn, project.urn}
        assert application.provider == release.provider
    assert apps_run.one(ROUTE).urn not in closure(apps_run, project)


# --- config rules -----------------------------------------------------------------------------

BASE_CONFIG: dict[str, Any] = {
    f"{PROJECT}:environment": "dev",
    f"{PROJECT}:domain": "dev.example.org",
    f"{PROJECT}:owner": "platform-team",
    f"{PROJECT}:acme": {"email": "ops@example.org"},
    f"{PROJECT}:vault": {"image": {"repository": "registry.example.org/ego-vault", "tag": "1.0"}},
}


def load_argocd(argocd: dict[str, Any]) -> Settings:
    config = {**BASE_CONFIG, f"{PROJECT}:argocd": argocd}
    return load_settings(encode_config(config), [f"{PROJECT}:argocd"] if "adminPassword" in argocd else [])


def argocd_problems(argocd: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_argocd(argocd)
    return [str(problem) for problem in caught.value.problems]


def app(**fields: Any) -> dict[str, Any]:
    return {"name": "web", "repoURL": "https://github.com/example/web.git", "namespace": "web", **fields}


def test_valid_applications_are_accepted() -> None:
    settings = load_argocd({"applications": [app(), app(name="ssh", repoURL="ssh://git@example.org/web.git")]})
    assert [a.repo_url for a in settings.argocd.applications][1] == "ssh://git@example.org/web.git"


@pytest.mark.parametrize(
    ("argocd", "expected"),
    [
        (
            {"applications": [app(), app(namespace="other")]},
            "confidential-vault:argocd.applications[1].name: is already used by argocd.applications[0] "
            "(got 'web'; allowed: a name unique among the applications)",
        ),
        (
            {"applications": [app(name="Web_App")]},
            "confidential-vault:argocd.applications[0].name: is not a valid Kubernetes name (got 'Web_App'; "
            "allowed: lower-case a-z, 0-9 and '-', at most 63 characters)",
        ),
        (
            {"applications": [app(repoURL="github.com/example/web")]},
            "confidential-vault:argocd.applications[0].repoURL: is not a Git repository URL "
            "(got 'github.com/example/web'; allowed: https://host/org/repo.git, git@host:org/repo.git or "
            "ssh://git@host/org/repo.git)",
        ),
        (
            {"applications": [app(repoURL="http://example.org/web.git")]},
            "confidential-vault:argocd.applications[0].repoURL: is not a Git repository URL",
        ),
        (
            {"applications": [app(namespace="vault")]},
            "confidential-vault:argocd.applications[0].namespace: is a namespace of the platform; GitOps "
            "applications get their own (got 'vault'; allowed: any namespace except kube-system, kube-public, "
            "kube-node-lease, argocd, traefik, monitoring, vault)",
        ),
        (
            {"applications": [app(path="../other")]},
            "confidential-vault:argocd.applications[0].path: must be a path inside the repository",
        ),
        (
            {"enabled": False, "applications": [app()]},
            "confidential-vault:argocd.applications: needs Argo CD: applications are not deployed while "
            "argocd.enabled is false",
        ),
        (
            {"adminPassword": "short"},
            "confidential-vault:argocd.adminPassword: has the wrong length (got [secret]; allowed: 8 to 72 bytes)",
        ),
    ],
)
def test_config_rule(argocd: dict[str, Any], expected: str) -> None:
    found = argocd_problems(argocd)
    assert any(problem.startswith(expected) for problem in found), found


@pytest.mark.parametrize("namespace", ["kube-system", "argocd", "traefik", "monitoring", "vault"])
def test_platform_namespaces_are_refused(namespace: str) -> None:
    found = argocd_problems({"applications": [app(namespace=namespace)]})
    assert len(found) == 1
    assert found[0].startswith(
        f"confidential-vault:argocd.applications[0].namespace: is a namespace of the platform; "
        f"GitOps applications get their own (got '{namespace}';"
    )


def test_credentials_in_a_repo_url_are_refused_without_echoing_them() -> None:
    found = argocd_problems({"applications": [app(repoURL="https://ci:s3cr3t-token@github.com/example/web.git")]})
    assert found == [
        "confidential-vault:argocd.applications[0].repoURL: must not carry credentials (stack files are plaintext); "
        "add them as an Argo CD repository secret (got 'https://[hidden]@github.com/example/web.git'; "
        "allowed: https://host/org/repo.git)"
    ]


def test_plaintext_admin_password_is_refused() -> None:
    config = {**BASE_CONFIG, f"{PROJECT}:argocd": {"adminPassword": CONFIGURED_PASSWORD}}
    with pytest.raises(ConfigError) as caught:
        load_settings(encode_config(config), [])
    assert [problem.path for problem in caught.value.problems] == ["argocd.adminPassword"]
    assert CONFIGURED_PASSWORD not in str(caught.value)


def test_values_file_documents_every_key() -> None:
    """vault-helm style: every key in values/argocd.yaml carries a comment saying what and why."""
    lines = (Path(__file__).resolve().parent.parent / "values" / "argocd.yaml").read_text().splitlines()
    keys = [index for index, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")]
    leaves = [index for index in keys if not lines[index].rstrip().endswith(":")]
    for index in leaves:
        assert lines[index - 1].lstrip().startswith("#"), f"undocumented value: {lines[index].strip()}"
    assert yaml.safe_load("\n".join(lines))


# --- in the real program ----------------------------------------------------------------------


def test_program_publishes_argo_cd_at_its_stack_host(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    domain = stack_config("dev")[0][f"{PROJECT}:domain"]
    assert chart_values(run)["global"]["domain"] == f"argocd.{domain}"
    assert run.outputs["argocdUrl"] == f"https://argocd.{domain}"
    assert run.outputs["argocdAdminUser"] == "admin"
    assert is_secret(run.raw_outputs["argocdAdminPassword"])
    assert run.outputs["argocdAdminPassword"] == fake_password("admin-password")


def test_program_release_waits_for_no_other_release(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    argocd = run.one(COMPONENT)
    release = run.one(RELEASE, "argocd")
    assert release.parent == argocd.urn
    cluster_provider = run.one("pulumi:providers:kubernetes")
    assert release.provider.startswith(cluster_provider.urn)
    assert {run.by_urn(urn).parent for urn in closure(run, release)} == {argocd.urn}
    # The route needs Traefik's CRDs (the Traefik release); the Argo CD release does not.
    traefik = next(r for r in run.of_type(RELEASE) if r.parent != argocd.urn and r.inputs["chart"] == TRAEFIK.path)
    assert run.depends_on(run.one(ROUTE, "argocd"), traefik)


def test_program_applications_from_stack_config(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"argocd.applications": APPLICATIONS[:1]}))
    application = run.one(APPLICATION)
    argocd_release = run.one(RELEASE, "argocd")
    assert application.inputs["spec"]["source"]["repoURL"] == APPLICATIONS[0]["repoURL"]
    assert run.depends_on(application, argocd_release)


def test_program_without_argo_cd(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"argocd.enabled": False}))
    assert COMPONENT not in run.types()
    assert not [r for r in run.of_type(RELEASE) if r.inputs["chart"] == ARGO_CD.path]
    assert not {"argocdUrl", "argocdAdminPassword"} & set(run.outputs)
