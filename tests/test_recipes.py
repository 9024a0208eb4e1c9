"""Per encoder-pair evaluation recipes: protocol entries, the evaluator's use of them, and `tune-eval`."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.errors import MddError
from mdd_bench.evaluation.evaluator import Evaluator, random_pairs, repetition_seeds
from mdd_bench.evaluation.training import Recipe
from mdd_bench.protocol import PairRecipe, load_protocol
from mdd_bench.tuning.recipes import Candidate, TuneConfig, Tuner, recipes_toml
from mdd_bench.workspace import Workspace

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

RECIPES = """
[[eval.recipes]]
image = "test_resnet"
text = "minilm"
lr_img = 0.01
dsa = true

[[eval.recipes]]
image = "test_nfnet"
text = "minilm-l3"
lr_txt = 0.05
epochs = 10
"""


def smoke_with(tmp_path: Path, extra: str) -> Path:
    from importlib import resources

    text = (resources.files("mdd_bench") / "protocols" / "smoke.toml").read_text() + extra
    path = tmp_path / "smoke-recipes.toml"
    path.write_text(text)
    return path


def test_pair_recipes_parse_and_fall_back_to_the_defaults(tmp_path: Path) -> None:
    p = load_protocol(smoke_with(tmp_path, RECIPES))
    assert p.eval.recipes[0] == PairRecipe("test_resnet", "minilm", lr_img=0.01, dsa=True)
    assert p.eval.pair_recipe("test_resnet", "minilm") == {
        "lr_img": 0.01,
        "lr_txt": 0.1,
        "dsa": True,
        "epochs": 5,
    }
    assert p.eval.pair_recipe("test_nfnet", "minilm") == {
        "lr_img": 0.1,
        "lr_txt": 0.1,
        "dsa": False,
        "epochs": 5,
    }
    r = Recipe.from_eval(p, "test_nfnet", "minilm-l3")
    assert (r.lr_img, r.lr_txt, r.epochs) == (0.1, 0.05, 10)
    assert r.lr_decay_epoch == 6  # the decay stays at the same fraction of training (3 of 5)
    assert Recipe.from_eval(p) == Recipe.from_eval(p, "test_nfnet", "minilm")
    assert p.hash != load_protocol("smoke").hash  # recipes are part of the settings results carry


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('[[eval.recipes]]\nimage = "a"\ntext = "b"\nlr = 0.1\n', "unknown key 'lr'"),
        ("[eval]\nrecipes = 3\n", "recipes"),
        ('seeds = [-1]\nname = "x"\nbase = "smoke"\n', "seeds"),
    ],
)
def test_bad_recipe_entries_are_one_line_errors(tmp_path: Path, extra: str, needle: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nbase = "smoke"\n' + extra if not extra.startswith("seeds") else extra)
    with pytest.raises(MddError, match=needle):
        load_protocol(path)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    path = smoke_with(tmp_path_factory.mktemp("p"), RECIPES)
    protocol = load_protocol(path)
    dataset = load_dataset("shapes", protocol, progress=False)
    evaluator = Evaluator(Workspace(protocol, dataset, progress=False))
    distilled = random_pairs(dataset, evaluator.text_embeddings("train"), protocol, 20, seed=0)
    return protocol, dataset, evaluator, distilled


def test_each_pair_trains_with_its_recipe_and_records_it(tuned) -> None:
    protocol, _, evaluator, distilled = tuned
    result = evaluator.evaluate(distilled, archs="all", repetitions=1)
    by_pair = {(a.image_encoder, a.text_encoder): a for a in result.archs}
    assert by_pair[("test_resnet", "minilm")].recipe["lr_img"] == 0.01
    assert by_pair[("test_resnet", "minilm")].recipe["dsa"] is True
    assert by_pair[("test_nfnet", "minilm-l3")].recipe["epochs"] == 10
    assert by_pair[("test_nfnet", "minilm")].recipe["lr_img"] == protocol.eval.lr_img
    assert result.recipe == by_pair[("test_nfnet", "minilm")].recipe


def test_text_encoders_with_one_recipe_share_the_trained_model(tuned) -> None:
    protocol, _, evaluator, distilled = tuned
    # with RECIPES each image encoder's two text encoders differ in recipe: four separate trainings
    groups = evaluator.pair_groups(distilled, "all", "hard")
    assert sorted(groups) == [("test_nfnet", ["minilm"]), ("test_nfnet", ["minilm-l3"]),
                              ("test_resnet", ["minilm"]), ("test_resnet", ["minilm-l3"])]  # fmt: skip
    plain = Evaluator(Workspace(load_protocol("smoke"), evaluator.dataset, progress=False))
    shared = dict(plain.pair_groups(distilled, "all", "hard"))
    assert shared == {"test_nfnet": ["minilm", "minilm-l3"], "test_resnet": ["minilm", "minilm-l3"]}
    # one training scored twice gives exactly the numbers of two separate trainings
    result = plain.evaluate(distilled, archs="all", repetitions=1, seed=2)
    got = {(a.image_encoder, a.text_encoder): a.runs[0]["mean"] for a in result.archs}
    for image, text in got:
        model = plain.train_on(distilled, image, repetition_seeds(2, 1, "test")[0], "hard", text)
        assert plain.score(model, "test", text)["mean"] == pytest.approx(got[(image, text)])


def test_val_and_test_repetitions_never_share_seeds() -> None:
    for seed in (0, 1, 7):
        assert not set(repetition_seeds(seed, 10, "val")) & set(repetition_seeds(seed, 10, "test"))
    with pytest.raises(MddError, match="split"):
        repetition_seeds(0, 1, "train")


def test_tuner_picks_the_best_stable_candidate(tuned, monkeypatch) -> None:
    protocol, dataset, _, _ = tuned
    protocol = dataclasses.replace(protocol, eval=dataclasses.replace(protocol.eval, recipes=()))
    config = TuneConfig(lrs_img=(0.1, 0.01), lrs_txt=(0.1,), dsa=(False, True), archs="source", seeds=2,
                        top=2, stability_seeds=4)  # fmt: skip
    # Known val scores: lr 0.1 + dsa scores best but collapses on one seed; lr 0.01 + dsa is stable.
    table = {
        Candidate(0.1, 0.1, True): [30, 30, 2, 30],
        Candidate(0.01, 0.1, True): [25, 24, 26, 25],
        Candidate(0.1, 0.1, False): [10, 10, 10, 10],
        Candidate(0.01, 0.1, False): [5, 5, 5, 5],
    }
    calls = []

    def fake(self, image, cand, budget, seed):
        calls.append((cand, budget, seed))
        return {"minilm": float(table[cand][seed]) + (budget == 20)}

    monkeypatch.setattr(Tuner, "scores", fake)
    (choice,) = Tuner(protocol, dataset, config, log=lambda _: None).run()
    assert choice.chosen == Candidate(0.01, 0.1, True) and choice.stable
    assert [k for k, _ in choice.ranking][0] == Candidate(0.01, 0.1, True).key or choice.ranking[0][1] >= 0
    assert {budget for _, budget, _ in calls} == {10, 20}
    assert min(choice.stability) >= 0.5 * float(np.median(choice.stability))
    text = recipes_toml([choice], "mdd-bench tune-eval --protocol smoke")
    assert "[[eval.recipes]]" in text and "lr_img = 0.01" in text and "dsa = true" in text
    assert "mdd-bench tune-eval --protocol smoke" in text


def test_tune_eval_command_runs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "tune.json"
    args = ["tune-eval", "--protocol", "smoke", "--lrs-img", "0.1", "--lrs-txt", "0.1", "--dsa", "false",
            "--archs", "source", "--seeds", "1", "--top", "1", "--stability-seeds", "2",
            "--full-lrs-img", "0.1,0.01", "--out", str(out)]  # fmt: skip
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert "[[eval.recipes]]" in first.output and 'image = "test_nfnet"' in first.output
    data = json.loads(out.read_text())
    assert data["pairs"][0]["chosen"] == {"lr_img": 0.1, "lr_txt": 0.1, "dsa": False}
    assert set(data["pairs"][0]["val_by_budget"]) == {"10", "20"}
    # the full-data run's image lr is chosen on its own, then real augmentation at that lr
    by_lr = data["full_data_val_by_lr_img"]["test_nfnet"]
    assert set(by_lr) == {"0.1", "0.01"} and set(data["real_augment_val"]) == {"false", "true"}
    assert f"full_lr_img = {max(by_lr, key=by_lr.get)}" in first.output
    trained = re.findall(r"test_nfnet +lr_img=\S+ lr_txt=\S+ dsa=\S+ +budget", first.output)
    assert len(trained) == 3  # budget 10 seed 0, budget 20 seed 0, stability seed 1
    again = CliRunner().invoke(cli, args)  # every training is in the log: nothing retrains
    assert again.exit_code == 0 and not re.findall(r"lr_img=\S+ lr_txt=\S+ dsa=\S+ +budget", again.output)
    assert "one run scored on val" not in again.output


@pytest.mark.parametrize(
    ("flag", "value"), [("--lrs-img", "fast"), ("--lrs-img", "-1"), ("--dsa", "maybe"), ("--seeds", "0")]
)
def test_tune_eval_rejects_bad_values(flag: str, value: str) -> None:
    result = CliRunner().invoke(cli, ["tune-eval", "--protocol", "smoke", flag, value])
    assert result.exit_code != 0 and "Error" in result.output and "Traceback" not in result.output
