"""The documentation holds together: its links lead somewhere, the README stays a
README, and its set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted([README, REPO / "trainer" / "README.md", *(REPO / "docs").glob("*.md")])

APP_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -e . "
               "&& .venv/bin/python -m faceapp")

# Screenshots of the app's pages are being produced; until their folder exists, links
# to exactly these files may point nowhere. Once docs/screenshots/ is there, every one
# of them must exist like any other link.
SCREENSHOTS = REPO / "docs" / "screenshots"
PENDING_SCREENSHOTS = {SCREENSHOTS / f"{page}.png" for page in
                       ("live", "enroll", "people", "unknowns", "events", "settings")}

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HTML = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.I)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")


def code_blocks(text: str) -> list[tuple[list[int], str]]:
    """The Markdown code blocks, fenced or indented, in order: (their line numbers,
    their text without the fence or the four-space indent)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    previous_blank = True
    in_list = False
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            body, numbers = [], [i]
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith(marker):
                body.append(lines[i])
                numbers.append(i)
                i += 1
            numbers.append(i)
            blocks.append((numbers, "\n".join(body)))
            i += 1
            previous_blank = False
            continue
        indented = line.startswith("    ") or line.startswith("\t")
        if indented and line.strip() and previous_blank and not in_list:
            body, numbers = [], []
            while i < len(lines) and (lines[i].startswith(("    ", "\t")) or not lines[i].strip()):
                body.append(lines[i][4:] if lines[i].startswith("    ") else lines[i][1:])
                numbers.append(i)
                i += 1
            while body and not body[-1].strip():  # trailing blank lines are not the block's
                body.pop()
                numbers.pop()
            blocks.append((numbers, "\n".join(body)))
            previous_blank = True
            continue
        if line.strip():
            in_list = bool(re.match(r"^\s*([-*+]|\d+[.)])\s", line)) or (
                in_list and line.startswith(" "))
        elif not in_list or (i + 1 < len(lines) and not lines[i + 1].startswith(" ")):
            in_list = False
        previous_blank = not line.strip()
        i += 1
    return blocks


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image outside code."""
    text = path.read_text(encoding="utf-8")
    in_code = {n for numbers, _ in code_blocks(text) for n in numbers}
    found = []
    for number, line in enumerate(text.splitlines()):
        if number in in_code:
            continue
        line = _CODE_SPAN.sub("", line)
        for pattern in (_INLINE_LINK, _REFERENCE, _HTML):
            for match in pattern.finditer(line):
                found.append((number + 1, match.group(1).strip("<>")))
    return found


def is_relative(target: str) -> bool:
    return not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("//")


def test_the_documents_exist():
    names = {p.relative_to(REPO).as_posix() for p in DOCS}
    assert {"README.md", "trainer/README.md", "docs/identification.md",
            "docs/students.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_and_images_resolve(doc):
    screenshots_pending = not SCREENSHOTS.exists()
    broken = []
    for number, target in links(doc):
        if not is_relative(target):
            continue
        file_part = target.split("#", 1)[0].split("?", 1)[0]
        if not file_part:  # an anchor in this same file
            continue
        resolved = (doc.parent / file_part).resolve()
        if resolved.exists():
            continue
        if screenshots_pending and resolved in PENDING_SCREENSHOTS:
            continue
        broken.append(f"{doc.relative_to(REPO)}:{number}: {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)


def test_links_are_found(tmp_path):
    """The link finder itself: a test that finds no links would pass on anything."""
    targets = [t for _, t in links(README)]
    assert "docs/identification.md" in targets
    assert any(t.startswith("docs/screenshots/") for t in targets)
    probe = tmp_path / "probe.md"
    probe.write_text("text [a](x.md) ![b](img/y.png \"title\") `[not](code.md)` "
                     "<img src=\"z.png\">\n\n    [not](indented-code.md)\n\n"
                     "```\n[not](fenced.md)\n```\n[ref]: r.md\n", encoding="utf-8")
    assert [t for _, t in links(probe)] == ["x.md", "img/y.png", "z.png", "r.md"]


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 400, f"README.md has {len(lines)} lines: move research to docs/"


def test_readme_starts_with_the_two_setup_commands():
    blocks = [text for _, text in code_blocks(README.read_text(encoding="utf-8"))]
    assert len(blocks) >= 2
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    ci_command = ci_lines[-1]
    assert blocks[0].strip() == APP_COMMAND
    assert blocks[1].strip() == ci_command, \
        "the README's test command differs from the one .ci/run runs"
