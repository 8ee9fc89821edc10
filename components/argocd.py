"""Argo CD behind Traefik: UI and CLI (gRPC) routes, a known admin password, and optional GitOps applications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.charts import ARGO_CD, deep_merge, load_values, pinned_release
from components.config import ArgoApplication, ArgoCdSettings
from components.passwords import configured_or_generated, stable_bcrypt_hash
from components.routes import Backend, EdgeRouting, RouteRule, ingress_route

NAMESPACE = "argocd"
RELEASE_NAME = "argocd"
PROJECT_NAME = "gitops"
APPLICATION_API_VERSION = "argoproj.io/v1alpha1"
IN_CLUSTER = "https://kubernetes.default.svc"
# With it, deleting an Application (removing it from the config) also deletes what it deployed.
CASCADE_FINALIZER = "resources-finalizer.argocd.argoproj.io"
GRPC_MATCH = "Header(`Content-Type`, `application/grpc`)"


@dataclass(frozen=True)
class ArgoCdArgs:
    """Inputs of `ArgoCd`."""

    settings: ArgoCdSettings
    host: str
    """Public host name, `argocd.<domain>`."""
    routing: EdgeRouting
    provider: k8s.Provider
    """The cluster's Kubernetes provider."""


def server_service(values: dict[str, Any]) -> Backend:
    """The argocd-server Service the chart renders for these values (name `<fullname>-<server.name>`)."""
    return Backend(
        f"{values['fullnameOverride']}-{values.get('server', {}).get('name', 'server')}",
        values["server"]["service"]["servicePortHttp"],
    )


def project_spec(applications: list[ArgoApplication]) -> dict[str, Any]:
    """An AppProject that allows exactly these applications' repositories and namespaces on this cluster.

    Cluster-scoped resources are denied except the applications' own Namespaces, which
    `CreateNamespace=true` needs (Argo CD checks it against the project like any other resource).
    """
    namespaces = sorted({application.namespace for application in applications})
    return {
        "description": "GitOps applications declared in the stack config (argocd.applications); managed by Pulumi.",
        "sourceRepos": sorted({application.repo_url for application in applications}),
        "destinations": [{"server": IN_CLUSTER, "namespace": namespace} for namespace in namespaces],
        "clusterResourceWhitelist": [{"group": "", "kind": "Namespace", "name": namespace} for namespace in namespaces],
    }


def application_spec(application: ArgoApplication) -> dict[str, Any]:
    """The spec of one Argo CD Application in the `gitops` project."""
    sync_policy: dict[str, Any] = {"syncOptions": ["CreateNamespace=true"]}
    if application.automated:
        sync_policy["automated"] = {"prune": True, "selfHeal": True}
    return {
        "project": PROJECT_NAME,
        "source": {
            "repoURL": application.repo_url,
            "path": application.path,
            "targetRevision": application.target_revision,
        },
        "destination": {"server": IN_CLUSTER, "namespace": application.namespace},
        "syncPolicy": sync_policy,
    }


class ArgoCd(pulumi.ComponentResource):
    """Argo CD (argo-cd chart) in namespace `argocd`, published at `https://argocd.<domain>` through Traefik.

    TLS ends at Traefik; the server runs insecure behind it. One route serves the UI and gRPC-Web, a
    higher-priority rule sends native gRPC (the `argocd` CLI) to the same Service over h2c. The admin
    password is the configured secret or a generated one; only its bcrypt hash reaches the cluster.
    Applications from the config go into one AppProject restricted to their repositories and namespaces.
    """

    namespace: k8s.core.v1.Namespace
    release: k8s.helm.v3.Release
    route: k8s.apiextensions.CustomResource
    project: k8s.apiextensions.CustomResource | None
    applications: list[k8s.apiextensions.CustomResource]
    url: str
    admin_user: str = "admin"
    """Argo CD's built-in local account, the one the password belongs to."""
    admin_password: pulumi.Output[str]
    """Secret."""

    def __init__(self, name: str, args: ArgoCdArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:argocd:ArgoCd", name, None, opts)
        provider = args.provider
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.url = f"https://{args.host}"

        self.admin_password = configured_or_generated("admin-password", args.settings.admin_password, parent=self)
        password_hash = stable_bcrypt_hash("admin-password", self.admin_password, parent=self)

        self.namespace = k8s.core.v1.Namespace(
            NAMESPACE, metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE), opts=child
        )
        values = deep_merge(
            load_values("argocd"),
            {
                "global": {"domain": args.host},
                "configs": {"secret": {"argocdServerAdminPassword": password_hash}},
            },
        )
        self.release = pinned_release(
            RELEASE_NAME,
            ARGO_CD,
            release_name=RELEASE_NAME,
            namespace=self.namespace.metadata.name,
            values=values,
            opts=child,
        )

        service = server_service(values)
        self.route = ingress_route(
            "argocd",
            namespace=self.namespace.metadata.name,
            host=args.host,
            rules=[
                RouteRule(service, priority=10),
                RouteRule(Backend(service.name, service.port, scheme="h2c"), extra_match=GRPC_MATCH, priority=11),
            ],
            routing=args.routing,
            parent=self,
            provider=provider,
        )

        # Argo CD's CRDs come with the release; the Applications need nothing else from the platform.
        after_release = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.release])
        self.project = None
        self.applications = []
        applications = args.settings.applications
        if applications:
            self.project = k8s.apiextensions.CustomResource(
                PROJECT_NAME,
                api_version=APPLICATION_API_VERSION,
                kind="AppProject",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=PROJECT_NAME, namespace=NAMESPACE),
                spec=project_spec(applications),
                opts=after_release,
            )
            # An Application also waits for its project, so a destroy removes the apps before the project.
            after_project = pulumi.ResourceOptions.merge(
                after_release, pulumi.ResourceOptions(depends_on=[self.project])
            )
            self.applications = [
                k8s.apiextensions.CustomResource(
                    f"app-{application.name}",
                    api_version=APPLICATION_API_VERSION,
                    kind="Application",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=application.name, namespace=NAMESPACE, finalizers=[CASCADE_FINALIZER]
                    ),
                    spec=application_spec(application),
                    opts=after_project,
                )
                for application in applications
            ]

        self.register_outputs({"url": self.url, "adminUser": self.admin_user, "adminPassword": self.admin_password})
