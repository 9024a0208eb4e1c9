"""`mdd-bench eval` from the command line on the smoke protocol."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.evaluation.evaluator import Evaluator, random_pairs
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts


def test_eval_of_a_saved_set_prints_a_table(tmp_path):
    protocol = load_protocol("smoke")
    dataset = load_dataset("shapes", protocol, progress=False)
    emb = Evaluator(Workspace(protocol, dataset, progress=False)).text_embeddings("train")
    random_pairs(dataset, emb, protocol, 10, seed=1).save(tmp_path / "set")
    result = CliRunner().invoke(
        cli, ["eval", str(tmp_path / "set.safetensors"), "--protocol", "smoke", "--repetitions", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "IR@1" in result.output and "TR@10" in result.output
    assert "test_nfnet*" in result.output and "extras used: none" in result.output


def test_eval_random_and_archs_all():
    result = CliRunner().invoke(
        cli, ["eval", "--random", "10", "--protocol", "smoke", "--repetitions", "1", "--archs", "all"]
    )
    assert result.exit_code == 0, result.output
    assert "test_resnet" in result.output and "minilm-l3" in result.output


def test_eval_needs_exactly_one_input(tmp_path):
    result = CliRunner().invoke(cli, ["eval", "--protocol", "smoke"])
    assert result.exit_code != 0
    assert "exactly one" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(cli, ["eval", str(tmp_path / "nope"), "--protocol", "smoke"])
    assert missing.exit_code != 0 and "missing" in missing.output
