"""Protocols: the packaged ones load with their documented values; bad files give one clear MddError."""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import pytest

from mdd_bench.errors import MddError
from mdd_bench.protocol import Protocol, list_protocols, load_protocol


def packaged_text(name: str) -> str:
    return (resources.files("mdd_bench") / "protocols" / f"{name}.toml").read_text()


def error(name_or_path: str | Path) -> str:
    with pytest.raises(MddError) as info:
        load_protocol(name_or_path)
    message = str(info.value)
    assert message and "\n" not in message
    return message


PACKAGED = ["cpu", "cpu-frozen", "paper", "paper-frozen", "paper-offline", "smoke", "smoke-frozen"]


def test_packaged_names() -> None:
    assert list_protocols() == PACKAGED


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_protocols_are_sane(name: str) -> None:
    p = load_protocol(name)
    assert isinstance(p, Protocol) and p.name == name and p.source == name and p.description
    assert p.budgets and all(isinstance(b, int) and b > 0 for b in p.budgets)
    assert list(p.budgets) == sorted(set(p.budgets))
    assert p.data.resolution > 0 and len(p.data.mean) == 3 and len(p.data.std) == 3
    assert all(0 < m < 1 for m in p.data.mean) and all(0 < s < 1 for s in p.data.std)
    assert isinstance(p.data.mean, tuple) and isinstance(p.image.unseen, tuple)
    assert p.image.source not in p.image.unseen and p.text.source not in p.text.unseen
    assert p.image.pretrained in {"imagenet", "anchor", "none"}
    assert 0 < p.experts.keep_epochs <= p.experts.epochs and p.experts.num_experts > 0
    assert 0 < p.eval.lr_decay_epoch <= p.eval.epochs and p.eval.repetitions > 0
    assert p.model.temperature == pytest.approx(0.07) and p.text.pooling == "cls"
    assert p.to_dict()["name"] == name and "source" not in p.to_dict()


def test_paper_protocol_values() -> None:
    p = load_protocol("paper")
    assert p.data.dataset == "flickr30k" and p.data.resolution == 224
    assert p.image.source == "nfnet_l0" and p.image.pretrained == "imagenet"
    assert p.image.unseen == ("nf_resnet50", "nf_regnet_b1")
    assert p.text.source == "bert-base-uncased" and p.text.unseen == ("distilbert-base-uncased",)
    assert (p.experts.num_experts, p.experts.epochs) == (20, 10)
    assert (p.eval.epochs, p.eval.repetitions) == (100, 5)
    assert p.budgets == (100, 200, 500)


def test_cpu_and_smoke_run_offline_on_shapes() -> None:
    cpu, smoke = load_protocol("cpu"), load_protocol("smoke")
    assert load_protocol() == cpu  # the default
    for p in (cpu, smoke):
        assert p.data.dataset == "shapes" and p.data.resolution == 32
        assert p.image.source == "test_nfnet" and p.text.source == "minilm"
    assert (cpu.data.shapes.train, cpu.data.shapes.val, cpu.data.shapes.test) == (4000, 500, 500)
    assert (smoke.data.shapes.train, smoke.data.shapes.val, smoke.data.shapes.test) == (120, 30, 30)
    assert smoke.eval.epochs < cpu.eval.epochs


def test_user_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\nbase = "cpu"\nbudgets = [3, 7]\n[data]\nresolution = 16\n[data.shapes]\ntrain = 9\n'
        '[image]\nunseen = ["test_resnet", "test_vit"]\n[eval]\nepochs = 2\n'
    )
    p = load_protocol(path)
    assert p.name == "mine" and p.source == str(path) and p.budgets == (3, 7)
    assert p.data.resolution == 16 and p.data.shapes.train == 9 and p.data.shapes.val == 500
    assert p.image.unseen == ("test_resnet", "test_vit") and p.eval.epochs == 2
    assert p.eval.repetitions == load_protocol("cpu").eval.repetitions  # unspecified keys: the base's
    assert load_protocol(str(path)) == p


def test_unknown_name_suggests() -> None:
    message = error("smok")
    assert "Unknown protocol 'smok'" in message and "Did you mean 'smoke'?" in message
    assert "cpu" in message and "paper" in message


def test_missing_file() -> None:
    assert "does not exist" in error("no/such/protocol.toml")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('name = "x"\nbase = "smoke"\n[eval]\nepochs = 5\nepoch = 3\n', "epoch"),
        ('name = "x"\nbase = "smoke"\n[data.shapes]\ntrian = 5\n', "trian"),
        ('name = "x"\nbase = "smoke"\n[text]\nsorce = "minilm"\n', "sorce"),
        ('name = "x"\nbudget = [1]\n', "budget"),
        ('name = "x"\n[evaluation]\nepochs = 1\n', "evaluation"),
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    message = error(path)
    assert f"unknown key '{key}'" in message and str(path) in message


