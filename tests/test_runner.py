"""`mdd-bench run`: result files, skip-if-done, bad input, and a third-party plugin end to end."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from mdd_bench.cache import cache_dir
from mdd_bench.cli import cli

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

RUN = ["run", "--protocol", "smoke", "--repetitions", "1", "--budgets", "10"]


def test_run_writes_results_and_skips_finished_cells(tmp_path):
    out = tmp_path / "runs"
    first = CliRunner().invoke(cli, [*RUN, "--methods", "random,k-center", "--out", str(out)])
    assert first.exit_code == 0, first.output
    results = sorted(out.glob("smoke/shapes/*/b*-s*.json"))
    # k-center needed the full-data reference, so its upper bound is published for the report too
    assert {p.parent.name for p in results} == {"random", "k-center", "full-data"}
    upper = json.loads(next(p for p in results if p.parent.name == "full-data").read_text())
    assert upper["method"] == "full-data" and upper["evaluation"]["hard"]["archs"][0]["source"]
    assert len(list(out.glob("smoke/shapes/*/sets/b10-s0.safetensors"))) == 2
    result = json.loads((out / "smoke" / "shapes" / "random" / "b10-s0.json").read_text())
    for key in ("protocol_hash", "versions", "distill", "evaluation", "storage_bytes", "hparams", "seed"):
        assert key in result
    assert set(result["evaluation"]) == {"hard", "native"}
    assert result["evaluation"]["native"]["same_as"] == "hard"
    assert result["storage_bytes"] == 10 * (3 * 32 * 32 + 384) * 4
    assert result["distill"]["peak_mem_mb"] > 0
    # CPU floats repeat only at the same thread count: the result and the reference model say which.
    assert result["versions"]["torch_threads"] == torch.get_num_threads()
    models = list(cache_dir("references").glob("smoke-shapes-*/model.safetensors"))
    assert models
    for model in models:  # another test may have trained one under its own thread count
        with safe_open(str(model), "pt") as f:
            assert int(f.metadata()["torch_threads"]) >= 1
    assert result["evaluation"]["hard"]["archs"][0]["seeds"] == [0]
    # The cell's own cost by stage (the grid's clock runs across cells: each file holds only its share).
    stages = result["stages_s"]
    assert stages["distill"] >= round(result["distill"]["seconds"], 2) and stages["evaluate"] > 0
    assert "random" in first.output and "k-center" in first.output

    mtime = (out / "smoke" / "shapes" / "random" / "b10-s0.json").stat().st_mtime_ns
    second = CliRunner().invoke(cli, [*RUN, "--methods", "random,k-center", "--out", str(out)])
    assert second.exit_code == 0, second.output
    assert second.output.count("skip") == 2
    assert (out / "smoke" / "shapes" / "random" / "b10-s0.json").stat().st_mtime_ns == mtime


def test_unknown_method_and_oversized_budget_are_clear_errors(tmp_path):
    bad = CliRunner().invoke(cli, [*RUN, "--methods", "herdng", "--out", str(tmp_path)])
    assert bad.exit_code != 0
    assert "Did you mean 'herding'?" in bad.output and "Traceback" not in bad.output
    big = CliRunner().invoke(
        cli,
        ["run", "--protocol", "smoke", "--methods", "random", "--budgets", "100000", "--out", str(tmp_path)],
    )
    assert big.exit_code != 0 and "larger than" in big.output
    bad_set = CliRunner().invoke(cli, [*RUN, "--methods", "herding", "--set", "herding.nope=1"])
    assert bad_set.exit_code != 0 and "no hyper-parameter 'nope'" in bad_set.output


def test_set_overrides_reach_the_method(tmp_path):
    out = tmp_path / "runs"
    res = CliRunner().invoke(
        cli,
        [
            *RUN,
            "--methods",
            "herding",
            "--set",
            "herding.features=image",
            "--out",
            str(out),
            "--tracks",
            "hard",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((out / "smoke" / "shapes" / "herding" / "b10-s0.json").read_text())
    assert result["hparams"] == {"features": "image"}


PLUGIN = '''
from dataclasses import dataclass

from mdd_bench.api import DistillContext, HParams, Method



@dataclass
class EveryKthParams(HParams):
    stride: int = 3


class EveryKth(Method):
    """Takes every k-th training pair: a toy plugin living outside mdd-bench."""

    name = "every-kth"
    family = "coreset"
    artifacts = ("text_features",)
    hparams_class = EveryKthParams

    def distill(self, ctx: DistillContext, budget: int):
        chosen = list(range(0, budget * self.hparams.stride, self.hparams.stride))
        return ctx.coreset(chosen, method=self.name)
'''


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A third-party package with its entry point, put on sys.path like an installed distribution."""
    site = tmp_path / "site"
    (site / "everykth_plugin").mkdir(parents=True)
    (site / "everykth_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "everykth_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: everykth-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mdd_bench.methods]\nevery-kth = everykth_plugin:EveryKth\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("everykth_plugin", None)


