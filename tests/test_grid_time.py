"""grid_time: a cell's cost from its recorded stages, else its log's last finished attempt, else an
estimate from its evaluation count; the full-data upper bound is left out."""

import json
from pathlib import Path

import pytest
from bench_scripts import load_bench

grid_time = load_bench("grid_time")

BENCH_EVAL = """# python benchmarks/bench_eval.py ...
cpu img + txt: one repetition of a 100-pair set (100 epochs + test scoring) takes 10.0-30.0 s with 2 threads
cpu img2 + txt: one repetition of a 100-pair set (100 epochs + test scoring) takes 4.0-4.5 s with 2 threads
cpu img + txt: one repetition of a 200-pair set (100 epochs + test scoring) takes 20.0-21.0 s with 2 threads
"""


def arch(image, seeds, source=False):
    return {"image_encoder": image, "text_encoder": "txt", "source": source, "seeds": seeds}


def write(folder: Path, name: str, result: dict, log: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(result))
    if log is not None:
        (folder / f"{name}.log").write_text(log)


def test_recorded_then_log_then_estimate(tmp_path):
    runs = tmp_path / "runs" / "cpu" / "shapes"
    write(
        runs / "mdm",
        "b100-s0",
        {"method": "mdm", "budget": 100, "stages_s": {"distill": 30.0, "evaluate": 50.0}},
    )
    failed_then_done = (
        "T start lors budget=100\nT   distill: 999.0 s\nT failed\n"  # an earlier attempt: not counted
        "T start lors budget=100\nT   text features: 1.0 s\nT   distill: 600.0 s\nT   evaluate: 55.0 s\n"
        "T   evaluate: 54.0 s\nT   random baseline: 50.0 s\nT done: x.json\n"
    )
    write(runs / "lors", "b100-s0", {"method": "lors", "budget": 100}, failed_then_done)
    old = {"method": "random", "budget": 200, "distill": {"seconds": 0.5}, "evaluation": {
        "hard": {"archs": [arch("img", [0, 1, 2], source=True)]},
        "native": {"same_as": "hard", "archs": [arch("img", [0, 1, 2], source=True)]},
    }}  # fmt: skip
    write(runs / "random", "b200-s0", old)
    unseen = {"method": "random", "budget": 200, "distill": {"seconds": 0.0}, "evaluation": {
        "hard": {"archs": [arch("img", [0], source=True), arch("img2", [0, 1])]}}}  # fmt: skip
    write(runs / "random", "b200-s1", unseen)
    write(
        runs / "full-data",
        "b20000-s0",
        {"method": "full-data", "budget": 20000, "distill": {"seconds": None}},
    )
    (tmp_path / "bench_eval.txt").write_text(BENCH_EVAL)

    t = grid_time.grid_time(tmp_path / "runs", tmp_path / "bench_eval.txt")
    assert dict(t.cells) == {"recorded": 1, "log": 1, "estimated": 2, "untimed upper bound": 1}
    # b200-s0: 3 repetitions x 20 s (the faster of the 200-pair runs), the same_as copy costs nothing.
    # b200-s1: source 1 x 20 s, img2 2 x 4.0 s scaled by the source pair's 200/100 ratio (2x) = 16 s.
    assert t.estimated_s == pytest.approx(60.0 + 20.0 + 16.0)
    assert t.seconds["distill"] == pytest.approx(30.0 + 600.0 + 0.5)
    assert t.seconds["evaluate"] == pytest.approx(50.0 + 109.0 + 96.0)
    assert t.seconds["random baseline"] == pytest.approx(50.0)
    assert "4 result files took" in grid_time.sentence(t)


def test_an_unfinished_last_attempt_is_not_a_cost_record(tmp_path):
    log = tmp_path / "b100-s0.log"
    log.write_text("T start m\nT   distill: 5.0 s\nT done: x\nT start m\nT   distill: 7.0 s\n")
    assert grid_time.log_stages(log) is None
    assert grid_time.log_stages(tmp_path / "missing.log") is None


