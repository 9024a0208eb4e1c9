"""Every reader of a foreign or stored file turns a bad one into one `Error:` line naming it, never a
traceback: the imports of sets and expert buffers, result files, distilled sets and protocol files, each
fed an empty file, truncated bytes, a text file and a valid file of the wrong layout.

A traceback is what a new user met (`mdd-bench import notes.pt` on a text file ended in `KeyError: 101`
from inside the unpickler). Nothing here trains: every file fails before any work starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from mdd_bench.cli import cli
from mdd_bench.distilled import DistilledSet

KINDS = ("empty", "truncated", "text", "hello", "binary", "wrong-layout")


def one_error_line(*args: str | Path) -> str:
    """The error of a failing command: non-zero exit, no traceback, and one `Error:` line, stderr's last
    (a line of its own: nothing of the message spills over; progress bars may come before it)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # click handled it; nothing escaped
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


def bad_bytes(kind: str, valid: bytes, wrong: bytes) -> bytes:
    """The content of a bad file of `kind`: `valid` is a good file of its format (for truncation), `wrong`
    a valid file of that format whose layout is not what the reader wants."""
    return {
        "empty": b"",
        "truncated": valid[: len(valid) // 2],
        "text": b"these are my notes, not a file of the benchmark\n",
        "hello": b"hello",  # a pickle reader takes 'h' and 'e' for opcodes (KeyError: 101)
        "binary": bytes(range(256)) * 4,
        "wrong-layout": wrong,
    }[kind]


def torch_bytes(obj, tmp_path: Path, legacy: bool = False) -> bytes:
    path = tmp_path / "scratch.pt"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.unlink()
    return data


def a_set() -> DistilledSet:
    return DistilledSet(torch.randn(4, 3, 32, 32), torch.randn(4, 384), provenance={"protocol": "smoke"})


def lors_dict() -> dict:
    return {"image": torch.randn(4, 3, 32, 32), "text": torch.randn(4, 384), "similarity_mat": torch.eye(4)}


# ------------------------------------------------------------------------------------ imports of sets


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("source", ["lors", "mtt-vl", "mdm"])
def test_import_of_a_bad_set_file(tmp_path, source, kind, legacy):
    valid = torch_bytes(lors_dict(), tmp_path, legacy)
    wrong = torch_bytes({"image": "pixels", "text": [1, 2]}, tmp_path, legacy)
    path = tmp_path / "notes.pt"
    path.write_bytes(bad_bytes(kind, valid, wrong))
    line = one_error_line("import", path, "--from", source, "--protocol", "smoke", "--out", tmp_path / "out")
    assert str(path) in line
    assert not list(tmp_path.glob("out*"))


def test_import_of_tensors_in_the_wrong_shape(tmp_path):
    path = tmp_path / "set.pt"
    torch.save(
        {"image": torch.randn(4, 32), "text": torch.randn(4, 384), "similarity_mat": torch.eye(4)}, path
    )
    line = one_error_line("import", path, "--from", "lors", "--protocol", "smoke", "--out", tmp_path / "out")
    assert str(path) in line and "expected [N, 3, H, W]" in line


# ----------------------------------------------------------------------------- expert buffer imports


@pytest.mark.parametrize("kind", KINDS)
def test_import_of_bad_expert_buffers(tmp_path, kind):
    trajectory = [[[torch.randn(3, 3), torch.randn(3)] for _ in range(2)]]
    valid = torch_bytes(trajectory, tmp_path)
    wrong = torch_bytes({"epochs": [1, 2, 3]}, tmp_path)
    folder = tmp_path / "buffers"
    folder.mkdir()
    for modality in ("img", "txt"):
        (folder / f"{modality}_replay_buffer_0.pt").write_bytes(bad_bytes(kind, valid, wrong))
    line = one_error_line("experts", "import", folder, "--from", "lors", "--protocol", "smoke")
    assert "replay_buffer_0.pt" in line


# ------------------------------------------------------------------------------------- result files


def result_bytes() -> tuple[bytes, bytes]:
    valid = {"schema": 1, "method": "random", "budget": 10, "seed": 0, "evaluation": {}}
    return json.dumps(valid).encode(), json.dumps([valid]).encode()


@pytest.mark.parametrize("kind", KINDS)
def test_report_over_a_bad_result_file(tmp_path, kind):
    cell = tmp_path / "runs" / "smoke" / "shapes" / "random" / "b10-s0.json"
    cell.parent.mkdir(parents=True)
    cell.write_bytes(bad_bytes(kind, *result_bytes()))
    line = one_error_line("report", "--runs", tmp_path / "runs", "--format", "csv", "--no-gallery")
    assert str(cell) in line


# ----------------------------------------------------------------------------------- distilled sets


def distilled_files(tmp_path: Path, part: str, kind: str) -> Path:
    """A saved set whose tensor file or sidecar (`part`) is bad."""
    base = tmp_path / "set"
    a_set().save(base)
    tensors, sidecar = base.with_name("set.safetensors"), base.with_name("set.json")
    if part == "tensors":
        save_file({"pixels": torch.zeros(2)}, str(tmp_path / "wrong.safetensors"))
        wrong = (tmp_path / "wrong.safetensors").read_bytes()
        tensors.write_bytes(bad_bytes(kind, tensors.read_bytes(), wrong))
    else:
        sidecar.write_bytes(bad_bytes(kind, sidecar.read_bytes(), b'["provenance"]'))
    return base


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", ["tensors", "sidecar"])
@pytest.mark.parametrize("command", ["eval", "export"])
def test_a_bad_distilled_set(tmp_path, command, part, kind):
    base = distilled_files(tmp_path, part, kind)
    tail = ["--format", "lors", "--out", tmp_path / "out.pt"] if command == "export" else []
    line = one_error_line(command, base, "--protocol", "smoke", *tail)
    assert str(base) in line


def test_a_set_whose_tensors_do_not_pair(tmp_path):
    base = tmp_path / "set"
    a_set().save(base)
    save_file(
        {"images": torch.zeros(4, 3, 32, 32), "texts": torch.zeros(3, 384)}, str(tmp_path / "set.safetensors")
    )
    line = one_error_line(
        "export", base, "--protocol", "smoke", "--format", "lors", "--out", tmp_path / "o.pt"
    )
    assert str(base) in line and "pairs must match" in line


@pytest.mark.parametrize("fmt", ["hf", "lors"])
def test_export_to_a_folder_that_cannot_be_written(tmp_path, fmt):
    base = tmp_path / "set"
    a_set().save(base)
    line = one_error_line("export", base, "--format", fmt, "--out", "/proc/nope", "--protocol", "smoke")
    assert "/proc/nope" in line


# ----------------------------------------------------------------------------------- protocol files


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_protocol_file(tmp_path, kind):
    from importlib import resources

    valid = (resources.files("mdd_bench") / "protocols" / "smoke.toml").read_bytes()
    wrong = b'name = "mine"\nbase = "smoke"\n[data]\nresolution = "large"\n'
    path = tmp_path / "bad.toml"
    path.write_bytes(bad_bytes(kind, valid, wrong))
    line = one_error_line("run", "--protocol", path, "--dry-run", "--out", tmp_path / "runs")
    assert str(path) in line
