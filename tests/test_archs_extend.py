"""`run --archs all` over finished `--archs source` cells: only the encoder pairs a result lacks are
evaluated, from the set saved beside it; nothing is distilled again and the recorded pairs stay as they
were (smoke protocol: 2 image x 2 text encoders, so 3 pairs to add per cell)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import Evaluator, arch_grid
from mdd_bench.protocol import load_protocol
from mdd_bench.run.config import RunConfig
from mdd_bench.run.dryrun import describe_plan
from mdd_bench.run.grid import GridRun, execute_grid
from mdd_bench.run.jobs import DONE, FAILED
from mdd_bench.workspace import Workspace

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

GRID = {"methods": ["random"], "datasets": ["shapes"], "budgets": [10], "seeds": [0, 1]}
# Only the source arch entry of each track carries it: a re-evaluated entry would not.
MARKER = "recorded by the --archs source run"


def folder(out: Path) -> Path:
    return out / "smoke" / "shapes" / "random"


def cells(out: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder(out).glob("b10-s*.json"))}


def run(out: Path, archs: str, repetitions: int | None = None) -> tuple[GridRun, list[str]]:
    said: list[str] = []
    config = RunConfig(**GRID, archs=archs, out=out, repetitions=repetitions)
    return execute_grid(load_protocol("smoke"), config, log=said.append, progress=False), said


def source(entry: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in entry["archs"] if a["source"])


@pytest.fixture(scope="module")
def source_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two `random` cells run with `--archs source` and one repetition, their source entries marked."""
    out = tmp_path_factory.mktemp("source") / "runs"
    grid, _ = run(out, "source", repetitions=1)
    assert not grid.failed
    for path in folder(out).glob("b10-s*.json"):
        result = json.loads(path.read_text())
        assert result["evaluation"]["native"]["same_as"] == "hard"  # what the refresh must keep
        for entry in result["evaluation"].values():
            assert len(entry["archs"]) == 1
            source(entry)["marker"] = MARKER
        path.write_text(json.dumps(result, indent=2, sort_keys=True))
    return out


