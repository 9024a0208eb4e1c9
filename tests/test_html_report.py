"""`mdd-bench report --format html` and the galleries, on result files and distilled sets built here on the
`smoke` protocol (real training pairs as the "distilled" sets, so the nearest caption is known; no
training). The page is opened in a real headless Chromium through Playwright: no console errors,
sorting, the track switch, images that decode, provenance links that resolve.

Without Chromium the browser test skips, unless MDD_BENCH_REQUIRE_BROWSER is set (CI sets it).
"""

from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.data.captions import pre_caption
from mdd_bench.distilled import DistilledSet
from mdd_bench.evaluation.metrics import METRICS
from mdd_bench.pretrained.text_features import split_embeddings
from mdd_bench.protocol import load_protocol
from mdd_bench.record import DistillCost, ResultRecord, read_result
from mdd_bench.report import FORMATS, parse_formats
from mdd_bench.report.frame import load_frame
from mdd_bench.report.gallery import collect_galleries, displayable, nearest_captions, shown_indices
from mdd_bench.report.tables import build_tables
from mdd_bench.workspace.pairs import RealPairs

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

# Printed order is Random, Herding, MDM; by mean recall it is MDM, Random, Herding.
BASE = {"random": 20.0, "herding": 5.0, "mdm": 30.0}
NATIVE_SHIFT = 7.0
BUDGETS = (10, 20)
SEEDS = (0, 1)
MISSING_SET = ("herding", 20, 1)  # its set file is deleted: the report logs it and goes on
PAIRS = [("test_nfnet", "minilm"), ("test_resnet", "minilm")]


def _archs(method: str, budget: int, seed: int, shift: float) -> list[dict[str, Any]]:
    archs = []
    for k, (image, text) in enumerate(PAIRS):
        six = {m: BASE[method] + budget / 10 + seed + 2 * i - k + shift for i, m in enumerate(METRICS)}
        mean = dict(six, mean=statistics.fmean(six.values()), rsum=sum(six.values()))
        runs = [{m: v - 0.5 for m, v in mean.items()}, {m: v + 0.5 for m, v in mean.items()}]
        archs.append(
            {"image_encoder": image, "text_encoder": text, "source": k == 0,
             "seeds": [1000 * seed, 1000 * seed + 1], "runs": runs, "mean": mean}
        )  # fmt: skip
    return archs


def _evaluation(method: str, budget: int, seed: int) -> dict[str, Any]:
    return {
        track: {"track": track, "split": "test", "extras_used": [], "recipe": {},
                "archs": _archs(method, budget, seed, shift)}
        for track, shift in (("hard", 0.0), ("native", NATIVE_SHIFT))
    }  # fmt: skip


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Result files + sets of random/herding/mdm x budgets 10/20 x seeds 0/1 (seed 1's recorded set path
    is where a moved runs folder used to be), a full-data result, and one result whose set is gone."""
    root = tmp_path_factory.mktemp("html")
    runs = root / "runs"
    proto = load_protocol("smoke")
    dataset = load_dataset("shapes", proto, progress=False)
    embeddings = split_embeddings(dataset, proto.text, None, ("train",), progress=False)["train"]
    pairs = RealPairs(dataset.train, embeddings, proto)
    chosen: dict[str, np.ndarray] = {}
    for method in BASE:
        for budget in BUDGETS:
            for seed in SEEDS:
                rng = np.random.default_rng([budget, seed, len(method)])
                idx = rng.choice(len(pairs), budget, replace=False)
                images, texts = pairs.batch(torch.from_numpy(idx))
                result_path = runs / "smoke" / "shapes" / method / f"b{budget}-s{seed}.json"
                set_path = DistilledSet(images, texts).save(result_path.parent / "sets" / result_path.stem)
                recorded = (
                    set_path.resolve() if seed == 0 else Path("moved-away") / set_path.relative_to(root)
                )
                record = ResultRecord(
                    method=method, family="coreset", dataset="shapes", protocol="smoke",
                    protocol_hash=proto.hash, budget=budget, seed=seed,
                    evaluation=_evaluation(method, budget, seed),
                    config={"archs": "all", "tracks": ["hard", "native"], "protocol": proto.to_dict()},
                    versions={"mdd_bench": "0.1.0", "torch": torch.__version__, "git_commit": "abc1234"},
                    distill=DistillCost(seconds=0.01 * budget, peak_mem_mb=500.0 + budget),
                    storage_bytes=DistilledSet(images, texts).storage_bytes, distilled_set=str(recorded),
                )  # fmt: skip
                result_path.write_text(json.dumps(record.to_dict()))
                chosen[result_path.relative_to(runs).as_posix()] = idx
    method, budget, seed = MISSING_SET
    gone = runs / "smoke" / "shapes" / method / "sets" / f"b{budget}-s{seed}.safetensors"
    gone.unlink()
    full = ResultRecord(
        method="full-data", family="reference", dataset="shapes", protocol="smoke", protocol_hash=proto.hash,
        budget=len(pairs), seed=0, evaluation=_evaluation("mdm", 100, 0),
        config={"protocol": proto.to_dict()}, versions={"mdd_bench": "0.1.0"},
    )  # fmt: skip
    full_path = runs / "smoke" / "shapes" / "full-data" / "b0-s0.json"
    full_path.parent.mkdir(parents=True)
    full_path.write_text(json.dumps(full.to_dict()))
    return {"root": root, "runs": runs, "dataset": dataset, "chosen": chosen, "gone": gone}


@pytest.fixture(scope="module")
def page(smoke_runs: dict[str, Any]) -> Path:
    """`mdd-bench report --format html,figures` from another working directory than the runs'."""
    out = smoke_runs["root"] / "out"
    result = CliRunner().invoke(
        cli, ["report", "--runs", str(smoke_runs["runs"]), "--out", str(out), "--format", "html,figures"]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'smoke' / 'report.html'}" in result.output
    missing = [line for line in result.output.splitlines() if line.startswith("no gallery")]
    assert len(missing) == 1 and "herding/b20-s1.json" in missing[0], result.output
    return out / "smoke" / "report.html"


