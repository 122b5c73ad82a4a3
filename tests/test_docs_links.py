"""Every relative link in README.md and docs/*.md leads to a page, and to a heading on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = {
    str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
}


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, re.M)}


def links(text: str) -> list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    broken = []
    for target in links(PAGES[page]):
        file, _, fragment = target.partition("#")
        dest = (
            str((ROOT / page).parent.joinpath(file).resolve().relative_to(ROOT)) if file else page
        )
        if dest not in PAGES and not (ROOT / dest).exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest in PAGES and fragment not in anchors(PAGES[dest]):
            broken.append(f"{target}: no such heading")
    assert broken == []


def test_slugs_are_githubs() -> None:
    assert slug("Event log (`--events F`)") == "event-log---events-f"
    assert slug("`otree.testing`") == "otreetesting"
    assert slug("Where otree differs from OTP, on purpose") == (
        "where-otree-differs-from-otp-on-purpose"
    )
