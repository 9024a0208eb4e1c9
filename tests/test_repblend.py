"""RepBlend: blending on hand-made tensors, the frozen-backbone towers, its student step checked against an
independent computation, a cell end to end, and the native track's learned-lr policy."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from mdd_bench.api import DistillContext
from mdd_bench.cli import cli
from mdd_bench.distill.blend import BlendPlan, BlendSampler, blend_pair, draw_plan
from mdd_bench.distilled import DistilledSet
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import Evaluator
from mdd_bench.evaluation.training import Recipe, train_dual
from mdd_bench.methods.lors import PAPER as LORS_PAPER
from mdd_bench.methods.repblend import RepBlend
from mdd_bench.models.dual import BACKBONE, FROZEN, weighted_bce
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace
from mdd_bench.workspace.pairs import TensorPairs

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

# ------------------------------------------------------------------------------ blending, hand-made


def test_blend_is_the_convex_combination_with_the_partner_row() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    plan = BlendPlan(0.25, torch.tensor([2, 0, 1]))
    # row i = 0.25 x_i + 0.75 x_perm(i), worked out by hand
    expected = torch.tensor([[3.25, 3.0], [0.75, 0.5], [1.0, 2.5]])
    assert torch.allclose(plan.apply(x), expected)
    # every blended row lies on the segment between its row and its partner
    for i, j in enumerate(plan.perm.tolist()):
        assert torch.allclose(plan.apply(x)[i], x[i] + 0.75 * (x[j] - x[i]))


def test_blend_gradient_reaches_the_row_and_its_partner() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    plan = BlendPlan(0.3, torch.tensor([1, 2, 3, 0]))
    (grad,) = torch.autograd.grad(plan.apply(x)[0].sum(), x)
    expected = torch.zeros(4, 3)
    expected[0], expected[1] = 0.3, 0.7
    assert torch.allclose(grad, expected)


def test_both_modalities_share_one_lambda_and_one_permutation() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(6, 4, generator=generator)
    mapping = torch.randn(4, 5, generator=generator)
    texts = images @ mapping  # text row i is a linear function of image row i
    plan = draw_plan(6, 1.0, np.random.default_rng(3))
    assert 0.0 < plan.lam < 1.0 and plan.perm.tolist() != list(range(6))
    mixed_images, mixed_texts = blend_pair(images, texts, plan)
    # the same (lam, perm) on both sides keeps the linear relation row by row
    assert torch.allclose(mixed_texts, mixed_images @ mapping, atol=1e-5)
    for x, mixed in ((images, mixed_images), (texts, mixed_texts)):
        for i, j in enumerate(plan.perm.tolist()):
            assert torch.allclose(mixed[i], plan.lam * x[i] + (1 - plan.lam) * x[j], atol=1e-6)


def test_lambda_follows_beta_alpha_alpha_and_perm_is_a_permutation() -> None:
    rng = np.random.default_rng(0)
    uniform = [draw_plan(5, 1.0, rng) for _ in range(4000)]
    lams = np.array([p.lam for p in uniform])
    assert ((lams > 0) & (lams < 1)).all()
    assert abs(lams.mean() - 0.5) < 0.02 and abs((lams < 0.1).mean() - 0.1) < 0.02  # Beta(1, 1) = U(0, 1)
    assert all(sorted(p.perm.tolist()) == list(range(5)) for p in uniform[:100])
    # Beta(0.2, 0.2) puts its mass near 0 and 1: P(0.1 < lam < 0.9) = 0.3266 (its CDF); U(0, 1): 0.8
    peaked = np.array([draw_plan(5, 0.2, rng).lam for _ in range(4000)])
    assert abs(((peaked > 0.1) & (peaked < 0.9)).mean() - 0.3266) < 0.03
    # a seeded sampler repeats its plans
    one, two = BlendSampler(1.0, 7), BlendSampler(1.0, 7)
    batches = [torch.arange(4), torch.arange(4)]
    for a, b in zip(one.plans(batches), two.plans(batches), strict=True):
        assert a.lam == b.lam and torch.equal(a.perm, b.perm)


def test_degenerate_blends() -> None:
    x = torch.randn(3, 2)
    off = draw_plan(3, 0.0, np.random.default_rng(0))  # alpha <= 0: blending off
    assert off.lam == 1.0 and off.perm.tolist() == [0, 1, 2] and off.apply(x) is x
    single = draw_plan(1, 1.0, np.random.default_rng(0))  # one row: its own partner
    assert torch.allclose(single.apply(x[:1]), x[:1])
    with pytest.raises(MddError, match="rows"):
        blend_pair(torch.randn(3, 2), torch.randn(4, 2), off)
    with pytest.raises(MddError, match="applied to 4"):
        off.apply(torch.randn(4, 2))
    with pytest.raises(MddError, match="at least one row"):
        draw_plan(0, 1.0, np.random.default_rng(0))


# ------------------------------------------------------------------------------ frozen towers


def test_frozen_towers_train_only_the_heads(smoke) -> None:
    protocol, dataset = smoke
    ws = Workspace(protocol, dataset, progress=False)
    # test_resnet has BatchNorm: a frozen encoder must keep its running statistics too
    model = ws.fresh_model(0, "test_resnet", text_dim=8, towers=FROZEN)
    assert model.towers == FROZEN
    assert all(n.startswith("image_projection.") for n, _ in model.trained_parameters("image"))
    assert all(n.startswith("text_projection.") for n, _ in model.trained_parameters("text"))
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not model.train().image_encoder.training and model.image_projection.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    images, texts = torch.randn(16, 3, 32, 32, generator=generator), torch.randn(16, 8, generator=generator)
    pairs = TensorPairs(images, texts)
    train_dual(model, pairs, Recipe(epochs=2, lr_img=0.1, lr_txt=0.1, batch_size=8), seed=0)
    after = model.state_dict()
    backbone = [k for k in before if k.startswith("image_encoder.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(before[k], after[k]) for k in backbone)
    heads = [k for k in before if k.startswith(("image_projection.", "text_projection."))]
    assert heads and all(not torch.equal(before[k], after[k]) for k in heads)


def test_default_towers_are_unchanged(smoke) -> None:
    protocol, dataset = smoke
    model = Workspace(protocol, dataset, progress=False).fresh_model(0)
    assert model.towers == BACKBONE and isinstance(model.image_projection, torch.nn.Identity)
    names = [n for n, _ in model.trained_parameters("image")]
    assert names == [f"image_encoder.{n}" for n, _ in model.image_encoder.named_parameters()]


# ------------------------------------------------------------------------------ the student step


@pytest.fixture(scope="module")
def run(smoke):
    protocol, dataset = smoke
    ctx = DistillContext(protocol, dataset, seed=0, progress=False)
    return RepBlend.for_protocol(protocol).make_run(ctx, 10)


def test_student_step_blends_the_heads_inputs_and_keeps_the_target(run) -> None:
    run.student.model.eval()  # no dropout: the independent computation below must see the same network
    with torch.no_grad():
        run.similarity.right.normal_()  # a target that is not the identity
    batches = run.schedule.steps(2)
    plans = copy.deepcopy(run.blends).plans(batches)  # the plans step_losses is about to draw
    loss_at, trajectory_loss = run.step_losses(batches)
    _, _, theta, _ = run.sampler.next()
    idx, plan = batches[0], plans[0]
    assert 0.0 < plan.lam < 1.0 and plan.perm.tolist() != list(range(len(idx)))

    # independently: a copy of the network with the heads at theta, the encoder's features by hand
    net = copy.deepcopy(run.student.model).eval()
    net.load_state_dict({k: v.detach() for k, v in run.student.params(theta).items()}, strict=False)
    with torch.no_grad():
        f, t = net.image_encoder(run.syn.images[idx]), run.syn.texts[idx]
        lam, perm = plan.lam, plan.perm
        u = F.normalize(net.image_projection(lam * f + (1 - lam) * f[perm]), dim=-1)
        v = F.normalize(net.text_projection(lam * t + (1 - lam) * t[perm]), dim=-1)
        logits = run.scale * u @ v.T
        target = run.similarity.block(idx)
        expected = weighted_bce(logits, target)
        blended_target = lam * target + (1 - lam) * target[perm][:, perm]
    assert float(loss_at(theta, 0).detach()) == pytest.approx(float(expected), rel=1e-5)
    assert float(weighted_bce(logits, blended_target)) != pytest.approx(float(expected), rel=1e-3)

    # the trajectory pass's closure: the same loss and theta-gradient, no graph to the data
    live = {m: x.detach().clone().requires_grad_(True) for m, x in theta.items()}
    full = torch.autograd.grad(loss_at(live, 1), list(live.values()))
    cheap_loss = trajectory_loss(live, 1)
    cheap = torch.autograd.grad(cheap_loss, list(live.values()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, cheap, strict=True))
    pixels = torch.autograd.grad(trajectory_loss(live, 1), [run.syn.images], allow_unused=True)[0]
    assert pixels is None

    # the data gradient reaches the batch's pixels (each row and its partner) through the frozen
    # encoder, and no other row
    grad = torch.autograd.grad(loss_at(theta, 0), [run.syn.images])[0]
    touched = grad.flatten(1).abs().sum(1) > 0
    assert touched[idx].all() and int(touched.sum()) == len(idx)
    run.student.model.train()


def test_an_iteration_moves_data_and_never_the_frozen_encoder(run, smoke) -> None:
    protocol, dataset = smoke
    anchor = Workspace(protocol, dataset, progress=False).image_encoder().state_dict()
    images = run.syn.images.detach().clone()
    run.step()
    assert not torch.equal(images, run.syn.images.detach())
    encoder = run.student.model.image_encoder.state_dict()
    assert all(torch.equal(anchor[k], encoder[k]) for k in anchor)
    head = run.student.model.image_projection
    assert run.student.size("image") == sum(p.numel() for p in head.parameters())


# ------------------------------------------------------------------------------ settings


def test_paper_settings_are_the_repblend_scripts() -> None:
    paper = load_protocol("paper")
    for dataset, budget in [("flickr30k", 100), ("flickr30k", 500), ("coco", 200), ("coco", 500)]:
        hp = RepBlend.for_protocol(paper.with_dataset(dataset), budget=budget).hparams
        family = "coco" if dataset == "coco" else "flickr"
        lors = LORS_PAPER[(family, budget)]
        assert (hp.lr_img, hp.lr_sim, hp.sim_rank, hp.sim_alpha) == tuple(
            lors[k] for k in ("lr_img", "lr_sim", "sim_rank", "sim_alpha")
        )
        # the run length is the protocol's [distill] rule, the same for every method
        assert hp.syn_batch == 20 and hp.iterations is None and hp.blend_alpha == 1.0
    coco500 = RepBlend.for_protocol(paper.with_dataset("coco"), budget=500).hparams
    assert coco500.normaliser == "shared" and coco500.temperature == 0.1 and coco500.lr_img == 5000.0
    # the frozen paper protocol inherits the same settings
    frozen = RepBlend.for_protocol(load_protocol("paper-frozen").with_dataset("coco"), budget=500).hparams
    assert frozen == coco500
    cpu = RepBlend.for_protocol(load_protocol("cpu-frozen")).hparams
    # cpu-frozen inherits cpu's: LoRS's settings with the data lrs RepBlend's val probes chose
    assert (cpu.iterations, cpu.lr_img, cpu.lr_txt, cpu.lr_sim, cpu.blend_alpha) == (None, 3.0, 3.0, 1.0, 1.0)


# ------------------------------------------------------------------------------ end to end


def test_repblend_cell_distils_n_pairs_and_evaluates_on_both_tracks_and_protocols(tmp_path, smoke) -> None:
    out = tmp_path / "runs"
    args = ["run", "--methods", "repblend", "--protocol", "smoke", "--budgets", "10", "--out", str(out),
            "--tracks", "hard,native", "--repetitions", "1", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    (path,) = [p for p in out.rglob("b10-s0.json") if p.parent.name == "repblend"]  # random/: its baseline
    record = json.loads(path.read_text())
    assert record["distill"]["iterations"] == 3
    baseline = record["evaluation"]["native"]["random_baseline"]  # random pairs with the same kind of help
    assert set(baseline["extras_used"]) == {"similarity", "loss:wbce"}
    distilled = DistilledSet.load(record["distilled_set"])
    assert distilled.size == 10 and distilled.towers == FROZEN
    assert {"lr_img", "lr_txt", "sim_diag", "sim_left", "sim_right", "sim_alpha"} <= set(distilled.extras)
    # smoke evaluates the encoder + text head: the heads' learned step sizes do not apply there
    assert record["evaluation"]["hard"]["extras_used"] == []
    assert set(record["evaluation"]["native"]["extras_used"]) == {"similarity", "loss:wbce"}
    assert record["evaluation"]["native"]["recipe"]["lr_img"] == load_protocol("smoke").eval.lr_img
    # under smoke-frozen (the heads on a frozen encoder) they do
    _, dataset = smoke
    frozen = Evaluator(Workspace(load_protocol("smoke-frozen"), dataset, progress=False))
    native = frozen.evaluate(distilled, "source", "native", repetitions=1)
    assert set(native.extras_used) == {"learned_lr", "similarity", "loss:wbce"}
    assert native.recipe["lr_img"] == pytest.approx(float(distilled.extras["lr_img"]))
    hard = frozen.evaluate(distilled, "source", "hard", repetitions=1)
    assert hard.extras_used == [] and 0 <= hard.source().mean["mean"] <= 100


def test_learned_lrs_are_used_only_when_the_evaluation_trains_what_the_student_did(smoke) -> None:
    _, dataset = smoke
    extras = {"lr_img": torch.tensor(0.02), "lr_txt": torch.tensor(0.3)}
    images, texts = torch.zeros(4, 3, 32, 32), torch.zeros(4, 384)
    lors_like = DistilledSet(images, texts, extras, {"towers": BACKBONE})
    old = DistilledSet(images, texts, extras, {})  # sets written before the key: the encoder's lrs
    repblend_like = DistilledSet(images, texts, extras, {"towers": FROZEN})
    for name, used, unused in (("smoke", (lors_like, old), repblend_like),
                               ("smoke-frozen", (repblend_like,), lors_like)):  # fmt: skip
        protocol = load_protocol(name)
        evaluator = Evaluator(Workspace(protocol, dataset, progress=False))
        for s in used:
            recipe, extras_used = evaluator.recipe_for(s, "native")
            assert "learned_lr" in extras_used
            assert (recipe.lr_img, recipe.lr_txt) == pytest.approx((0.02, 0.3))
        recipe, extras_used = evaluator.recipe_for(unused, "native")
        assert "learned_lr" not in extras_used
        assert (recipe.lr_img, recipe.lr_txt) == (protocol.eval.lr_img, protocol.eval.lr_txt)


def test_dry_run_names_the_head_experts(tmp_path) -> None:
    args = ["run", "--methods", "repblend", "--protocol", "smoke", "--budgets", "10",
            "--out", str(tmp_path / "runs"), "--dry-run"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "head experts (frozen image encoder) (shapes)" in result.output