def test_galleries_and_page_regenerate_byte_for_byte(page: Path, smoke_runs: dict[str, Any]) -> None:
    """A second report on the same runs and sets, into a sibling folder: the gallery PNGs, the figures and
    the page (its inlined images too) have the same bytes as the first."""
    first = page.parent.parent
    second = smoke_runs["root"] / "out-again"
    args = ["report", "--runs", str(smoke_runs["runs"]), "--out", str(second), "--format", "html,figures"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
    assert "smoke/report.html" in files and any(f.startswith("smoke/gallery/") for f in files)
    assert [f for f in files if (first / f).read_bytes() != (second / f).read_bytes()] == []


def test_html_is_a_format_and_a_default() -> None:
    assert parse_formats("html, csv") == ["html", "csv"]
    assert "html" in FORMATS
    default = next(p for p in cli.commands["report"].params if p.name == "formats").default
    assert "html" in parse_formats(default)


def test_displayable_inverts_the_normalisation() -> None:
    proto = load_protocol("smoke")
    rgb = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    mean = np.array(proto.data.mean).reshape(1, 3, 1, 1)
    std = np.array(proto.data.std).reshape(1, 3, 1, 1)
    shown = displayable((rgb / 255.0 - mean) / std, proto.data.mean, proto.data.std)
    assert shown.dtype == np.uint8 and shown.shape == (4, 8, 8, 3)
    assert np.array_equal(shown, rgb.transpose(0, 2, 3, 1))
    assert displayable(np.full((1, 3, 2, 2), 99.0), proto.data.mean, proto.data.std).max() == 255


def test_nearest_captions_by_cosine() -> None:
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    best, cosine = nearest_captions(np.array([[0.0, 5.0], [2.0, 2.1]]), bank)
    assert best.tolist() == [1, 2]
    assert cosine[0] == pytest.approx(1.0) and 0.99 < cosine[1] < 1.0
    assert shown_indices(5) == [0, 1, 2, 3, 4]
    assert shown_indices(500)[0] == 0 and shown_indices(500)[-1] == 499 and len(shown_indices(500)) == 20


def test_galleries_show_each_set_with_its_nearest_captions(smoke_runs: dict[str, Any]) -> None:
    runs, dataset, chosen = smoke_runs["runs"], smoke_runs["dataset"], smoke_runs["chosen"]
    logs: list[str] = []
    galleries = collect_galleries(runs, sorted(chosen), logs.append)
    assert len(galleries) == len(chosen) - 1 and len(logs) == 1 and "not on disk" in logs[0]
    # Method order as in the tables; the herding set that is gone is left out.
    assert [g.title.split(",")[0] for g in galleries] == ["Random"] * 4 + ["Herding"] * 3 + ["MDM"] * 4
    train = dataset.train
    for gallery in galleries:
        idx = chosen[gallery.result_file]
        assert gallery.indices == list(range(len(idx)))
        # The "distilled" pairs are real pairs: their images come back as the dataset's pixels, and
        # each text embedding's nearest training caption is its own caption (or one that reads the same).
        pixels = train.images.get(train.caption_image[idx]).numpy().transpose(0, 2, 3, 1)
        assert np.abs(gallery.images.astype(int) - pixels.astype(int)).max() <= 1
        assert [pre_caption(c) for c in gallery.captions] == [pre_caption(train.captions[i]) for i in idx]
        assert min(gallery.similarities) > 0.999


def test_report_writes_gallery_pngs_and_a_self_contained_page(page: Path, smoke_runs: dict[str, Any]) -> None:
    folder = page.parent
    pngs = sorted((folder / "gallery").glob("*.png"))
    assert len(pngs) == len(smoke_runs["chosen"]) - 1
    text = page.read_text()
    for needle in ("http://", "https://", "<link", 'src="http', "@import"):
        assert needle not in text, needle
    assert text.count('<figure class="plot"') == 2 * 3  # recall/budget, time/recall, cross-arch x 2 tracks
    shown = sum(len(idx) for idx in smoke_runs["chosen"].values()) - MISSING_SET[1]
    assert text.count("data:image/png;base64,") == 6 + shown  # the figures and every gallery image


class _BodyCells(HTMLParser):
    """The text of every body cell of every <table id=...> in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.table: str | None = None
        self.in_body = self.in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.table = dict(attrs)["id"] or ""
            self.tables[self.table] = []
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body and self.table:
            self.tables[self.table].append([])
        elif tag == "td" and self.in_body and self.table:
            self.in_cell = True
            self.tables[self.table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.in_cell = False
        elif tag == "tbody":
            self.in_body = False

    def handle_data(self, data: str) -> None:
        if self.in_cell and self.table:
            self.tables[self.table][-1][-1] += data


def test_page_shows_the_same_cells_as_the_other_formats(page: Path, smoke_runs: dict[str, Any]) -> None:
    """Every table of both tracks, cell by cell as Markdown prints it (blank labels repeat the one above)."""
    parser = _BodyCells()
    parser.feed(page.read_text())
    frame = load_frame(smoke_runs["runs"])
    names = []
    for track in ("hard", "native"):
        for table in build_tables(frame, track):
            if f"t-{table.name}" in names:
                continue  # timing: one table for both tracks
            names.append(f"t-{table.name}")
            shown = parser.tables[f"t-{table.name}"]
            assert len(shown) == len(table.rows), table.name
            for printed, row in zip(shown, table.rows, strict=True):
                expected = [c.plain() for c in row]
                assert [p for p, e in zip(printed, expected, strict=True) if e] == [e for e in expected if e]
    assert sorted(parser.tables) == sorted(names)


def _click_cycle(tab, header: str, *orders: list[str]) -> None:
    """Click a sortable header once per expected order and check the rows after each click."""
    for expected in orders:
        tab.click(header)
        assert _visible_mean_column(tab, "retrieval_hard") == expected


def _visible_mean_column(tab, table: str) -> list[str]:
    """Method labels of the first budget block of the visible `table` (e.g. retrieval), top to bottom."""
    return tab.eval_on_selector(
        f"div[data-track]:not([hidden]) table#t-{table}",
        "t => Array.from(t.tBodies[0].rows).map(r => r.cells[1].textContent)",
    )


@pytest.mark.browser
def test_page_in_a_headless_browser(open_page, page: Path) -> None:
    tab, errors = open_page(page)

    # Sorting: the Mean header orders each budget block by its numbers, then reverses, then restores.
    assert _visible_mean_column(tab, "retrieval_hard") == ["Random", "Herding", "MDM"]
    headers = "div[data-track='hard'] table#t-retrieval_hard thead tr:last-child"
    header = f"{headers} th:text-is('Mean')"
    _click_cycle(
        tab, header, ["MDM", "Random", "Herding"], ["Herding", "Random", "MDM"], ["Random", "Herding", "MDM"]
    )
    # The scores are sort keys too (random cells and the full data are there): Score best first, and
    # HLR, where lower is better, smallest first.
    tab.click(f"{headers} th:text-is('Score')")
    assert _visible_mean_column(tab, "retrieval_hard") == ["MDM", "Random", "Herding"]
    hlr = f"{headers} th:text-is('HLR')"
    assert tab.get_attribute(hlr, "data-better") == "lower"
    _click_cycle(
        tab, hlr, ["MDM", "Random", "Herding"], ["Herding", "Random", "MDM"], ["Random", "Herding", "MDM"]
    )

    # The track switch shows the other track's numbers (native = hard + NATIVE_SHIFT here).
    first_number = "div[data-track]:not([hidden]) table[id^='t-retrieval'] tbody td.num"
    hard = float(tab.text_content(first_number).split("±")[0])
    assert tab.is_visible("table#t-retrieval_hard") and not tab.is_visible("table#t-retrieval_native")
    tab.check("input[name=track][value=native]")
    native = float(tab.text_content(first_number).split("±")[0])
    assert native == pytest.approx(hard + NATIVE_SHIFT)
    assert tab.is_visible("table#t-retrieval_native") and not tab.is_visible("table#t-retrieval_hard")
    assert tab.is_visible("#t-timing_shapes")  # shared by both tracks

    # Every image decodes: figures of the shown track and every gallery image.
    sizes = tab.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) >= 6 + 20 and all(done and width > 0 for done, width in sizes), sizes

    # Provenance: a number lists its result files; each link resolves to the JSON under --runs.
    tab.click("div[data-track='native'] table#t-retrieval_native tbody td.num[data-src]")
    assert tab.is_visible("#provenance")
    panel = tab.text_content("#provenance")
    assert f"smoke (hash {load_protocol('smoke').hash})" in panel
    assert "distillation 0" in panel and "native: 0, 1" in panel and "git_commit abc1234" in panel
    links = tab.eval_on_selector_all("#provenance a", "as => as.map(a => a.href)")
    assert len(links) == len(SEEDS)
    for link in links:
        assert read_result(Path(unquote(urlparse(link).path)))["method"] == "random"
    assert errors == []
    tab.close()