def test_tuning_hours_sum_each_methods_studies(tmp_path: Path) -> None:
    summary, frozen = tmp_path / "summary.json", tmp_path / "frozen.json"
    studies = [
        {"method": "mdm", "budget": 100, "cpu_hours": 1.25, "wall_hours": 0.75},
        {"method": "mdm", "budget": 200, "cpu_hours": 2.0, "wall_hours": None},  # a study still starting
        {"method": "lors", "budget": 100, "cpu_hours": 3.5, "wall_hours": 2.0},
    ]
    summary.write_text(json.dumps({"studies": studies}))
    frozen.write_text(json.dumps({"studies": [{"method": "lors", "budget": 100, "cpu_hours": 1.0}]}))
    hours = grid_time.tuning_hours(summary)
    assert hours == {"mdm": (3.25, 0.75), "lors": (3.5, 2.0)}
    assert grid_time.tuning_hours(summary, frozen)["lors"] == (4.5, 2.0)  # one summary per protocol
    text = grid_time.tuning_sentence(hours)
    assert "6.8 CPU hours" in text and "mdm 3.2" in text and "lors 3.5" in text
    assert "2.8 h of trial wall" in text
    assert "elapsed" not in text and grid_time.tuning_elapsed(summary) is None  # no spans recorded


def test_tuning_elapsed_counts_parallel_trials_once(tmp_path: Path) -> None:
    def row(start: str, end: str | None) -> dict:
        return {"start": f"2026-12-06T{start}", "end": f"2026-12-06T{end}" if end else None}

    one = {"method": "mtt-vl", "cpu_hours": 1.0,
           "rows": [row("01:00:00", "01:30:00"), row("01:10:00", "01:50:00")]}  # fmt: skip
    # the next study's first trial starts beside the last one (10 min overlap), then a gap of an hour;
    # an interrupted trial (no end) is not counted
    two = {"method": "tesla", "cpu_hours": 1.0, "rows": [
        row("01:40:00", "02:00:00"), row("03:00:00", "03:15:00"), row("03:20:00", None)]}  # fmt: skip
    summary, other = tmp_path / "a.json", tmp_path / "b.json"
    summary.write_text(json.dumps({"studies": [one]}))
    other.write_text(json.dumps({"studies": [two]}))
    # independent: 01:00-02:00 merged (60 min) + 03:00-03:15 (15 min)
    assert grid_time.tuning_elapsed(summary, other) == 75 / 60
    assert grid_time.tuning_elapsed(summary) == 50 / 60
    text = grid_time.tuning_sentence(grid_time.tuning_hours(summary, other), 1.25)
    assert "1.2 h elapsed on the same machine" in text  # 1.25 rounds to even


def test_cells_run_in_parallel_count_once_in_the_elapsed_time(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "cpu" / "shapes"
    for name, method, created in (
        ("b100-s0", "lors", "2026-12-06T02:00:00+00:00"),  # 01:00-02:00
        ("b100-s1", "lors", "2026-12-06T02:30:00+00:00"),  # 01:30-02:30, beside the first
        ("b100-s0", "tesla", "2026-12-06T05:00:00+00:00"),  # 04:00-05:00, after a gap
    ):
        write(runs / method, name, {"method": method, "budget": 100, "created": created,
                                    "stages_s": {"distill": 2400.0, "evaluate": 1200.0}})  # fmt: skip
    write(runs / "mdm", "b100-s0", {"method": "mdm", "budget": 100, "created": "2026-12-06T09:00:00+00:00"})
    t = grid_time.grid_time(tmp_path / "runs", tmp_path / "none.txt")
    assert len(t.spans) == 3  # the estimated cell has no recorded span
    assert grid_time.union_hours(t.spans) == pytest.approx(2.5)  # 01:00-02:30 and 04:00-05:00
    assert "took 3.0 h summed and 2.5 h of elapsed time" in grid_time.sentence(t)
    assert grid_time.union_hours([]) is None
