"""tools/render_diff.py: the rendered-object diff a pull request shows, on two commits of a fixture repository
(a copy of this project: base, then a commit that changes Traefik, Argo CD and a secret), plus its pieces."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import PROJECT, PROJECT_ROOT, fake_password
from tools import render_diff
from tools.render_diff import Entry, Masker, compare, field_changes, markdown

GIT_IDENTITY = ("-c", "user.name=render-diff test", "-c", "user.email=render-diff@example.invalid")


def git(repo: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *GIT_IDENTITY, *arguments], capture_output=True, text=True, check=True
    ).stdout


def project_files() -> list[str]:
    """This project's files as they are now (tracked and new ones, not what .gitignore excludes)."""
    listed = git(PROJECT_ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return sorted({name for name in listed.split("\0") if name and (PROJECT_ROOT / name).is_file()})


def edit_yaml(path: Path, change: dict[str, Any]) -> None:
    document = yaml.safe_load(path.read_text()) or {}
    node = document
    for dotted, value in change.items():
        node = document
        *parents, leaf = dotted.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def fixture_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Commit 1: the project. Commit 2: Traefik logs at DEBUG, Argo CD with Dex and without notifications, and
    another dashboard user (which changes a Secret)."""
    repo = tmp_path_factory.mktemp("render-diff") / "project"
    for name in project_files():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, repo / name)
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", "base")
    edit_yaml(repo / "values" / "traefik.yaml", {"log.level": "DEBUG"})
    edit_yaml(repo / "values" / "argocd.yaml", {"dex.enabled": True, "notifications.enabled": False})
    edit_yaml(repo / "Pulumi.dev.yaml", {f"config.{PROJECT}:edge": {"dashboardUser": "operator"}})
    git(repo, "commit", "--quiet", "--all", "--message", "change")
    return repo


@pytest.fixture(scope="module")
def dev_report(fixture_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("render-diff-report")
    arguments = ["--repo", str(fixture_repo), "--base", "HEAD~1", "--head", "HEAD", "--stack", "dev"]
    assert render_diff.main([*arguments, "--output-dir", str(output)]) == 0
    assert sorted(path.name for path in output.iterdir()) == ["dev.md"]
    return (output / "dev.md").read_text()


def section(report: str, heading: str) -> str:
    found = re.search(rf"<summary>{heading} \(\d+\)</summary>(.*?)</details>", report, re.DOTALL)
    assert found, f"no {heading} section"
    return found.group(1)


def changed_objects(report: str) -> dict[str, str]:
    """Object id → its diff block, from the Changed section."""
    blocks = re.findall(
        r"^`([^`]+)` — [^\n]+\n\n```diff\n(.*?)```", section(report, "Changed"), re.DOTALL | re.MULTILINE
    )
    return dict(blocks)


def test_report_lists_added_and_removed_objects(dev_report: str) -> None:
    assert "`apps/Deployment argocd/argocd-dex-server` — release argocd (argo-cd 10.1.1)" in section(
        dev_report, "Added"
    )
    removed = section(dev_report, "Removed")
    assert "`apps/Deployment argocd/argocd-notifications-controller` — release argocd (argo-cd 10.1.1)" in removed
    assert "argocd-dex-server" not in removed


def test_report_shows_the_changed_fields(dev_report: str) -> None:
    traefik = changed_objects(dev_report)["apps/Deployment traefik/traefik"]
    assert traefik.splitlines() == [
        '- spec.template.spec.containers[traefik].args: "--log.level=INFO"',
        '+ spec.template.spec.containers[traefik].args: "--log.level=DEBUG"',
    ]


def test_unchanged_releases_do_not_show(dev_report: str) -> None:
    """The mocks make both runs deterministic: a release whose inputs did not change has no entry at all."""
    assert "monitoring/" not in dev_report
    assert "kube-prometheus-stack" not in dev_report
    headline = re.search(r"\*\*(\d+) added, (\d+) removed, (\d+) changed\*\* of (\d+) objects", dev_report)
    assert headline
    assert int(headline.group(4)) > 150


def test_a_changed_secret_shows_as_changed_never_its_content(dev_report: str) -> None:
    secret = changed_objects(dev_report)["core/Secret traefik/traefik-dashboard-auth"]
    assert secret.splitlines() == ["! stringData.users: changed (secret)"]
    assert "operator:" not in dev_report
    assert "$2y$" not in dev_report
    assert "$2a$" not in dev_report  # Argo CD's admin hash, in a Secret that may change with Dex
    assert fake_password("traefik-dashboard-password") not in dev_report


def test_unknown_revision_is_a_usage_error(fixture_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render_diff.main(["--repo", str(fixture_repo), "--base", "no-such-branch", "--stack", "dev"]) == 2
    assert "unknown revision 'no-such-branch'" in capsys.readouterr().err


# --- the pieces, on small objects ----------------------------------------------------------------


def config_map(data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": "ns"}, "data": data}


def test_configmap_data_from_a_secret_is_masked() -> None:
    masker = Masker({"s3cr3t-token-value", "short"})
    before = config_map({"config.hcl": 'token = "s3cr3t-token-value"\n', "plain": "a", "encoded": "c2hvcnQ="})
    after = config_map({"config.hcl": 'token = "n3w-s3cr3t"\n', "plain": "b", "encoded": "bmV3"})
    lines = field_changes(before, after, masker)
    assert lines == [
        '! data["config.hcl"]: changed (secret)',
        "! data.encoded: changed (secret)",  # base64 of a (short) secret, equal: masked
        '- data.plain: "a"',
        '+ data.plain: "b"',
    ]
    assert "s3cr3t" not in "\n".join(lines)


def test_secret_data_is_never_shown() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="}}
    after = {**secret, "data": {"a": "eQ==", "b": "eg=="}}
    assert field_changes(secret, after, Masker(())) == ["! data.a: changed (secret)", "! data.b: added (secret)"]


def test_lists_are_compared_by_name_and_as_sets_of_scalars() -> None:
    def deployment(args: list[str], image: str) -> dict[str, Any]:
        containers = [{"name": "sidecar", "image": "s:1"}, {"name": "app", "image": image, "args": args}]
        return {"kind": "Deployment", "spec": {"template": {"spec": {"containers": containers}}}}

    lines = field_changes(deployment(["--a", "--b"], "app:1"), deployment(["--b", "--c"], "app:2"), Masker(()))
    assert lines == [
        '- spec.template.spec.containers[app].args: "--a"',
        '+ spec.template.spec.containers[app].args: "--c"',
        '- spec.template.spec.containers[app].image: "app:1"',
        '+ spec.template.spec.containers[app].image: "app:2"',
    ]


def test_report_without_changes_and_with_a_failed_side() -> None:
    entries = {"core/ConfigMap ns/app": Entry("program", config_map({"a": "1"}))}
    same = compare("dev", entries, entries, Masker(()))
    base, head = render_diff.Side("main (abc)", {"dev": entries}), render_diff.Side("working tree", {"dev": entries})
    assert markdown(same, base, head).splitlines() == [
        "### Rendered manifests: `dev`",
        "",
        "Base `main (abc)` → head `working tree`: **no change** in the 1 rendered objects.",
    ]
    head.error = 'helm template failed: token "tok-en-123456" rejected'
    head.secrets["dev"] = {"tok-en-123456"}
    failed = markdown(compare("dev", entries, {}, Masker(())), base, head)
    assert "the working tree side could not be rendered" in failed
    assert "tok-en-123456" not in failed


def test_long_reports_are_cut_for_github() -> None:
    many = {f"core/ConfigMap ns/app-{index}": Entry("program", config_map({"a": "x" * 300})) for index in range(400)}
    changed = {key: Entry("program", config_map({"a": "y" * 300})) for key in many}
    report = markdown(compare("dev", many, changed, Masker(())), render_diff.Side("b"), render_diff.Side("h"))
    assert len(report) <= render_diff.MAX_REPORT_CHARS + 300
    assert "**Truncated**" in report


def test_secret_strings_are_read_from_the_wire_format() -> None:
    marker = render_diff.SECRET_SIG
    raw = {
        "a": {marker: "x", "value": {"user": "admin", "password": "pw-123456"}},
        "b": "public",
        "c": [{marker: "x", "value": 5}],
    }
    assert sorted(render_diff.secret_strings(raw)) == ["5", "admin", "pw-123456"]
    masker = Masker(render_diff.secret_strings(raw))
    assert masker.is_secret({}, ("x",), base64.b64encode(b"pw-123456").decode())
    assert masker.is_secret({}, ("x",), "admin")
    assert not masker.is_secret({}, ("x",), "admin-user")  # short secrets only where a value equals them


def demo_archive(tree: Path, replicas: int) -> None:
    """`charts/demo-1.2.3.tgz` in `tree`: one Deployment whose replica count tells the archives apart."""
    files = {
        "demo/Chart.yaml": "apiVersion: v2\nname: demo\nversion: 1.2.3\n",
        "demo/templates/deployment.yaml": (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: demo}\n"
            f"spec: {{replicas: {replicas}, selector: {{matchLabels: {{app: demo}}}}, template: {{metadata: "
            "{labels: {app: demo}}, spec: {containers: [{name: demo, image: demo}]}}}\n"
        ),
    }
    (tree / "charts").mkdir(parents=True)
    with tarfile.open(tree / "charts" / "demo-1.2.3.tgz", "w:gz") as archive:
        for name, text in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(text.encode())
            archive.addfile(member, io.BytesIO(text.encode()))


def test_each_side_renders_the_chart_archives_of_its_own_tree(tmp_path: Path) -> None:
    """The same Release inputs on both sides, different vendored bytes: the diff shows what the archive changes."""
    release = {
        "type": render_diff.RELEASE_TYPE,
        "name": "demo",
        "inputs": {"chart": "./charts/demo-1.2.3.tgz", "version": "1.2.3", "name": "demo", "namespace": "demo"},
        "raw_inputs": {},
    }
    demo_archive(tmp_path / "base", replicas=1)
    demo_archive(tmp_path / "head", replicas=3)
    base = render_diff.render_side([release], tmp_path / "base")
    head = render_diff.render_side([release], tmp_path / "head")
    diff = compare("dev", base, head, Masker([]))
    ((key, entry, lines),) = diff.changed
    assert key == "apps/Deployment demo/demo"
    assert entry.origin == "release demo (demo 1.2.3)"
    assert lines == ["- spec.replicas: 1", "+ spec.replicas: 3"]
