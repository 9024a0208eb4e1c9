"""`mdd-bench tune` on `smoke`: a planted optimum found, equal trials enforced, a SIGKILL resumed without
repeating a finished trial, a NaN trial recorded as failed, a third-party plugin's search space used,
tuned values applied (defaults < tuned < --set) and recorded, and bad search spaces as one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.errors import MddError
from mdd_bench.protocol import load_protocol
from mdd_bench.registry import get_method
from mdd_bench.search_space import Choice, Float, Int, check_space
from mdd_bench.tuned import read_tuned

# A third-party method with a planted objective: its set's val score is 100 - 100 (x - 0.3)^2, read
# by the context's val hook it replaces (the tuner, not the evaluator, is under test here). x > 0.9
# makes the loss NaN. Each distillation appends its x to $PLANTED_LOG; $PLANTED_SLEEP slows it; it
# creates the file $PLANTED_TOUCH.
PLANTED = """
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from mdd_bench.api import DistillContext, HParams, Method
from mdd_bench.distill.loop import DistillLoop
from mdd_bench.distill.synthetic import SyntheticSet
from mdd_bench.search_space import Choice, Float


@dataclass
class PlantedHParams(HParams):
    x: float = 0.5
    flavour: str = "plain"
    iterations: int | None = None


class Planted(Method):
    name = "planted"
    family = "test"
    hparams_class = PlantedHParams
    search_space: ClassVar[dict[str, Any]] = {
        "smoke": {"x": Float(0.0, 1.0), "flavour": Choice(("plain", "salty"))}
    }

    def distill(self, ctx: DistillContext, budget: int):
        x = self.hparams.x
        if os.environ.get("PLANTED_LOG"):
            with open(os.environ["PLANTED_LOG"], "a") as fh:
                fh.write(f"{x!r}\\n")
        time.sleep(float(os.environ.get("PLANTED_SLEEP", "0")))
        if os.environ.get("PLANTED_TOUCH"):  # e.g. the tuner's drain file, made while a trial runs
            open(os.environ["PLANTED_TOUCH"], "a").close()
        score = 100.0 - 100.0 * (x - 0.3) ** 2
        ctx.val_runs = lambda distilled, track="hard", repetitions=1, first=0: [score] * repetitions
        syn = SyntheticSet(*ctx.real_pairs(list(range(budget))), ctx.device)
        return DistillLoop(ctx, syn, self.hparams.iterations, {}, desc="planted").run(
            lambda it: float("nan") if x > 0.9 else 0.0
        )
