"""The method pages under docs/methods/ follow the code: each page's "Search space" table is what
`describe(method.search_space_for(protocol))` prints for `cpu` and `paper` (and its `smoke` line for
`smoke`), a method with nothing to tune says so, and no page lists the per-method run-length settings
the protocol's `[distill]` rule replaced."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mdd_bench.protocol import load_protocol
from mdd_bench.registry import list_methods
from mdd_bench.search_space import describe

METHODS_DOCS = Path(__file__).resolve().parents[1] / "docs" / "methods"
ROW = re.compile(r"^\| `(\w+)` \| `([^`]+)` \| `([^`]+)` \|$", re.M)
PAIR = re.compile(r"`(\w+)` `([^`]+)`")
# Run-length and selection keys that are the protocol's now, never a method's.
DROPPED = re.compile(r"^\| `(eval_every|eval_repetitions|select_track)`", re.M)


def space(name: str, protocol: str) -> dict[str, str]:
    return describe(list_methods()[name].search_space_for(load_protocol(protocol)))


def section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {title}' section"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(list_methods()))
def test_page_shows_the_methods_search_space(name: str) -> None:
    page = METHODS_DOCS / f"{name}.md"
    if not page.is_file():
        pytest.skip(f"{name} has no page under docs/methods/ (a plugin of the test suite)")
    text = page.read_text()
    if not any(space(name, p) for p in ("cpu", "paper", "smoke")):
        assert "nothing to tune: 0 trials" in text
        return
    body = section(text, "Search space")
    header = next(line for line in body.splitlines() if line.startswith("| hyper-parameter"))
    assert header == "| hyper-parameter | `cpu` | `paper` |"
    rows = ROW.findall(body)
    assert {key: cpu for key, cpu, _ in rows} == space(name, "cpu")
    assert {key: paper for key, _, paper in rows} == space(name, "paper")
    smoke = next(line for line in body.splitlines() if line.startswith("`smoke`"))
    assert dict(PAIR.findall(smoke)) == space(name, "smoke")


def test_no_page_lists_run_length_settings_as_hyper_parameters() -> None:
    pages = sorted(METHODS_DOCS.glob("*.md"))
    listed = [f"{page.name}: {key}" for page in pages for key in DROPPED.findall(page.read_text())]
    assert not listed, f"run length and selection are the protocol's [distill] rule: {listed}"