def test_third_party_plugin_runs_through_mdd_bench_run(plugin_on_path, tmp_path):
    listed = CliRunner().invoke(cli, ["list", "methods"])
    assert "every-kth" in listed.output and "everykth_plugin" in listed.output
    out = tmp_path / "runs"
    res = CliRunner().invoke(
        cli,
        [
            *RUN,
            "--methods",
            "every-kth",
            "--set",
            "every-kth.stride=2",
            "--out",
            str(out),
            "--tracks",
            "hard",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads((out / "smoke" / "shapes" / "every-kth" / "b10-s0.json").read_text())
    assert result["hparams"] == {"stride": 2}
    assert result["method_info"] == {"display_name": "every-kth", "paper": "", "version": 1}
    from mdd_bench.distilled import DistilledSet

    saved = DistilledSet.load(result["distilled_set"])
    assert saved.provenance["real_indices"] == list(range(0, 20, 2))


def test_deterministic_methods_run_the_first_seed_only(tmp_path, monkeypatch):
    from mdd_bench.api import Method
    from mdd_bench.registry import get_method
    from mdd_bench.run import grid
    from mdd_bench.run.config import RunConfig

    class Fixed(Method):
        name = "fixed"
        family = "coreset"
        deterministic = True

        def distill(self, ctx, budget):
            return ctx.coreset(list(range(budget)), method=self.name)

    monkeypatch.setattr(grid, "get_method", lambda name: Fixed if name == "fixed" else get_method(name))
    from mdd_bench.data import load_dataset
    from mdd_bench.protocol import load_protocol

    protocol = load_protocol("smoke")
    config = RunConfig(["fixed", "random"], ["shapes"], [10], seeds=[0, 1], out=tmp_path,
                              tracks=["hard"], repetitions=1)  # fmt: skip
    said = []
    results = grid.run_grid(protocol, config, log=said.append)
    cells = sorted((r["method"], r["seed"]) for r in results)
    assert cells == [("fixed", 0), ("random", 0), ("random", 1)]
    assert any("fixed is deterministic" in line for line in said)
    fixed = next(r for r in results if r["method"] == "fixed")
    assert fixed["deterministic"] is True
    assert next(r for r in results if r["method"] == "random")["deterministic"] is False
    assert load_dataset  # the grid loaded the data itself


def test_default_seeds_come_from_the_protocol():
    from mdd_bench.protocol import load_protocol

    assert load_protocol("cpu").seeds == (0, 1, 2) and load_protocol("paper").seeds == (0, 1, 2)
    assert load_protocol("smoke").seeds == (0,)


def test_negative_seed_is_a_one_line_error(tmp_path):
    bad = CliRunner().invoke(cli, [*RUN, "--methods", "random", "--seeds", "-1", "--out", str(tmp_path)])
    assert bad.exit_code != 0 and "non-negative" in bad.output and "Traceback" not in bad.output


def test_cuda_peak_memory_reaches_the_result(tmp_path, monkeypatch):
    import torch

    from mdd_bench.run import cell

    class FakeCudaPeak(cell.PeakMemory):
        def __exit__(self, *exc):
            super().__exit__(*exc)
            self.cuda_peak_mb = 123.0

    monkeypatch.setattr(cell, "PeakMemory", FakeCudaPeak)
    out = tmp_path / "runs"
    res = CliRunner().invoke(cli, [*RUN, "--methods", "random", "--tracks", "hard", "--out", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "smoke" / "shapes" / "random" / "b10-s0.json").read_text())
    assert result["distill"]["cuda_peak_mem_mb"] == 123.0
    assert cell.PeakMemory(torch.device("cpu")).cuda_peak_mb is None


def test_a_cache_with_fewer_repetitions_never_replaces_a_published_upper_bound(tmp_path, monkeypatch) -> None:
    """A fresh machine's one-repetition reference must not overwrite committed three-repetition results."""
    from types import SimpleNamespace

    from mdd_bench.artifacts import references
    from mdd_bench.protocol import load_protocol
    from mdd_bench.run.config import RunConfig
    from mdd_bench.run.full_data import publish_full_data

    protocol = load_protocol("smoke")
    folder = tmp_path / "ref"
    folder.mkdir()
    monkeypatch.setattr(references, "reference_folder", lambda p, ds: folder)

    def cache_with(means: list[float]) -> None:
        runs = [{"mean": m} for m in means]
        ref = {
            "pairs": 120,
            "image_encoder": "test_nfnet",
            "text_encoder": "minilm",
            "seeds": list(range(len(runs))),
            "runs": runs,
            "source": True,
            "mean": {"mean": sum(means) / len(means)},
            "std": {},
            "recipe": {},
        }
        (folder / "result.json").write_text(json.dumps(ref))

    def published(path) -> list[float]:
        return [r["mean"] for r in json.loads(path.read_text())["evaluation"]["hard"]["archs"][0]["runs"]]

    config = RunConfig(methods=["random"], datasets=["shapes"], budgets=[10], out=tmp_path / "runs")
    dataset = SimpleNamespace(name="shapes")
    cache_with([70.0, 71.0, 72.0])
    path = publish_full_data(protocol, dataset, config, log=lambda _: None)
    assert published(path) == [70.0, 71.0, 72.0]
    cache_with([75.0])  # another machine's cache: one repetition
    notes: list[str] = []
    assert publish_full_data(protocol, dataset, config, log=notes.append) == path
    assert published(path) == [70.0, 71.0, 72.0] and "kept" in notes[0]
    cache_with([70.0, 71.0, 72.0, 73.0])  # more repetitions finished: rewritten
    publish_full_data(protocol, dataset, config, log=lambda _: None)
    assert published(path) == [70.0, 71.0, 72.0, 73.0]


def test_stage_delta_is_this_cells_share_of_a_shared_clock():
    from mdd_bench.run.cell import stage_delta
    from mdd_bench.run.progress import StageClock

    clock = StageClock(seconds={"evaluate": 5.0, "distill": 2.0, "anchor": 1.0})
    before = {"evaluate": 3.0, "anchor": 1.0}  # an earlier cell's stages
    assert stage_delta(clock, before) == {"evaluate": 2.0, "distill": 2.0}  # no anchor work this cell
    # An extension adds to what the file recorded.
    assert stage_delta(clock, before, {"evaluate": 1.5, "distill": 9.0}) == {"evaluate": 3.5, "distill": 11.0}
