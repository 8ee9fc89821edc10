"""README.md's first screen: what a newcomer needs before scrolling, and links that lead somewhere."""

from __future__ import annotations

import re

from harness import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
FIRST_SCREEN = 150
_LINK = re.compile(r"\]\(#([^)]+)\)")


def lines_outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line not inside a fenced code block."""
    result: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            result.append((number, line))
    return result


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> dict[str, int]:
    """Every heading's anchor (duplicates get GitHub's -1, -2 suffixes) and its line."""
    found: dict[str, int] = {}
    for number, line in lines_outside_code(text):
        match = re.match(r"^#{1,6} (.+)$", line)
        if match is None:
            continue
        anchor = github_anchor(match.group(1))
        unique, suffix = anchor, 0
        while unique in found:
            suffix += 1
            unique = f"{anchor}-{suffix}"
        found[unique] = number
    return found


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section, up to the next heading of level 2."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_first_screen_holds_contents_costs_checklist_and_teardown() -> None:
    text = README.read_text()
    headings = anchors(text)
    for heading in ("contents", "what-a-stack-costs", "first-deploy", "teardown"):
        assert headings[heading] <= FIRST_SCREEN, f"{heading} starts on line {headings[heading]}"
    teardown = section(text, "Teardown")
    assert headings["teardown"] + teardown.count("\n") <= FIRST_SCREEN + 1, "the teardown section ends by line 150"
    assert "scripts/down.sh dev" in teardown
    assert "scripts/down.sh prod --release-protected" in teardown


def test_cost_table_lists_each_resource_of_both_stacks() -> None:
    costs = section(README.read_text(), "What a stack costs")
    rows = [line for line in costs.splitlines() if line.startswith("| ") and not line.startswith("| resource")]
    resources = [row.split(" | ")[0].removeprefix("| ") for row in rows]
    for resource in ("AKS control plane", "System pool VMs", "SGX pool VMs", "OS disks", "PostgreSQL flexible server"):
        assert resource in resources
    assert any(name.startswith("Key Vault") for name in resources)
    assert any(name.startswith("Public IP") for name in resources)
    assert "2025" in costs, "the prices are dated"
    assert "calculator" in costs
    # The sizes are the shipped stacks' own.
    for size in ("Standard_D2s_v5", "Standard_D4s_v5", "Standard_DC2s_v3", "Standard_DC4s_v3"):
        assert size in costs
        assert any(size in (PROJECT_ROOT / f"Pulumi.{stack}.yaml").read_text() for stack in ("dev", "prod"))


def test_first_deploy_is_a_numbered_checklist_in_the_order_a_newcomer_needs() -> None:
    checklist = section(README.read_text(), "First deploy")
    steps = re.findall(r"^(\d+)\. (.+)$", checklist, flags=re.MULTILINE)
    assert [int(number) for number, _ in steps] == list(range(1, len(steps) + 1))
    order = ["Quota", "Image", "cluster.acrPullRegistryIds", "PULUMI_CONFIG_PASSPHRASE", "scripts/up.sh dev", "DNS"]
    order.append("scripts/verify.py")
    positions = [checklist.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_every_link_to_a_heading_of_the_readme_resolves() -> None:
    text = README.read_text()
    headings = anchors(text)
    broken = [
        f"line {number}: #{target}"
        for number, line in lines_outside_code(text)
        for target in _LINK.findall(line)
        if target not in headings
    ]
    assert not broken, broken
