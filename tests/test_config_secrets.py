"""A value that came from a secret never appears in a config problem, whatever the problem; nor do URL credentials.

Pulumi marks secrecy per top-level key: `pulumi config set --secret --path confidential-vault:edge.dashboardPassword`
makes all of `confidential-vault:edge` secret, and so does `--secret confidential-vault:edge <value>` without
`--path`. Everything under such a key shows as `[secret]`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from test_config import VALID, load, problems, refusal

from components.config import ConfigError, load_settings
from harness import PROJECT, encode_config, run_failing, with_overrides

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user: {token: kube-token-Qx81}\n"


def test_a_whole_section_set_as_a_secret_string_is_not_echoed() -> None:
    """`pulumi config set --secret confidential-vault:cluster < kubeconfig`: a string where an object belongs."""
    found = problems({"cluster": KUBECONFIG}, secret_keys=("cluster",))
    assert found == ["confidential-vault:cluster: is not an object (got [secret]; allowed: a YAML mapping of its keys)"]
    found = problems({"edge": "hunter2-hunter2"}, secret_keys=("edge",))
    assert found == ["confidential-vault:edge: is not an object (got [secret]; allowed: a YAML mapping of its keys)"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # type error deep inside
        (
            {
                "argocd.applications": [
                    {"name": "web", "repoURL": "https://h/o/r.git", "namespace": "web", "automated": "s3cr3t-a"}
                ]
            },
            "confidential-vault:argocd.applications[0].automated: is not a boolean (got [secret]; allowed: true or "
            "false)",
        ),
        # unknown key
        (
            {"edge.dashbordPassword": "s3cr3t-b"},
            "confidential-vault:edge.dashbordPassword: unknown key (allowed: dashboardPassword, dashboardUser)",
        ),
        # literal error
        (
            {"cluster.provider": "s3cr3t-c"},
            "confidential-vault:cluster.provider: is not a known value (got [secret]; allowed: aks or existing)",
        ),
        # range error
        (
            {"cluster.sgxPool.count": -4321},
            "confidential-vault:cluster.sgxPool.count: is out of range (got [secret]; allowed: 0 to 1000)",
        ),
        # pattern error
        (
            {"cluster.location": "s3cr3t-d"},
            "confidential-vault:cluster.location: is not an Azure region name (lower-case, no spaces) (got [secret]; "
            "allowed: e.g. westeurope, swedencentral (`az account list-locations --query [].name`))",
        ),
        # a map whose entries the message does not name
        (
            {"cluster.tags": {"s3cr3t-e": "x" * 300}},
            "confidential-vault:cluster.tags: has a tag value longer than Azure accepts (got [secret]; allowed: at "
            "most 256 characters)",
        ),
        # a cross-key rule inside the section
        (
            {"cluster.sgxPool.count": 900, "cluster.sgxPool.minCount": 987, "cluster.sgxPool.maxCount": 876},
            "confidential-vault:cluster.sgxPool.minCount: is greater than maxCount (got [secret]; allowed: 0 to "
            "[secret])",
        ),
        # a setting that does not apply
        (
            {"monitoring": {"enabled": False, "storageClass": "s3cr3t-f"}},
            "confidential-vault:monitoring.storageClass: only applies when monitoring is enabled (got [secret]; "
            "allowed: unset with monitoring.enabled false)",
        ),
    ],
)
def test_any_value_under_a_secret_key_is_hidden_whatever_the_error(overrides: dict[str, Any], expected: str) -> None:
    secret_key = next(iter(overrides)).split(".")[0]
    found = problems(overrides, secret_keys=(secret_key,))
    assert found == [expected]
    for value in ("s3cr3t", "4321", "987", "876", "xxxxxxxx"):
        assert value not in expected


def test_values_of_a_secret_key_are_hidden_in_other_keys_problems() -> None:
    """A rule that shows another key's value in its message shows `[secret]` when that key is secret."""
    found = problems(
        {"domain": "internal-s3cr3t.example.org", "dns": {"zoneName": "other.org", "resourceGroupName": "dns"}},
        secret_keys=("domain",),
    )
    assert found == [
        "confidential-vault:dns.zoneName: does not contain the domain [secret] (got 'other.org'; allowed: [secret] "
        "or a parent zone of it)"
    ]
    found = problems({"cluster.sgxPool.vmSize": "Standard_DC1s_v3", "vault.epc": "6Gi"}, secret_keys=("cluster",))
    assert found == [
        "confidential-vault:vault.epc: exceeds the EPC of one [secret] node (got '6Gi'; allowed: at most [secret]Mi)"
    ]


