"""The documentation keeps up with the code: every command of ``faceid --help`` is documented, and
every relative link in README.md and docs/*.md leads to a file that exists (and, with an anchor,
to a heading of it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from faceid.cli import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Pages written on other branches of this round and linked from the README before they land. A
# link to one of them may point nowhere only while the page is absent: once every branch is
# merged, this set can be emptied (a page here that exists is checked like any other).
PENDING_PAGES: set[str] = set()  # pages other branches were adding; all merged now

# [text](target) and [text]: target; images too. The target ends at whitespace or ")".
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def commands(group=None, prefix: str = "") -> list[str]:
    """Every leaf command of the typer app as typed after ``faceid``, walked from the command tree:
    ``["enroll", ..., "models pull", ...]``; a group with subcommands is walked, not listed."""
    group = group if group is not None else typer.main.get_command(app)
    out: list[str] = []
    for name, command in group.commands.items():
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands"):
            out += commands(command, f"{prefix}{name} ")
        else:
            out.append(f"{prefix}{name}")
    return out


def documentation() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in PAGES)


def relative_links(page: Path) -> list[str]:
    """The relative link targets of a Markdown page, outside code blocks and code spans."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = [a or b for a, b in LINK.findall(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", t, re.IGNORECASE)]


def test_the_command_tree_is_walked_to_its_leaves():
    found = commands()
    # a few of each kind: top-level commands and subcommands of every group
    for expected in ("enroll", "identify", "serve", "models pull", "gallery migrate", "eval lfw", "keys revoke"):
        assert expected in found
    assert "models" not in found and "gallery" not in found  # groups are walked, not listed


def test_every_command_is_documented():
    """Each command of ``faceid --help`` appears as ``faceid <command>`` in the README or a docs page."""
    docs = documentation()
    missing = [c for c in commands() if not re.search(rf"faceid {re.escape(c)}(?![\w-])", docs)]
    assert missing == [], f"commands not documented in README.md or docs/*.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        if not path:
            continue
        resolved = (page.parent / path).resolve()
        if resolved.exists():
            continue
        if resolved.is_relative_to(ROOT) and str(resolved.relative_to(ROOT)) in PENDING_PAGES:
            continue
        broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)}: links to nothing: {broken}"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered ``-1``, ``-2``..."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#+\s+(.*?)\s*$", FENCE.sub("", page.read_text(encoding="utf-8")), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_into_a_page_names_a_heading(page):
    broken = []
    for target in relative_links(page) + re.findall(r"\]\((#[^)\s]+)\)", page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if anchor and resolved.suffix == ".md" and resolved.exists() and anchor not in anchors(resolved):
            broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)}: anchors that name no heading: {broken}"


def test_the_link_check_finds_a_broken_link(tmp_path):
    """The checker itself: it sees links in text and ignores those in code, URLs and anchors."""
    page = tmp_path / "page.md"
    page.write_text(
        "See [a](missing.md#part), [b](https://example.org/x.md), [c](#here), `[d](in-code.md)`.\n"
        "```\n[e](in-fence.md)\n```\n[f]: other.md\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["missing.md#part", "other.md"]
    page.write_text("# Speed\n## How fast, on this machine\n## `faceid serve`: keys\n## Speed\n", encoding="utf-8")
    assert anchors(page) == {"speed", "how-fast-on-this-machine", "faceid-serve-keys", "speed-1"}


def test_the_readme_is_a_short_page():
    """A new user reads it in five minutes; the rest lives in docs/ (issue 17)."""
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) < 400
