"""The README keeps its promises: its commands are CI's, its queries answer, its links lead.

The README is the newcomer's page; the operator's manual is in `docs/`, the benchmarks in
`bench/README.md`, and every relative link between them must lead somewhere.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app.projection import projector
from tests import _account
from tests._helpers import append_and_project

if TYPE_CHECKING:
    import sqlite3

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Every page of prose that links to another: the README, the manual, the benchmarks.
PAGES = (README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md")

# `[text](target)`, outside code; the target may carry a `#fragment`.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def _prose(page: Path) -> str:
    """The page without its code, where brackets and parentheses are not links."""
    return INLINE_CODE.sub("", FENCED.sub("", page.read_text(encoding="utf-8")))


def _anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to `-`."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCED.sub("", page.read_text(encoding="utf-8"))
    return {_anchor(h) for h in re.findall(r"^#+ (.*)$", text, re.MULTILINE)}


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page)) if not re.match(r"[a-z]+:", t)]


def _broken(page: Path) -> list[str]:
    """The page's relative links to no file, or to no heading of the file they name."""
    broken = []
    for target in _links(page):
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (
            fragment and linked.suffix == ".md" and fragment not in _anchors(linked)
        ):
            broken.append(target)
    return broken


@pytest.fixture
def database(tmp_path: Path) -> sqlite3.Connection:
    append_and_project(tmp_path, _account.deliveries())
    return projector.connect(tmp_path / "projections.db")


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    """The first block has the serve and the test command; `.ci/run` runs the latter."""
    first = re.search(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert first is not None
    commands = [line for line in first.group(1).splitlines() if line and line[0] != "#"]
    serve = "BITBYBIT_WEBHOOK_SECRET=whsec_your_secret .venv/bin/python -m app serve"
    assert commands == [f"scripts/install && {serve}", "scripts/install && scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert commands[1] in ci


def test_readme_has_the_promised_queries() -> None:
    """The README shows the five example queries."""
    assert len(_queries()) == 5


def test_sales_per_day(database: sqlite3.Connection) -> None:
    """Each UTC day and currency, newest first, as the account's hand-computed rows."""
    rows = database.execute(_queries()[0]).fetchall()
    assert len(rows) == len(_account.SALES_BY_DAY)
    assert rows[0] == ("2024-03-05", "IDR", 0, 0, 0)


def test_revenue_per_customer(database: sqlite3.Connection) -> None:
    """Paid revenue per customer and currency, largest first within a currency."""
    rows = database.execute(_queries()[1]).fetchall()
    assert [(r[0], r[4], r[6]) for r in rows] == [
        ("cust_citra", None, 35000),
        ("cust_ana", "IDR", 201000),
        ("cust_ghost", "IDR", 12000),
        ("cust_budi", "USD", 19.99),
    ]


def test_whatsapp_funnel(database: sqlite3.Connection) -> None:
    """One row per template, with every stage its messages reached."""
    rows = database.execute(_queries()[2]).fetchall()
    assert sorted(rows, key=lambda r: str(r[0])) == sorted(
        _account.MESSAGE_FUNNEL, key=lambda r: str(r[0])
    )


def test_orders_per_status(database: sqlite3.Connection) -> None:
    """Orders are counted per status, most frequent first."""
    rows = database.execute(_queries()[3]).fetchall()
    assert rows[0] == ("active", 7)
    assert sorted(rows, key=str) == sorted(_account.ORDERS_BY_STATUS, key=str)


def test_vip_customers(database: sqlite3.Connection) -> None:
    """Only customers tagged vip that are not deleted are listed."""
    rows = database.execute(_queries()[4]).fetchall()
    assert rows == [("cust_ana", "ana@example.id", "Ana", "Putri")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    """A relative link names an existing file, and its `#fragment` one of its headings."""
    assert _broken(page) == []


def test_the_readme_leads_to_every_page() -> None:
    """No page of the manual, nor the benchmarks', is left without a link from the README."""
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in _links(README)}
    assert [str(p.relative_to(ROOT)) for p in PAGES[1:] if p not in linked] == []


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    """A missing file or heading is caught; links inside code, and web links, are not read."""
    (tmp_path / "other.md").write_text("# A heading, with `code`\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-with-code) [gone](missing.md) [bad](other.md#nowhere)\n"
        "[here](#top) `[code](not-a-link.md)` [web](https://example.com/x)\n"
        "```\n[x](fenced.md)\n```\n# Top\n",
        encoding="utf-8",
    )
    assert _broken(page) == ["missing.md", "other.md#nowhere"]