def test_a_dotted_key_set_as_a_secret_is_not_echoed() -> None:
    """`pulumi config set --secret confidential-vault:edge.dashboardPassword X` (no --path) makes a flat key."""
    raw = {**encode_config(VALID), f"{PROJECT}:edge.dashboardPassword": "s3cr3t-dotted"}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw, [f"{PROJECT}:edge.dashboardPassword"])
    assert [str(problem) for problem in caught.value.problems] == [
        "confidential-vault:edge.dashboardPassword: is a top-level key with dots in its name, set without --path; "
        "nested keys need --path (got [secret]; allowed: `pulumi config rm confidential-vault:edge.dashboardPassword`, "
        "then `pulumi config set --path confidential-vault:edge.dashboardPassword <value>`)"
    ]


def test_secret_set_with_secret_flag_is_accepted_and_not_in_repr() -> None:
    settings = load({"edge.dashboardPassword": "hunter2-secret"}, secret_keys=("edge",))
    assert settings.edge.dashboard_password is not None
    assert settings.edge.dashboard_password.get_secret_value() == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings)


def test_plaintext_secret_is_refused_and_never_echoed() -> None:
    assert problems({"edge.dashboardPassword": "hunter2-plain"}) == [
        "confidential-vault:edge.dashboardPassword: is a secret but stored in plaintext; set it with "
        "`pulumi config set --secret --path confidential-vault:edge.dashboardPassword` (got [secret])"
    ]


def test_plaintext_secret_is_reported_beside_a_typo_and_a_bad_value() -> None:
    """The section is broken twice over; the plaintext password is still named (and still not shown)."""
    error = refusal(
        {
            "edge.dashbordUser": "ops",
            "edge.dashboardPassword": "hunter2-plain",
            "argocd.adminPassword": "short",
        }
    )
    assert [str(problem) for problem in error.problems] == [
        "confidential-vault:edge.dashbordUser: unknown key (allowed: dashboardPassword, dashboardUser)",
        "confidential-vault:edge.dashboardPassword: is a secret but stored in plaintext; set it with "
        "`pulumi config set --secret --path confidential-vault:edge.dashboardPassword` (got [secret])",
        "confidential-vault:argocd.adminPassword: has the wrong length (got [secret]; allowed: 8 to 72 bytes)",
        "confidential-vault:argocd.adminPassword: is a secret but stored in plaintext; set it with "
        "`pulumi config set --secret --path confidential-vault:argocd.adminPassword` (got [secret])",
    ]
    assert str(error).startswith("invalid stack configuration (4 problem(s)):")
    assert "hunter2" not in str(error)
    assert "short" not in str(error)


def test_invalid_value_of_a_secret_field_is_masked() -> None:
    found = problems({"argocd.adminPassword": 12345678}, secret_keys=("argocd",))
    assert found == ["confidential-vault:argocd.adminPassword: is not a string (got [secret]; allowed: a quoted value)"]
    provider = {"vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net"}
    found = problems({"cluster": {"provider": "existing", "kubeconfig": ""}, **provider}, secret_keys=("cluster",))
    assert found == ["confidential-vault:cluster.kubeconfig: is empty (got [secret]; allowed: at least 1 character)"]


def test_inapplicable_secret_is_reported_without_its_value() -> None:
    found = problems({"cluster.kubeconfig": "kubeconfig-secret-text"}, secret_keys=("cluster",))
    assert found == [
        "confidential-vault:cluster.kubeconfig: only applies to provider existing (got [secret]; "
        "allowed: unset with provider aks)"
    ]
    found = problems(
        {"monitoring": {"enabled": False, "grafanaAdminPassword": "grafana-secret-text"}}, secret_keys=("monitoring",)
    )
    assert found == [
        "confidential-vault:monitoring.grafanaAdminPassword: only applies when monitoring is enabled (got [secret]; "
        "allowed: unset with monitoring.enabled false)"
    ]


