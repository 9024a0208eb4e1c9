"""MDM: its loss as a pure function, gradients to pixels and texts, and its ablation switches."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F

from mdd_bench.api import DistillContext
from mdd_bench.distill import kernel_energy
from mdd_bench.errors import MddError
from mdd_bench.methods.mdm import MDM, MDMHParams, mdm_loss
from mdd_bench.models.dual import infonce
from mdd_bench.protocol import load_protocol
from mdd_bench.tuned import packaged_tuned

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


def _features(seed: int, n: int, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=gen), dim=1), F.normalize(
        torch.randn(n, d, generator=gen), dim=1
    )


def test_loss_is_the_sum_of_the_named_terms() -> None:
    rv, rt = _features(0, 12)
    sv, st = _features(1, 5)
    hp = MDMHParams(w_nce=1.0, w_agr=0.8, w_dis=0.3)
    total, parts = mdm_loss(rv, rt, sv, st, hp, 0.07)
    nce = infonce(sv @ st.T / 0.07)
    agr = kernel_energy(F.normalize(sv + st, dim=1), F.normalize(rv + rt, dim=1), 0.5)
    dis = kernel_energy(F.normalize(sv - st, dim=1), F.normalize(rv - rt, dim=1), 0.5)
    assert float(total) == pytest.approx(float(nce + 0.8 * agr + 0.3 * dis), rel=1e-6)
    assert set(parts) == {"nce", "agr", "dis"}
    for spec, keys in [
        ("nce", {"nce"}),
        ("nce,agr", {"nce", "agr"}),
        ("nce,dis", {"nce", "dis"}),
        ("dis", {"dis"}),
    ]:
        _, parts = mdm_loss(rv, rt, sv, st, dataclasses.replace(hp, loss=spec), 0.07)
        assert set(parts) == keys
    only_nce, _ = mdm_loss(None, None, sv, st, dataclasses.replace(hp, loss="nce"), 0.07)
    assert float(only_nce) == pytest.approx(float(nce), rel=1e-6)
    with pytest.raises(MddError, match="comma list"):
        mdm_loss(rv, rt, sv, st, dataclasses.replace(hp, loss="nce,kl"), 0.07)
    # the statistic and kernel switches change the value they name
    v, _ = mdm_loss(rv, rt, sv, st, dataclasses.replace(hp, loss="dis", sqrt=False), 0.07)
    u, _ = mdm_loss(rv, rt, sv, st, dataclasses.replace(hp, loss="dis", sqrt=False, statistic="u"), 0.07)
    c, _ = mdm_loss(rv, rt, sv, st, dataclasses.replace(hp, loss="dis", sqrt=False, kernel="chordal"), 0.07)
    assert len({round(float(x), 6) for x in (v, u, c)}) == 3


def test_gradients_reach_pixels_and_texts(smoke) -> None:
    protocol, dataset = smoke
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    from mdd_bench.distill import ExpertBank, TeacherSampler

    model = TeacherSampler(ctx.workspace, ExpertBank(ctx.experts(), ctx.device), seed=0).sample()
    real_images, real_texts = ctx.real_pairs(list(range(16)))
    images, texts = ctx.real_pairs(list(range(16, 24)))
    images.requires_grad_(True)
    texts.requires_grad_(True)
    with torch.no_grad():
        rv, rt = model.encode_images(real_images), model.encode_texts(real_texts)
    for spec in ("nce", "agr", "dis"):
        images.grad = texts.grad = None
        loss, _ = mdm_loss(rv, rt, model.encode_images(images), model.encode_texts(texts),
                           MDMHParams(loss=spec), 0.07)  # fmt: skip
        loss.backward()
        assert images.grad is not None and images.grad.abs().sum() > 0, spec
        assert texts.grad is not None and texts.grad.abs().sum() > 0, spec


def _run(smoke, **overrides) -> tuple[torch.Tensor, torch.Tensor, dict]:
    protocol, dataset = smoke
    method = MDM.for_protocol(protocol, {k: str(v) for k, v in overrides.items()})
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    scores = itertools.count()
    ctx.evaluate_on_val = lambda *a, **k: float(next(scores))  # every step "improves": keep the last
    out = method.distill(ctx, 10)
    return out.images, out.texts, {**out.provenance, **ctx.stats.extra, "iters": ctx.stats.iterations}


def test_each_ablation_switch_changes_what_it_names(smoke) -> None:
    base = _run(smoke, iterations=0)
    assert base[2]["iters"] == 0 and base[2]["val_curve"][0][0] == 0
    # data init: different initial pairs (noise: none of them real)
    random_init = _run(smoke, iterations=0, data_init="random")
    assert random_init[2]["init_indices"] != base[2]["init_indices"]
    noise = _run(smoke, iterations=0, data_init="noise")
    assert noise[2]["init_indices"] is None and not torch.equal(noise[0], base[0])
    # model init: same initial set, different teachers -> different synthetic data after the steps
    steps = {"iterations": 2, "lr_img": 100.0}
    merged = _run(smoke, **steps)
    pre = _run(smoke, model_init="pretrained", **steps)
    assert merged[2]["init_indices"] == pre[2]["init_indices"]
    assert not torch.equal(merged[1], pre[1])
    # loss: the terms run are the terms named
    assert set(_run(smoke, loss="nce", **steps)[2]["loss_terms"]) == {"nce"}
    assert set(merged[2]["loss_terms"]) == {"nce", "agr", "dis"}


def test_ablation_groups_are_valid_overrides(smoke) -> None:
    protocol, _ = smoke
    assert set(MDM.ablations) >= {"data-init", "model-init", "loss"}
    for variants in MDM.ablations.values():
        assert sum(1 for v in variants.values() if not v) == 1  # exactly one "as configured" variant
        for overrides in variants.values():
            MDM.for_protocol(protocol, {k: str(v) for k, v in overrides.items()})


def test_ablate_command_writes_group_cells_and_report_tables(tmp_path) -> None:
    from click.testing import CliRunner

    from mdd_bench.cli import cli
    from mdd_bench.report.frame import load_frame
    from mdd_bench.report.tables import ablation_tables

    out = tmp_path / "runs"
    args = ["ablate", "mdm", "--protocol", "smoke", "--groups", "loss", "--budget", "10", "--out", str(out),
            "--set", "mdm.iterations=2", "--repetitions", "1"]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    files = sorted(f for f in out.rglob("b10-s0.json") if f.parent.name != "sets")
    assert len(files) == 4 and all("ablation-loss" in str(f) for f in files)
    assert first.output.count("run  mdm") == 4  # four distinct loss settings
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and again.output.count("skip mdm") == 4
    (table,) = ablation_tables(load_frame(out), "hard")
    labels = [row[0].text for row in table.rows]
    assert labels == list(MDM.ablations["loss"])  # the poster's order
    bad = CliRunner().invoke(cli, ["ablate", "mdm", "--protocol", "smoke", "--groups", "los"])
    assert bad.exit_code != 0 and "Did you mean 'loss'" in bad.output


def test_shared_variants_run_once(tmp_path) -> None:
    from click.testing import CliRunner

    from mdd_bench.cli import cli

    out = tmp_path / "runs"
    sets = ["--set", "mdm.iterations=1", "--repetitions", "1"]
    main = CliRunner().invoke(
        cli, ["run", "--methods", "mdm", "--protocol", "smoke", "--budgets", "10", "--out", str(out), *sets]
    )
    assert main.exit_code == 0, main.output
    args = ["ablate", "mdm", "--protocol", "smoke", "--groups", "optimisation,loss", "--budget", "10",
            "--out", str(out), *sets]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # "MDM" (optimisation) and "+both" (loss) are the configuration of the ordinary run: reused, not rerun
    assert result.output.count("run  mdm") == 4 and result.output.count("same mdm") == 2


def test_a_failing_variant_is_recorded_and_the_others_finish(tmp_path, monkeypatch) -> None:
    """Ablation variants are cells like `mdd-bench run`'s: one that raises leaves an error file and a
    log, the rest finish, the command names it and exits non-zero, and a rerun retries only it."""
    from click.testing import CliRunner

    from mdd_bench.cli import cli

    real = MDM.distill

    def broken_for_nce(self, ctx, budget):
        if self.hparams.loss == "nce":
            raise RuntimeError("synthetic failure of L_NCE")
        return real(self, ctx, budget)

    out = tmp_path / "runs"
    args = ["ablate", "mdm", "--protocol", "smoke", "--groups", "loss", "--budget", "10", "--out", str(out),
            "--set", "mdm.iterations=1", "--repetitions", "1"]  # fmt: skip
    monkeypatch.setattr(MDM, "distill", broken_for_nce)
    first = CliRunner().invoke(cli, args)
    assert first.exit_code != 0 and "1 cell(s) failed: mdm/ablation-loss/L_NCE/b10-s0" in first.output
    folder = out / "smoke" / "shapes" / "mdm" / "ablation-loss"
    assert (folder / "L_NCE" / "b10-s0.error.txt").read_text().startswith("RuntimeError: synthetic failure")
    assert "Traceback" in (folder / "L_NCE" / "b10-s0.log").read_text()
    assert sorted(p.parent.name for p in folder.glob("*/b10-s0.json")) == ["L_agr", "L_dis", "both"]
    monkeypatch.setattr(MDM, "distill", real)
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("run  mdm") == 1 and again.output.count("skip mdm") == 3
    assert (folder / "L_NCE" / "b10-s0.json").exists()
    assert not (folder / "L_NCE" / "b10-s0.error.txt").exists()


def test_cpu_lrs_are_chosen_per_budget() -> None:
    """Untuned, the 500-pair cell has its own lrs (chosen on val at 500); --set still wins over them."""

    cpu = load_protocol("cpu")
    at100, at500 = (MDM.for_protocol(cpu, {}, b, tuned="none").hparams for b in (100, 500))
    assert (at100.lr_img, at100.lr_txt) == (300.0, 30.0) and (at500.lr_img, at500.lr_txt) == (10.0, 1.0)
    assert MDM.for_protocol(cpu, {"lr_img": "5"}, 500, tuned="none").hparams.lr_img == 5.0
    assert MDM.for_protocol(load_protocol("smoke"), {}, 500).hparams.lr_img == 1000.0


def test_cpu_runs_the_packaged_tuned_values() -> None:
    """`mdd-bench run --protocol cpu` applies what `mdd-bench tune` chose (the packaged file), and --set
    still wins over it."""

    cpu = load_protocol("cpu")
    entry = packaged_tuned(cpu).get("shapes", "mdm", 100)
    assert entry is not None and entry.trials == cpu.tuning.trials
    tuned, untuned = (MDM.for_protocol(cpu, {}, 100, tuned=t).hparams for t in ("packaged", "none"))
    assert (tuned.lr_img, tuned.w_agr) == (entry.values["lr_img"], entry.values["w_agr"])
    assert (tuned.lr_img, tuned.w_agr) != (untuned.lr_img, untuned.w_agr)
    assert MDM.for_protocol(cpu, {"w_agr": "0.5"}, 100).hparams.w_agr == 0.5