@pytest.mark.parametrize(
    "text",
    [
        'name = "x"\n[eval\nepochs = 5\n',  # invalid TOML
        'name = "x"\nbudgets = [1, 2\n',  # invalid TOML
        'description = "no name"\n',
        'name = "x"\nbudgets = [10, 0]\n',
        'name = "x"\ndata = 3\n',
        'name = "x"\nbudgets = 5\n',
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    error(path)


def test_invalid_toml_says_so(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\n[eval\n')
    assert "not valid TOML" in error(path)


def test_hash_follows_settings_not_source(tmp_path: Path) -> None:
    smoke = load_protocol("smoke")
    copy = tmp_path / "copy.toml"
    copy.write_text(packaged_text("smoke"))
    same = load_protocol(copy)
    assert same.source != smoke.source and same.hash == smoke.hash

    changed = tmp_path / "changed.toml"
    changed.write_text(packaged_text("smoke").replace("epochs = 5", "epochs = 6"))
    other = load_protocol(changed)
    assert other.eval.epochs == 6 and other.hash != smoke.hash

    assert dataclasses.replace(smoke, budgets=(10, 30)).hash != smoke.hash
    assert smoke.with_dataset("flickr8k").hash != smoke.hash
    assert smoke.with_dataset("shapes").hash == smoke.hash
    assert len({load_protocol(n).hash for n in list_protocols()}) == len(list_protocols())


@pytest.mark.parametrize("base", ["cpu", "paper", "smoke"])
def test_frozen_protocols_change_only_what_the_evaluation_trains(base: str) -> None:
    parent, frozen = load_protocol(base), load_protocol(f"{base}-frozen")
    assert frozen.lineage == (f"{base}-frozen", base)
    assert parent.eval.towers == "backbone+text-head" and frozen.eval.towers == "frozen-backbone+heads"
    mine, theirs = frozen.to_dict(), parent.to_dict()
    for section in ("data", "image", "text", "model", "experts"):
        assert mine[section] == theirs[section], section
    assert mine["budgets"] == theirs["budgets"] and mine["seeds"] == theirs["seeds"]
    # the evaluation differs in its towers; cpu-frozen also replaces cpu's per-pair lrs, chosen for a
    # trainable encoder, by its own source-pair recipe (tuned for heads), and turns DSA on for every
    # pair, as cpu's recipes
    changed = {k for k in mine["eval"] if mine["eval"][k] != theirs["eval"].get(k)}
    assert changed == ({"towers", "dsa", "recipes"} if base == "cpu" else {"towers"})
    if base == "cpu":
        ev = frozen.eval
        assert (ev.lr_img, ev.lr_txt, ev.dsa) == (0.1, 0.1, True)
        assert [(r.image, r.text) for r in ev.recipes] == [(frozen.image.source, frozen.text.source)]


def test_default_towers_keep_the_hash_and_the_run_rule_changes_it(tmp_path: Path) -> None:
    # `[eval] towers` at its default is left out of the hash (older results keep theirs); the [distill]
    # rule and the [tuning] budget are in it: results made under another rule must not pass as the same.
    # The hashes before the [distill] and [tuning] sections were added:
    before = {"cpu": "573c70134ec01bb2", "paper": "d7a269ef39ebb429", "smoke": "9795a6cdf9c4f757"}
    now = {name: load_protocol(name).hash for name in before}
    assert all(now[name] != before[name] for name in before)
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('base = "cpu"\nname = "cpu"\n[eval]\ntowers = "backbone+text-head"\n')
    assert load_protocol(explicit).hash == now["cpu"]
    patience = tmp_path / "patience.toml"
    patience.write_text('base = "cpu"\nname = "cpu"\n[distill]\npatience = 5\n')
    assert load_protocol(patience).hash != now["cpu"]
    assert "towers" not in load_protocol("cpu").to_dict()["eval"]
    assert load_protocol("cpu-frozen").to_dict()["eval"]["towers"] == "frozen-backbone+heads"


def test_towers_values(tmp_path: Path) -> None:
    from typing import get_args

    from mdd_bench.models.dual import TOWERS
    from mdd_bench.protocol import Towers

    assert get_args(Towers) == TOWERS
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nbase = "smoke"\n[eval]\ntowers = "frozen-backbone"\n')
    message = error(path)
    assert "[eval] towers = 'frozen-backbone'" in message and "backbone+text-head" in message