def copy_of(tree: Path, tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    shutil.copytree(tree, out)
    return out


@dataclass
class Extended:
    out: Path
    before: dict[str, dict[str, Any]]
    set_stamp: tuple[int, bytes]
    grid: GridRun
    said: list[str]


@pytest.fixture(scope="module")
def extended(source_runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Extended:
    """A copy of the source runs after `--archs all` (the protocol's 2 repetitions asked for)."""
    out = copy_of(source_runs, tmp_path_factory.mktemp("extended"))
    before = cells(out)
    saved = folder(out) / "sets" / "b10-s0.safetensors"
    stamp = (saved.stat().st_mtime_ns, saved.read_bytes())
    grid, said = run(out, "all")
    return Extended(out, before, stamp, grid, said)


def test_archs_all_evaluates_only_the_missing_pairs_from_the_saved_set(extended: Extended, smoke) -> None:
    protocol, dataset = smoke
    grid = extended.grid
    assert [o.status for o in grid.outcomes] == [DONE, DONE] and not grid.failed
    for seed in (0, 1):
        line = f"extend random shapes budget=10 seed={seed}: evaluating 3 unseen pairs from its saved set"
        assert line in extended.said
    assert not any(line.startswith(("run ", "skip ")) for line in extended.said)
    # Evaluation only: no distillation in the run's stage clock, and the set file was not rewritten.
    assert grid.stages.get("evaluate", 0) > 0 and "distill" not in grid.stages
    saved = folder(extended.out) / "sets" / "b10-s0.safetensors"
    assert (saved.stat().st_mtime_ns, saved.read_bytes()) == extended.set_stamp

    every = set(arch_grid(protocol, "all"))
    after = cells(extended.out)
    for name, old in extended.before.items():
        new = after[name]
        for key in set(old) | set(new):
            if key not in ("evaluation", "config", "stages_s", "artifacts"):  # distill, created: as recorded
                assert new.get(key) == old.get(key), key
        # The cell's artifacts as recorded, plus the anchors and text features of the new pairs.
        assert new["artifacts"] == {**new["artifacts"], **old["artifacts"]}
        assert {"anchors/test_resnet", "text/minilm-l3"} <= {a.rsplit("-", 1)[0] for a in new["artifacts"]}
        assert new["config"] == {**old["config"], "archs": "all"}
        # The extension's cost is added to the cell's: evaluation grew, distillation did not.
        assert new["stages_s"]["evaluate"] > old["stages_s"]["evaluate"] > 0
        assert new["stages_s"]["distill"] == old["stages_s"]["distill"]
        hard = new["evaluation"]["hard"]
        assert {(a["image_encoder"], a["text_encoder"]) for a in hard["archs"]} == every
        assert len(hard["archs"]) == len(every)
        # The recorded source entry, byte for byte (with its marker): it was not evaluated again.
        assert json.dumps(hard["archs"][0], sort_keys=True) == json.dumps(
            source(old["evaluation"]["hard"]), sort_keys=True
        )
        assert hard["archs"][0]["marker"] == MARKER and [a["source"] for a in hard["archs"]].count(True) == 1
        # The file's one repetition, with its seeds, not the two this run's config would give a fresh cell.
        assert {json.dumps(a["seeds"]) for a in hard["archs"]} == {json.dumps([old["seed"] * 1000])}
        assert hard["recipe"] == old["evaluation"]["hard"]["recipe"]
        # A native track without extras is a copy of the hard one, refreshed as a fresh cell writes it.
        assert new["evaluation"]["native"] == dict(hard, track="native", same_as="hard")

    # The added pairs score exactly what a fresh `--archs all` evaluation of that set gives them.
    from mdd_bench.distilled import DistilledSet

    evaluator = Evaluator(Workspace(protocol, dataset, "cpu", progress=False))
    fresh = evaluator.evaluate(DistilledSet.load(saved), "all", "hard", repetitions=1, seed=0)
    want = {(a.image_encoder, a.text_encoder): json.loads(json.dumps(a.to_dict())) for a in fresh.archs}
    for arch in after["b10-s0.json"]["evaluation"]["hard"]["archs"]:
        expected = want[(arch["image_encoder"], arch["text_encoder"])]
        assert {k: arch[k] for k in expected} == expected


def test_a_second_archs_all_run_skips_the_extended_cells(extended: Extended, tmp_path: Path) -> None:
    out = copy_of(extended.out, tmp_path)
    before = {p.name: p.read_bytes() for p in folder(out).glob("b10-s*.json")}
    grid, said = run(out, "all")
    assert not grid.outcomes and "evaluate" not in grid.stages
    assert sum(line.startswith("skip random shapes budget=10") for line in said) == 2
    assert {p.name: p.read_bytes() for p in folder(out).glob("b10-s*.json")} == before


def test_a_missing_saved_set_fails_that_cell_only(source_runs: Path, tmp_path: Path) -> None:
    out = copy_of(source_runs, tmp_path)
    result = folder(out) / "b10-s0.json"
    before = result.read_bytes()
    for path in (folder(out) / "sets").glob("b10-s0.*"):
        path.unlink()
    plan = describe_plan(load_protocol("smoke"), RunConfig(**GRID, archs="all", out=out))
    assert plan.count("to extend: 3 encoder pair(s), saved set missing") == 1
    grid, said = run(out, "all")
    status = {o.job.cell.seed: o for o in grid.outcomes}
    assert status[0].status == FAILED and status[1].status == DONE  # the rest of the grid went on
    error = status[0].error
    assert error is not None and "\n" not in error
    assert str(folder(out) / "sets" / "b10-s0.safetensors") in error
    assert "--redistill-missing-sets" in error and "--archs source" in error
    assert (folder(out) / "b10-s0.error.txt").read_text() == error + "\n"
    assert result.read_bytes() == before
    assert len(json.loads((folder(out) / "b10-s1.json").read_text())["evaluation"]["hard"]["archs"]) == 4
    message = grid.failure_message()
    assert message is not None and "random/b10-s0" in message


def test_redistill_reruns_a_setless_cell_whole(
    source_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = copy_of(source_runs, tmp_path)
    result = folder(out) / "b10-s0.json"
    before = result.read_bytes()
    for path in (folder(out) / "sets").glob("b10-s0.*"):
        path.unlink()
    protocol = load_protocol("smoke")
    config = RunConfig(**GRID, archs="all", out=out, repetitions=1, redistill=True)
    plan = describe_plan(protocol, config)
    assert plan.count("to re-run whole") == 1 and plan.count("to extend: 3 encoder pair(s)") == 1

    from mdd_bench.run import execute

    def broken(*args, **kwargs):
        raise RuntimeError("distillation broke")

    with monkeypatch.context() as patch:  # a re-run that fails keeps the finished result
        patch.setattr(execute, "run_cell", broken)
        grid = execute_grid(protocol, config, log=lambda _: None, progress=False)
    assert {o.job.cell.seed: o.status for o in grid.outcomes} == {0: FAILED, 1: DONE}  # 1 is extended
    assert result.read_bytes() == before

    said: list[str] = []
    grid = execute_grid(protocol, config, log=said.append, progress=False)
    assert {o.job.cell.seed: o.status for o in grid.outcomes} == {0: DONE}
    assert any(line.startswith("redo random shapes budget=10 seed=0") for line in said)
    old, new = json.loads(before), json.loads(result.read_text())
    for track, entry in new["evaluation"].items():
        assert len(entry["archs"]) == 4 and MARKER not in json.dumps(entry)  # distilled and evaluated anew
        # random pairs are a function of the seed: the source pair scores what it scored before
        assert source(entry)["mean"] == source(old["evaluation"][track])["mean"]
    assert (folder(out) / "sets" / "b10-s0.safetensors").is_file()
    again, _ = run(out, "all")
    assert not again.outcomes


def test_dry_run_lists_extensions_and_their_work(source_runs: Path, extended: Extended) -> None:
    protocol = load_protocol("smoke")
    plan = describe_plan(protocol, RunConfig(**GRID, archs="all", out=source_runs))
    assert "2 to extend" in plan and plan.count("to extend: 3 encoder pair(s)") == 2
    # 3 pairs x 1 recorded repetition per cell; no distillation.
    assert "estimate: 0 distillation(s), 2 extension(s) from saved sets; 6 evaluation training(s)" in plan
    assert "to extend" not in describe_plan(protocol, RunConfig(**GRID, archs="source", out=source_runs))
    done = describe_plan(protocol, RunConfig(**GRID, archs="all", out=extended.out))
    assert "2 done, 0 to run" in done and "to extend" not in done


def test_evaluating_a_pair_outside_the_protocol_grid_is_an_error(smoke) -> None:
    protocol, dataset = smoke
    evaluator = Evaluator(Workspace(protocol, dataset, "cpu", progress=False))
    assert evaluator.pairs_of("all", [("test_resnet", "minilm")]) == [("test_resnet", "minilm")]
    with pytest.raises(MddError, match="not in the grid of protocol 'smoke'"):
        evaluator.pairs_of("source", [("test_resnet", "nope")])


def test_redistill_without_archs_all_is_an_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mdd_bench.cli import cli

    args = ["run", "--protocol", "smoke", "--methods", "random", "--budgets", "10", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--redistill-missing-sets", "--dry-run"])
    assert result.exit_code != 0 and "--redistill-missing-sets only acts with --archs all" in result.output
    assert not any(tmp_path.iterdir())  # nothing planned, nothing written
