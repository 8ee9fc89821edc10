"""`argocd`: Argo CD and the GitOps applications it manages, and their rules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, SecretStr

from components.config.base import (
    InvalidValueError,
    KubernetesName,
    Problem,
    Section,
    render_value,
    without_credentials,
)

if TYPE_CHECKING:
    from components.config.settings import Settings

# Argo CD clones over HTTPS or SSH; plain http:// and local paths are refused (no integrity, not reachable).
_GIT_URL = re.compile(r"^(https://[^\s/]+/\S+|ssh://[^\s/]+/\S+|[\w.-]+@[\w.-]+:[^\s/]\S*)$")
# Namespaces of the cluster and of the platform itself: GitOps applications must not deploy into them.
PLATFORM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "argocd", "traefik", "monitoring", "vault")


def _git_url(value: str) -> str:
    # URLs with credentials pass here and are refused by `argocd_problems`; every message shows them hidden.
    if not _GIT_URL.match(value):
        raise InvalidValueError(
            "is not a Git repository URL",
            "https://host/org/repo.git, git@host:org/repo.git or ssh://git@host/org/repo.git",
        )
    return value


def _repo_path(value: str) -> str:
    if value.startswith("/") or ".." in value.split("/"):
        raise InvalidValueError("must be a path inside the repository", "a relative path without '..', e.g. apps/web")
    return value


class ArgoApplication(Section):
    """One Argo CD Application managed by the program."""

    name: KubernetesName = Field(description="Application name (unique).")
    repo_url: Annotated[str, AfterValidator(_git_url)] = Field(
        alias="repoURL", description="Git repository URL (https:// or SSH)."
    )
    path: Annotated[str, AfterValidator(_repo_path)] = Field(
        default=".", min_length=1, description="Path inside the repository."
    )
    target_revision: str = Field(default="HEAD", min_length=1, description="Branch, tag or commit.")
    namespace: KubernetesName = Field(description="Destination namespace (created on sync; not a platform namespace).")
    automated: bool = Field(default=True, description="Automated sync with prune and self-heal.")


def _bcrypt_password(value: SecretStr) -> SecretStr:
    # bcrypt ignores (bcrypt>=5: refuses) bytes beyond 72; 8 is the minimum of Argo CD's own password policy.
    if not 8 <= len(value.get_secret_value().encode()) <= 72:
        raise InvalidValueError("has the wrong length", "8 to 72 bytes")
    return value


class ArgoCdSettings(Section):
    """Argo CD and the GitOps applications it manages."""

    enabled: bool = Field(default=True, description="Deploy Argo CD.")
    admin_password: Annotated[SecretStr, AfterValidator(_bcrypt_password)] | None = Field(
        default=None, description="Admin password (--secret, 8-72 bytes); generated if unset."
    )
    applications: list[ArgoApplication] = Field(
        default_factory=list, description="GitOps applications, all in one AppProject limited to their namespaces."
    )


def argocd_problems(settings: Settings) -> list[Problem]:
    """GitOps applications: unique names, allowed destinations, and an Argo CD to run them."""
    argocd = settings.argocd
    problems: list[Problem] = []
    if argocd.applications and not argocd.enabled:
        problems.append(
            Problem(
                "argocd.applications",
                "needs Argo CD: applications are not deployed while argocd.enabled is false",
                f"{len(argocd.applications)} application(s)",
                "argocd.enabled: true, or no applications",
            )
        )
    seen: dict[str, int] = {}
    for index, application in enumerate(argocd.applications):
        if application.name in seen:
            problems.append(
                Problem(
                    f"argocd.applications[{index}].name",
                    f"is already used by argocd.applications[{seen[application.name]}]",
                    render_value(application.name),
                    "a name unique among the applications",
                )
            )
        seen.setdefault(application.name, index)
        if without_credentials(application.repo_url) != application.repo_url:
            problems.append(
                Problem(
                    f"argocd.applications[{index}].repoURL",
                    "must not carry credentials (stack files are plaintext); add them as an Argo CD repository secret",
                    render_value(application.repo_url),
                    "https://host/org/repo.git",
                )
            )
        if application.namespace in PLATFORM_NAMESPACES:
            problems.append(
                Problem(
                    f"argocd.applications[{index}].namespace",
                    "is a namespace of the platform; GitOps applications get their own",
                    render_value(application.namespace),
                    f"any namespace except {', '.join(PLATFORM_NAMESPACES)}",
                )
            )
    return problems
