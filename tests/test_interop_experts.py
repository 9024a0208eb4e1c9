"""`mdd-bench experts import`: the references' replay buffers become the protocol's expert store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from mdd_bench.api import DistillContext
from mdd_bench.artifacts import experts as experts_mod
from mdd_bench.artifacts.experts import ExpertConfig, ExpertStore, experts_folder
from mdd_bench.cli import cli
from mdd_bench.data import load_dataset
from mdd_bench.errors import MddError
from mdd_bench.interop.buffers import import_experts
from mdd_bench.models.text import text_feature_dim
from mdd_bench.protocol import load_protocol
from mdd_bench.workspace import Workspace

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

# An expert-training setting no other test uses, so this store's key is ours alone.
LR = 0.0123


@pytest.fixture(scope="module")
def workspace():
    smoke = load_protocol("smoke")
    protocol = dataclasses.replace(smoke, experts=dataclasses.replace(smoke.experts, lr=LR))
    return Workspace(protocol, load_dataset("shapes", protocol, progress=False), progress=False)


def write_buffers(folder: Path, workspace: Workspace, experts: int, snapshots: int) -> list[dict]:
    """Files as MTT-VL's / LoRS's buffer.py writes them: per expert n, [trajectory] in two files."""
    folder.mkdir(parents=True, exist_ok=True)
    model = workspace.fresh_model(seed=0, text_dim=text_feature_dim(workspace.protocol.text.source))
    made = []
    for n in range(experts):
        g = torch.Generator().manual_seed(n)
        img = [[p.detach().clone() for p in model.image_encoder.parameters()]]
        txt = [[torch.randn(p.shape, generator=g) for p in model.text_projection.parameters()]]
        for _ in range(1, snapshots):
            img.append([p + 0.01 * torch.randn(p.shape, generator=g) for p in img[-1]])
            txt.append([p + 0.01 * torch.randn(p.shape, generator=g) for p in txt[-1]])
        torch.save([img], folder / f"img_replay_buffer_{n}.pt")
        torch.save([txt], folder / f"txt_replay_buffer_{n}.pt")
        made.append({"img": img, "txt": txt})
    return made


def flat(snapshot: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in snapshot])


def test_imported_experts_are_what_the_methods_get(tmp_path, workspace, monkeypatch):
    spec = workspace.protocol.experts
    made = write_buffers(tmp_path / "buffer", workspace, spec.num_experts, spec.epochs + 1)
    done = import_experts(tmp_path / "buffer", "lors", workspace)
    assert done.experts == [0, 1] and done.notes == []  # epoch 0 is the protocol's anchor
    store = ExpertStore(done.folder)
    assert store.complete_experts == [0, 1] and store.epochs == list(range(spec.keep_epochs + 1))
    for expert, files in enumerate(made):
        for epoch in store.epochs:
            image, text = store.flat(expert, epoch)
            assert torch.equal(image, flat(files["img"][epoch]))
            assert torch.equal(text, flat(files["txt"][epoch]))
    model = store.load_model(workspace, 1, spec.keep_epochs)  # loads as a state dict, strictly
    assert torch.equal(model.text_projection.layer_norm.bias, made[1]["txt"][spec.keep_epochs][-1])
    assert store.manifest["imported"]["from"] == "lors"

    def no_training(*args, **kwargs):
        raise AssertionError("the imported experts should have been used, not retrained")

    monkeypatch.setattr(experts_mod, "train_dual", no_training)
    ctx = DistillContext(workspace.protocol, workspace.dataset, progress=False)
    assert ctx.experts().folder == experts_folder(workspace, ExpertConfig.from_protocol(workspace.protocol))
    assert torch.equal(ctx.experts().flat(0, 1)[0], flat(made[0]["img"][1]))


def test_existing_store_needs_replace(tmp_path, workspace):
    spec = workspace.protocol.experts
    write_buffers(tmp_path / "b", workspace, 1, spec.epochs + 1)
    import_experts(tmp_path / "b", "mtt-vl", workspace, replace=True)
    with pytest.raises(MddError, match=r"already holds experts \[0.*--replace"):
        import_experts(tmp_path / "b", "mtt-vl", workspace)
    done = import_experts(tmp_path / "b", "mtt-vl", workspace, replace=True)
    assert done.experts == [0] and any("methods will train experts 1..1" in n for n in done.notes)
    assert ExpertStore(done.folder).complete_experts == [0]  # replaced, not added to


def test_a_mismatched_tensor_is_named_with_index_and_shapes(tmp_path, workspace):
    spec = workspace.protocol.experts
    write_buffers(tmp_path / "b", workspace, 1, spec.epochs + 1)
    traj = torch.load(tmp_path / "b" / "txt_replay_buffer_0.pt", weights_only=True)
    traj[0][1][2] = torch.zeros(7, 7)  # epoch 1, tensor 2 (the head's fc.weight)
    torch.save(traj, tmp_path / "b" / "txt_replay_buffer_0.pt")
    with pytest.raises(MddError) as err:
        import_experts(tmp_path / "b", "lors", workspace, replace=True)
    message = str(err.value)
    assert "txt_replay_buffer_0.pt epoch 1: tensor 2 (text_projection.fc.weight)" in message
    assert "found [7, 7]" in message and "expected shape [" in message
    traj[0][1] = traj[0][1][:-1]  # one tensor short
    torch.save(traj, tmp_path / "b" / "txt_replay_buffer_0.pt")
    with pytest.raises(MddError, match=r"tensor 2 .*found \[7, 7\]"):
        import_experts(tmp_path / "b", "lors", workspace, replace=True)
    traj[0][1][2] = traj[0][0][2]
    torch.save(traj, tmp_path / "b" / "txt_replay_buffer_0.pt")
    with pytest.raises(
        MddError, match=r"tensor 5 \(text_projection.layer_norm.bias\) .*found none \(5 tensors"
    ):
        import_experts(tmp_path / "b", "lors", workspace, replace=True)


def test_bad_folders_and_short_trajectories(tmp_path, workspace):
    with pytest.raises(MddError, match="No img_replay_buffer_N.pt"):
        import_experts(tmp_path, "lors", workspace)
    write_buffers(tmp_path / "short", workspace, 1, workspace.protocol.experts.keep_epochs)
    with pytest.raises(MddError, match=r"2 snapshots, but protocol 'smoke' keeps epochs 0..2"):
        import_experts(tmp_path / "short", "lors", workspace, replace=True)
    (tmp_path / "short" / "txt_replay_buffer_0.pt").unlink()
    with pytest.raises(MddError, match="has no txt_replay_buffer_0.pt beside it"):
        import_experts(tmp_path / "short", "lors", workspace)
    with pytest.raises(MddError, match="Unknown expert buffer format"):
        import_experts(tmp_path / "short", "mdm", workspace)


def test_a_different_start_is_noted(tmp_path, workspace):
    spec = workspace.protocol.experts
    write_buffers(tmp_path / "b", workspace, 1, spec.epochs + 1)
    traj = torch.load(tmp_path / "b" / "img_replay_buffer_0.pt", weights_only=True)
    traj[0][0][0] = traj[0][0][0] + 1.0
    torch.save(traj, tmp_path / "b" / "img_replay_buffer_0.pt")
    done = import_experts(tmp_path / "b", "lors", workspace, replace=True)
    assert any("did not start from the protocol's anchor" in n for n in done.notes)


def test_cli_experts_is_a_group_that_still_trains_and_imports(tmp_path, workspace):
    help_text = CliRunner().invoke(cli, ["experts", "--help"])
    assert help_text.exit_code == 0 and "import" in help_text.output and "--num-experts" in help_text.output
    # A protocol file with an expert configuration of its own (stores are keyed by content: a derived
    # protocol with its base's configuration would share the base's store), so the store the other
    # tests fill stays theirs.
    toml = tmp_path / "import.toml"
    toml.write_text(f'base = "smoke"\nname = "smoke-import"\n[experts]\nlr = {LR}\nbatch_size = 32\n')
    spec = load_protocol(toml).experts
    write_buffers(tmp_path / "b", workspace, 1, spec.epochs + 1)
    # Options of the group count for `import` too.
    args = ["experts", "--protocol", str(toml), "import", str(tmp_path / "b"), "--from", "mtt-vl"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "imported 1 mtt-vl experts (epochs 0..2 of 3 snapshots)" in result.output
    assert "smoke-import" in result.output
    # `mdd-bench experts` with no subcommand trains, as before: here it completes the missing expert 1.
    trained = CliRunner().invoke(cli, ["experts", "--protocol", str(toml)])
    assert trained.exit_code == 0, trained.output
    assert "2 experts x epochs [0, 1, 2] kept" in trained.output
    wrong = CliRunner().invoke(
        cli, ["experts", "import", str(tmp_path), "--from", "lors", "--protocol", str(toml)]
    )
    assert wrong.exit_code != 0 and "No img_replay_buffer_N.pt" in wrong.output
