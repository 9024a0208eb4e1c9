"""The shared layer: devices, models from flat vectors, typed protocols and hyper-parameters, plugins."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mdd_bench.api import HParams, Method
from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.errors import MddError
from mdd_bench.evaluation.metrics import score
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import MODALITIES, Workspace, flatten, layout, resolve_device

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


@pytest.fixture(scope="module")
def workspace():
    protocol = load_protocol("smoke")
    return Workspace(protocol, load_dataset("shapes", protocol, progress=False), progress=False)


def test_devices_resolve_or_fail_in_one_line(monkeypatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(MddError, match="no GPU"):
        resolve_device("cuda")
    with pytest.raises(MddError, match="Unknown device"):
        resolve_device("gpu0")
    bad = CliRunner().invoke(cli, ["eval", "--random", "10", "--protocol", "smoke", "--device", "cuda:3"])
    assert bad.exit_code != 0 and "GPU" in bad.output and "Traceback" not in bad.output


def test_model_from_flat_vectors_round_trips(workspace) -> None:
    model = workspace.fresh_model(seed=3)
    image, text = flatten(model, "image"), flatten(model, "text")
    buffers = {f"image_encoder.{k}": v for k, v in model.image_encoder.named_buffers()}
    rebuilt = workspace.model_from_flat(image, text, layout(model, "image"), layout(model, "text"), buffers)
    for (name, a), (_, b) in zip(model.state_dict().items(), rebuilt.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert set(MODALITIES) == {"image", "text"}
    with pytest.raises(MddError, match="layout needs"):
        workspace.model_from_flat(image[:-1], text, layout(model, "image"), layout(model, "text"))


def test_scores_and_embeddings_come_from_one_place(workspace) -> None:
    model = workspace.fresh_model(seed=0)
    scores = score(workspace, model, "val")
    assert 0 <= scores["mean"] <= 100
    assert workspace.text_embeddings("val") is workspace.text_embeddings("val")  # cached
    assert workspace.text_dim == workspace.text_embeddings("train").shape[1]


# ------------------------------------------------------------------------------------ typed protocols


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('name = "x"\nbase = "smoke"\n[eval]\nepochs = "ten"\n', ("[eval] epochs", "'ten'", "integer")),
        ('name = "x"\nbase = "smoke"\n[eval]\nlr_img = -1\n', ("[eval] lr_img", "greater than 0")),
        ('name = "x"\nbase = "smoke"\n[image]\npretrained = "imagenett"\n', ("[image] pretrained",)),
        ('name = "x"\nbase = "smoke"\n[data.shapes]\ntrain = 0\n', ("[data] shapes.train",)),
        ('name = "x"\n[data]\nresolution = 32\n', ("missing section [image]", "base =")),
        ('name = "x"\nbase = "nope"\n', ("Unknown base protocol 'nope'",)),
        ('name = "x"\nbase = "smoke"\nseeds = [-1]\n', ("seeds[0]",)),
    ],
)
def test_protocol_errors_name_the_key_and_file(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(MddError) as info:
        load_protocol(path)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    if "base" not in needles[0] and "Unknown" not in needles[0]:
        assert str(path) in message


def test_a_protocol_inherits_a_packaged_one(tmp_path: Path) -> None:
    path = _write(tmp_path, 'name = "cheap"\nbase = "cpu"\nbudgets = [50]\n[eval]\nrepetitions = 2\n')
    cheap = load_protocol(path)
    cpu = load_protocol("cpu")
    assert cheap.budgets == (50,) and cheap.eval.repetitions == 2
    assert cheap.eval.epochs == cpu.eval.epochs and cheap.eval.recipes == cpu.eval.recipes
    assert cheap.image == cpu.image and cheap.lineage == ("cheap", "cpu")

    class Tuned(Method):
        name = "tuned"

        @dataclasses.dataclass
        class Params(HParams):
            steps: int = 1
            lr: float = 0.1

        hparams_class = Params
        defaults = {"cpu": {"steps": 7}, "cheap": {"lr": 0.5}}

    method = Tuned.for_protocol(cheap)
    assert method.hparams.steps == 7 and method.hparams.lr == 0.5  # own name first, then the base's
    assert Tuned.for_protocol(cheap, {"steps": "9"}).hparams.steps == 9
    with pytest.raises(MddError, match="tuned.steps=many"):
        Tuned.for_protocol(cheap, {"steps": "many"})
    with pytest.raises(MddError, match="no hyper-parameter 'step'.*Did you mean 'steps'"):
        Tuned.for_protocol(cheap, {"step": "3"})


def test_bad_defaults_are_caught_like_overrides() -> None:
    class Broken(Method):
        name = "broken"

        @dataclasses.dataclass
        class Params(HParams):
            steps: int = 1

        hparams_class = Params
        defaults = {"smoke": {"steps": "lots"}}

    with pytest.raises(MddError, match="broken.steps"):
        Broken.for_protocol(load_protocol("smoke"))
