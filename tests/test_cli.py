"""The `mdd-bench` command: listings, `data prepare` (cached on the second run) and one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from mdd_bench.cli import cli
from mdd_bench.data import images as images_mod
from mdd_bench.data import shapes as shapes_mod
from mdd_bench.models import text as text_models

pytestmark = pytest.mark.slow  # trains on smoke or builds its shared artifacts

REPO = Path(__file__).resolve().parents[1]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args: str | Path) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(*args: str | Path) -> str:
    """The error of a failing command: exit 1, one `Error: ...` line on stderr, no traceback."""
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # click handled it; nothing escaped
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_list_protocols() -> None:
    out = ok("list", "protocols")
    names = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert names == {"smoke", "cpu", "paper", "smoke-frozen", "cpu-frozen", "paper-frozen", "paper-offline"}
    assert "nfnet_l0" in out and "bert-base-uncased" in out
    trains = {line.split()[0]: line.split()[4] for line in out.splitlines()[2:] if line.strip()}
    assert trains["cpu"] == "backbone+text-head" and trains["cpu-frozen"] == "frozen-backbone+heads"


def test_list_datasets() -> None:
    out = ok("list", "datasets")
    names = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert {"shapes", "flickr8k", "flickr30k", "coco"} <= names


def test_version_and_help() -> None:
    assert "mdd-bench" in ok("--version")
    assert "prepare" in ok("data", "--help")


def stage_seconds(out: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(r"^  (\S+)\s+([\d.]+) s$", out, re.MULTILINE)}


def test_prepare_twice_second_is_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"generate": 0, "encoder": 0, "read": 0}

    def counting(name: str, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(shapes_mod, "generate_shapes", counting("generate", shapes_mod.generate_shapes))
    monkeypatch.setattr(
        text_models, "create_text_encoder", counting("encoder", text_models.create_text_encoder)
    )
    monkeypatch.setattr(images_mod, "read_image", counting("read", images_mod.read_image))

    first = ok("data", "prepare", "shapes", "--protocol", "smoke", "--data-root", tmp_path)
    assert calls["generate"] == 1 and calls["read"] == 120 + 30 + 30
    rows = {line.split()[0]: line.split()[1:] for line in first.splitlines() if line.split()[:1]}
    assert rows["train"] == ["120", "600"] and rows["val"] == ["30", "150"] and rows["test"] == ["30", "150"]
    assert set(stage_seconds(first)) == {"generate", "images", "text:minilm"}
    assert str(tmp_path / "shapes") in first and "resolution: 32" in first

    calls.update(generate=0, encoder=0, read=0)
    second = ok("data", "prepare", "shapes", "--protocol", "smoke", "--data-root", tmp_path)
    assert calls == {"generate": 0, "encoder": 0, "read": 0}
    seconds = stage_seconds(second)
    assert set(seconds) == set(stage_seconds(first)) and all(s < 1.0 for s in seconds.values())


def test_unknown_protocol() -> None:
    line = fails("data", "prepare", "shapes", "--protocol", "smok")
    assert "Unknown protocol 'smok'" in line and "Did you mean 'smoke'?" in line


def test_missing_protocol_file(tmp_path: Path) -> None:
    line = fails("data", "prepare", "shapes", "--protocol", tmp_path / "none.toml")
    assert "does not exist" in line


def test_bad_protocol_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('name = "x"\nbase = "smoke"\n[eval]\nepoch = 3\n')
    assert "unknown key 'epoch'" in fails("data", "prepare", "shapes", "--protocol", path)


def test_unknown_dataset(tmp_path: Path) -> None:
    line = fails("data", "prepare", "flikr30k", "--protocol", "smoke", "--data-root", tmp_path)
    assert "Unknown dataset 'flikr30k'" in line and "Did you mean 'flickr30k'?" in line
    line = fails("data", "check", "--dataset", "cocoo", "--protocol", "smoke", "--data-root", tmp_path)
    assert "Did you mean 'coco'?" in line


def test_missing_data_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    line = fails("data", "check", "--dataset", "flickr30k", "--protocol", "smoke", "--data-root", missing)
    assert f"Data root '{missing}' does not exist." in line and "--data-root DIR" in line
    # a grid stops on it before any cell starts (the pre-flight check), writing nothing
    out = tmp_path / "runs"
    grid = ["--protocol", "paper", "--dataset", "flickr30k", "--methods", "random", "--seeds", "0"]
    line = fails("run", *grid, "--data-root", missing, "--out", out, "--quiet")
    assert line.startswith(f"Error: Data root '{missing}' does not exist.") and not out.exists()


def write_flickr30k(root: Path) -> None:
    ann = root / "annotations"
    ann.mkdir(parents=True)
    (root / "flickr30k-images").mkdir()
    for split, files in {"train": ["a.jpg"], "val": ["v.jpg"], "test": ["t.jpg"]}.items():
        for f in files:
            Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "flickr30k-images" / f)
        if split == "train":
            rows = [{"image": f"flickr30k-images/{f}", "caption": "c", "image_id": f} for f in files]
        else:
            rows = [{"image": f"flickr30k-images/{f}", "caption": ["c"] * 5} for f in files]
        (ann / f"flickr30k_{split}.json").write_text(json.dumps(rows))


def test_check_valid_then_malformed_json(tmp_path: Path) -> None:
    write_flickr30k(tmp_path)
    args = ("data", "check", "--dataset", "flickr30k", "--protocol", "smoke", "--data-root", tmp_path)
    assert "ok: every annotation entry and image is readable" in ok(*args)
    bad = tmp_path / "annotations" / "flickr30k_val.json"
    bad.write_text('[{"image": "flickr30k-images/v.jpg", "caption": ["c"]},\n {"image": }]')
    line = fails(*args)
    assert str(bad) in line and "line 2" in line


def test_ci_command_is_in_readme() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    # The project's own venv (a second, scratch venv holds the built wheel).
    commands = [line.strip() for line in ci if line.startswith("python3 -m venv .venv")]
    assert len(commands) == 1
    assert commands[0] in [line.strip() for line in (REPO / "README.md").read_text().splitlines()]