def application(repo_url: str) -> dict[str, Any]:
    return {"argocd.applications": [{"name": "web", "repoURL": repo_url, "namespace": "web"}]}


@pytest.mark.parametrize(
    ("repo_url", "shown"),
    [
        ("http://ci:tok-s3cr3t@github.com/example/web.git", "http://[hidden]@github.com/example/web.git"),
        ("http://tok-s3cr3t@github.com/example/web.git", "http://[hidden]@github.com/example/web.git"),
        ("ftp://ci:tok-s3cr3t@example.org/web.git", "ftp://[hidden]@example.org/web.git"),
        ("ci:tok-s3cr3t@github.com:example/web.git", "[hidden]@github.com:example/web.git"),
        ("http://ci:p@ss/w0rd-s3cr3t@github.com/web.git", "http://[hidden]@github.com/web.git"),
    ],
)
def test_credentials_in_a_url_refused_for_another_reason_are_hidden(repo_url: str, shown: str) -> None:
    assert problems(application(repo_url)) == [
        f"confidential-vault:argocd.applications[0].repoURL: is not a Git repository URL (got '{shown}'; allowed: "
        "https://host/org/repo.git, git@host:org/repo.git or ssh://git@host/org/repo.git)"
    ]


@pytest.mark.parametrize(
    ("repo_url", "shown"),
    [
        ("https://ci:tok-s3cr3t@github.com/example/web.git", "https://[hidden]@github.com/example/web.git"),
        ("https://tok-s3cr3t@github.com/example/web.git", "https://[hidden]@github.com/example/web.git"),
        ("ssh://git:tok-s3cr3t@github.com/example/web.git", "ssh://[hidden]@github.com/example/web.git"),
        ("https://ci:p@ss/w0rd-s3cr3t@github.com/web.git", "https://[hidden]@github.com/web.git"),
    ],
)
def test_credentials_in_an_accepted_url_are_refused_and_hidden(repo_url: str, shown: str) -> None:
    assert problems(application(repo_url)) == [
        "confidential-vault:argocd.applications[0].repoURL: must not carry credentials (stack files are plaintext); "
        f"add them as an Argo CD repository secret (got '{shown}'; allowed: https://host/org/repo.git)"
    ]


def test_a_url_inside_a_rendered_object_is_hidden_too() -> None:
    found = problems({"argocd.applications": ["https://ci:tok-s3cr3t@github.com/example/web.git"]})
    assert found == [
        "confidential-vault:argocd.applications[0]: is not an object "
        "(got 'https://[hidden]@github.com/example/web.git'; allowed: a YAML mapping of its keys)"
    ]


@pytest.mark.parametrize("repo_url", ["ssh://git@github.com/example/web.git", "git@github.com:example/web.git"])
def test_a_bare_ssh_user_is_no_credential(repo_url: str) -> None:
    settings = load(application(repo_url))
    assert settings.argocd.applications[0].repo_url == repo_url


def test_program_stops_without_echoing_a_secret_and_registers_nothing(dev_config: dict[str, Any]) -> None:
    """End to end: a kubeconfig set with `--secret` as the whole cluster key, beside other mistakes."""
    broken = with_overrides(dev_config, {"cluster": KUBECONFIG, "edge.dashboardPassword": "plain-pass-Zx9"})
    error, run = run_failing(broken, secret_keys=[f"{PROJECT}:cluster"])
    assert isinstance(error, pulumi.RunError)
    message = str(error)
    assert message.splitlines() == [
        "invalid stack configuration (2 problem(s)):",
        "  - confidential-vault:cluster: is not an object (got [secret]; allowed: a YAML mapping of its keys)",
        "  - confidential-vault:edge.dashboardPassword: is a secret but stored in plaintext; set it with "
        "`pulumi config set --secret --path confidential-vault:edge.dashboardPassword` (got [secret])",
    ]
    assert "kube-token-Qx81" not in message
    assert "plain-pass-Zx9" not in message
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert run.registrations == []