"""


@pytest.fixture
def planted(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "planted_plugin").mkdir(parents=True)
    (site / "planted_plugin" / "__init__.py").write_text(textwrap.dedent(PLANTED))
    dist = site / "planted_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: planted-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mdd_bench.methods]\nplanted = planted_plugin:Planted\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("planted_plugin", None)


def protocol_file(tmp_path: Path, trials: int, pruner: str = "none") -> Path:
    path = tmp_path / f"tune-{trials}.toml"
    path.write_text(
        'base = "smoke"\nname = "smoke-tune"\n[tuning]\n'
        f'trials = {trials}\nseeds = [100]\npruner = "{pruner}"\nstartup_trials = 4\n'
    )
    return path


def tune_args(proto: Path, out: Path, methods: str = "planted", budgets: str = "10") -> list[str]:
    return ["tune", "--methods", methods, "--protocol", str(proto), "--budgets", budgets, "--out", str(out),
            "--no-progress", "--device", "cpu"]  # fmt: skip


def study_trials(out: Path, name: str = "shapes-planted-b10") -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "studies" / f"{name}.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def test_the_tuner_finds_a_planted_optimum_of_a_plugins_space_and_run_applies_it(planted, tmp_path):
    proto, out = protocol_file(tmp_path, 14), tmp_path / "tune"
    result = CliRunner().invoke(cli, tune_args(proto, out, "planted,random"))
    assert result.exit_code == 0, result.output
    assert "random: nothing to tune" in result.output and "0 trials" in result.output
    tuned = read_tuned(out / "tuned.toml")
    entry = tuned.get("shapes", "planted", 10)
    assert entry is not None and entry.trials == 14 and entry.complete + entry.pruned + entry.failed == 14
    assert abs(entry.values["x"] - 0.3) < 0.1, entry.values  # within its 14 trials
    assert entry.best_val == pytest.approx(100 - 100 * (entry.values["x"] - 0.3) ** 2, abs=1e-3)
    assert entry.values["flavour"] in ("plain", "salty")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trials"] == 14 and summary["studies"][0]["method"] == "planted"
    # Each finished trial names the cached artifacts it read: the planted method reads the text features.
    finished = [t for t in study_trials(out) if t.state == optuna.trial.TrialState.COMPLETE]
    assert finished and all(any(a.startswith("text/") for a in t.user_attrs["artifacts"]) for t in finished)
    # Applied after the defaults and before --set, and recorded.
    protocol = load_protocol(proto)
    method = get_method("planted").for_protocol(protocol, {}, 10, tuned=out / "tuned.toml")
    assert method.hparams.x == entry.values["x"] and method.tuning.trial == entry.trial
    overridden = get_method("planted").for_protocol(protocol, {"x": "0.7"}, 10, tuned=out / "tuned.toml")
    assert overridden.hparams.x == 0.7
    assert get_method("planted").for_protocol(protocol, {}, 20, tuned=out / "tuned.toml").tuning is None
    run = tmp_path / "runs"
    args = ["run", "--protocol", str(proto), "--methods", "planted", "--budgets", "10", "--out", str(run),
            "--tuned", str(out / "tuned.toml"), "--no-random-baseline", "--tracks", "hard", "--no-report",
            "--device", "cpu"]  # fmt: skip
    ran = CliRunner().invoke(cli, args)
    assert ran.exit_code == 0, ran.output
    record = json.loads(next(run.rglob("planted/b10-s0.json")).read_text())
    assert record["hparams"]["x"] == entry.values["x"]
    assert record["tuning"]["trial"] == entry.trial and record["tuning"]["trials"] == 14
    assert record["tuning"]["best_val"] == entry.best_val


def test_the_trial_count_is_the_protocols_for_every_method(planted, tmp_path):
    proto = protocol_file(tmp_path, 3)
    result = CliRunner().invoke(cli, [*tune_args(proto, tmp_path / "t"), "--trials", "5"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "--trials 5: protocol 'smoke-tune' fixes 3 trials per method and budget" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_nan_trial_is_recorded_as_failed_and_counts(planted, tmp_path):
    proto, out = protocol_file(tmp_path, 6), tmp_path / "nan"
    # The first two trials in the NaN region (x > 0.9), by queueing them.
    from mdd_bench.tuning.studies import open_study

    name, meta = "shapes-planted-b10", {"dataset": "shapes", "method": "planted", "budget": 10}
    study = open_study(out / "studies" / f"{name}.journal", name, load_protocol(proto), meta=meta)
    study.enqueue_trial({"x": 0.95, "flavour": "plain"})
    study.enqueue_trial({"x": 0.97, "flavour": "salty"})
    result = CliRunner().invoke(cli, tune_args(proto, out))
    assert result.exit_code == 0, result.output
    trials = study_trials(out)
    failed = [t for t in trials if t.user_attrs.get("failed")]
    assert all(t.state == optuna.trial.TrialState.PRUNED for t in failed)  # so TPE learns from them
    assert [t.params["x"] for t in failed][:2] == [0.95, 0.97]
    assert "the loss became nan" in failed[0].user_attrs["error"]
    entry = read_tuned(out / "tuned.toml").get("shapes", "planted", 10)
    assert entry.failed >= 2 and entry.trials == 6
    # --status runs nothing, summarises what the studies hold and writes nothing to their journals (the
    # committed journals would otherwise grow with every status call).
    journal = out / "studies" / "shapes-planted-b10.journal"
    before = journal.read_bytes()
    status = CliRunner().invoke(cli, [*tune_args(proto, out), "--status"])
    assert status.exit_code == 0, status.output
    assert "shapes-planted-b10" in status.output and len(study_trials(out)) == len(trials)
    assert journal.read_bytes() == before


def test_sigkill_mid_study_then_rerun_finishes_without_repeating_a_finished_trial(
    planted, tmp_path, bench_home
):
    proto, out, log = protocol_file(tmp_path, 6), tmp_path / "killed", tmp_path / "distills.log"
    env = {**os.environ, "PYTHONPATH": str(planted), "MDD_BENCH_HOME": str(bench_home), "PLANTED_SLEEP": "2",
           "PLANTED_LOG": str(log)}  # fmt: skip
    command = [sys.executable, "-m", "mdd_bench.cli", *tune_args(proto, out)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "studies" / "shapes-planted-b10.journal"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill once two trials are finished and a third is running
            if journal.exists():
                done = [t for t in study_trials(out) if t.state.is_finished()]
                if len(done) >= 2 and log.exists() and len(log.read_text().split()) >= 3:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("the tune run did not reach two finished trials in time")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    before = {t.number: (t.state, t.params, t.value) for t in study_trials(out) if t.state.is_finished()}
    running = [t for t in study_trials(out) if t.state == optuna.trial.TrialState.RUNNING]
    assert len(before) >= 2 and len(running) == 1
    log.write_text("")
    env["PLANTED_SLEEP"] = "0"
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"trial(s) [{running[0].number}] were interrupted" in rerun.stdout
    trials = study_trials(out)
    for number, state in before.items():  # finished trials untouched
        t = next(t for t in trials if t.number == number)
        assert (t.state, t.params, t.value) == state
    counted = [t for t in trials if t.state.is_finished() and not t.user_attrs.get("interrupted")]
    assert len(counted) == 6
    # The second run distilled exactly the trials still owed, the interrupted one's parameters first.
    assert len(log.read_text().split()) == 6 - len(before)
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == running[0].number)
    assert retry.params["x"] == running[0].params["x"]


def test_an_unknown_or_mistyped_search_space_key_is_one_line():
    tesla, smoke = get_method("tesla"), load_protocol("smoke")
    hp = tesla.hparams_class
    with pytest.raises(MddError, match="no hyper-parameter 'lr_imgg'. Did you mean 'lr_img'"):
        check_space("tesla", hp, {"lr_imgg": Float(1, 10)}, smoke)
    with pytest.raises(MddError, match="a Float range on a int hyper-parameter; use Int"):
        check_space("tesla", hp, {"syn_steps": Float(1, 10)}, smoke)
    with pytest.raises(MddError, match="a log range needs low > 0"):
        check_space("tesla", hp, {"lr_lr": Float(0, 1e-2, log=True)}, smoke)
    with pytest.raises(MddError, match="'fast' is not a valid"):
        check_space("tesla", hp, {"normaliser": Choice(("shared", "fast"))}, smoke)
    with pytest.raises(MddError, match="low 5.0 must be finite and at most high 1.0"):
        check_space("tesla", hp, {"lr_img": Float(5, 1)}, smoke)
    with pytest.raises(MddError, match="is not a range"):
        check_space("tesla", hp, {"lr_img": (1, 10)}, smoke)
    check_space("tesla", hp, {"syn_steps": Int(1, lambda p, d: p.experts.keep_epochs)}, smoke)


def test_every_built_in_space_checks_and_no_default_sets_the_run_rule():
    from mdd_bench.registry import list_methods

    for name in ("smoke", "cpu", "paper", "cpu-frozen"):
        protocol = load_protocol(name)
        for method, cls in list_methods().items():
            space = cls.search_space_for(protocol)  # checked
            assert "iterations" not in space
            for lineage in protocol.lineage:
                assert "iterations" not in cls.defaults.get(lineage, {}), (method, lineage)
            assert "iterations" not in cls.cell_defaults(protocol.with_dataset("coco"), 200)
    assert get_method("random").search_space_for(load_protocol("cpu")) == {}
    assert "lr_sim" in get_method("lors").search_space_for(load_protocol("cpu"))


def test_tuning_seeds_may_not_be_grid_seeds(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('base = "smoke"\nname = "x"\nseeds = [0, 100]\n')
    with pytest.raises(MddError, match=r"\[tuning\] seeds \[100\] are also grid seeds"):
        load_protocol(path)


def test_a_grid_mixing_tuned_and_untuned_methods_is_refused(planted, tmp_path):
    from mdd_bench.tuned import TunedEntry, write_tuned

    proto = load_protocol("smoke")
    tuned = write_tuned(
        tmp_path / "t.toml", [TunedEntry("shapes", "tesla", 10, {"lr_img": 3.0}, trials=4)], proto
    )
    args = ["run", "--protocol", "smoke", "--methods", "tesla,mdm", "--budgets", "10",
            "--out", str(tmp_path / "r"), "--tuned", str(tuned), "--dry-run"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "tesla run with tuned values and mdm without" in result.output
    assert "--tuned none" in result.output


@pytest.mark.ray
@pytest.mark.slow
def test_ray_runs_trials_in_parallel_and_starts_the_next_study_beside_the_last_trials(
    planted, tmp_path, monkeypatch, bench_home
):
    pytest.importorskip("ray")
    import ray

    # Ray's workers inherit the driver's environment: the plugin and the caches must be found there.
    monkeypatch.setenv("PYTHONPATH", str(planted))
    monkeypatch.setenv("MDD_BENCH_HOME", str(bench_home))
    monkeypatch.setenv("PLANTED_SLEEP", "3")
    proto, out = protocol_file(tmp_path, 3), tmp_path / "ray"
    args = [*tune_args(proto, out, budgets="10,20"), "--executor", "ray", "--workers", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert not ray.is_initialized()
    first, second = study_trials(out), study_trials(out, "shapes-planted-b20")
    for trials in (first, second):
        assert sorted(t.number for t in trials) == [0, 1, 2] and all(t.state.is_finished() for t in trials)
        assert len({t.params["x"] for t in trials}) == 3  # each worker its own draw
    spans = sorted((t.datetime_start, t.datetime_complete) for t in first)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))  # overlap
    # b10's third trial runs alone unless b20's first starts beside it: the second core is not left idle
    assert min(t.datetime_start for t in second) < max(t.datetime_complete for t in first)
    tuned = read_tuned(out / "tuned.toml")
    assert tuned.get("shapes", "planted", 10).trials == tuned.get("shapes", "planted", 20).trials == 3


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_drain_file_lets_running_trials_finish_and_starts_no_new_one(
    planted, tmp_path, monkeypatch, bench_home, executor
):
    """Before a planned stop: the trials running when the file appears finish and are kept; no other
    starts; once the file is gone the same command carries on."""
    if executor == "ray":
        pytest.importorskip("ray")
        monkeypatch.setenv("PYTHONPATH", str(planted))
        monkeypatch.setenv("MDD_BENCH_HOME", str(bench_home))
    drain = tmp_path / "DRAIN"
    monkeypatch.setenv("PLANTED_TOUCH", str(drain))  # the first trials create it as they run
    monkeypatch.setenv("PLANTED_SLEEP", "1")
    proto, out = protocol_file(tmp_path, 4), tmp_path / "drained"
    args = [*tune_args(proto, out), "--executor", executor, "--workers", "2", "--drain-file", str(drain)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "exists: no new trial" in result.output
    trials = study_trials(out)
    started = 1 if executor == "local" else 2  # the ones running when the file appeared
    assert len(trials) == started and all(t.state.is_finished() for t in trials)
    assert not any(t.user_attrs.get("interrupted") for t in trials)
    monkeypatch.delenv("PLANTED_TOUCH")
    drain.unlink()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    trials = study_trials(out)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3] and all(t.state.is_finished() for t in trials)


def test_tuned_values_apply_along_the_lineage_and_only_to_their_protocol_version(tmp_path):
    from mdd_bench.tuned import TunedEntry, packaged_tuned, write_tuned

    smoke, frozen = load_protocol("smoke"), load_protocol("smoke-frozen")
    path = write_tuned(
        tmp_path / "t.toml", [TunedEntry("shapes", "tesla", 10, {"lr_img": 3.0}, trials=4)], smoke
    )
    assert get_method("tesla").for_protocol(smoke, {}, 10, tuned=path).hparams.lr_img == 3.0
    # a protocol inheriting from smoke takes them, as it takes smoke's defaults
    assert get_method("tesla").for_protocol(frozen, {}, 10, tuned=path).tuning.protocol == "smoke"
    with pytest.raises(MddError, match="tuned under protocol 'smoke', which protocol 'cpu' does not inherit"):
        get_method("tesla").for_protocol(load_protocol("cpu").with_dataset("shapes"), {}, 10, tuned=path)
    changed = tmp_path / "changed.toml"
    changed.write_text('base = "smoke"\nname = "smoke"\n[distill]\npatience = 7\n')
    with pytest.raises(MddError, match="tuned under another version of protocol 'smoke'"):
        get_method("tesla").for_protocol(load_protocol(changed), {}, 10, tuned=path)
    # every packaged tuned file is current: its protocol's hash, the protocol's trial count for everyone
    for name in ("smoke", "cpu", "paper", "cpu-frozen"):
        protocol = load_protocol(name)
        packaged = packaged_tuned(protocol)
        if packaged is None or not packaged.source.endswith(f"/{name}.toml"):
            continue
        for entry in packaged.entries.values():
            assert entry.protocol_hash == protocol.hash, (name, entry.method, entry.budget)
            assert entry.trials == protocol.tuning.trials, (name, entry.method, entry.budget)
            assert entry.complete + entry.pruned + entry.failed == entry.trials


def test_cells_finished_under_another_protocol_version_are_named(tmp_path):
    out = tmp_path / "runs"
    old = out / "smoke" / "shapes" / "random" / "b10-s0.json"
    old.parent.mkdir(parents=True)
    record = {"schema": 1, "method": "random", "dataset": "shapes", "protocol": "smoke", "budget": 10,
              "seed": 0, "evaluation": {}, "protocol_hash": "0ld"}  # fmt: skip
    old.write_text(json.dumps(record))
    args = [
        "run",
        "--protocol",
        "smoke",
        "--methods",
        "random",
        "--budgets",
        "10",
        "--out",
        str(out),
        "--dry-run",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "note 1 finished cell(s) were made under another version of protocol 'smoke'" in result.output
