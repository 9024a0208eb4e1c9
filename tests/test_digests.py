"""Artifact digests: computed as sha256 says, blind to manifests and locks, recorded by the cells that read
the artifacts, and named by the report when the results it compares stood on different builds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report import result, write

from mdd_bench.cache import cache_dir
from mdd_bench.digests import (
    artifact_digest,
    artifact_log,
    artifact_name,
    logged_digests,
    merge_digests,
    note_artifact,
)
from mdd_bench.report import write_report
from mdd_bench.report.artifact_builds import builds_note
from mdd_bench.report.frame import load_frame


def test_a_files_digest_is_its_sha256(tmp_path: Path) -> None:
    path = tmp_path / "anchor.safetensors"
    path.write_bytes(b"weights" * 1000)
    assert artifact_digest(path) == hashlib.sha256(b"weights" * 1000).hexdigest()[:16]
    path.write_bytes(b"other weights")  # a rebuilt file is read again, not taken from the memo
    assert artifact_digest(path) == hashlib.sha256(b"other weights").hexdigest()[:16]
    assert artifact_digest(tmp_path / "missing") is None


def test_a_folders_digest_covers_its_data_files_and_their_names_only(tmp_path: Path) -> None:
    folder = tmp_path / "experts"
    folder.mkdir()
    (folder / "expert000_epoch00.safetensors").write_bytes(b"a")
    (folder / "expert000_epoch01.safetensors").write_bytes(b"b")
    files = (("expert000_epoch00.safetensors", b"a"), ("expert000_epoch01.safetensors", b"b"))
    lines = "".join(f"{name}\0{hashlib.sha256(data).hexdigest()}\n" for name, data in files)
    expected = hashlib.sha256(lines.encode()).hexdigest()[:16]
    first = artifact_digest(folder)
    assert first == expected
    # Manifests (scores, dates), locks, temporaries and hidden files are not the artifact.
    (folder / "manifest.json").write_text(json.dumps({"created": "now"}))
    (folder / "expert000.lock").write_text("")
    (folder / ".expert001_epoch00.safetensors.123.tmp").write_bytes(b"half")
    assert artifact_digest(folder) == first
    (folder / "expert000_epoch01.safetensors").write_bytes(b"c")
    assert artifact_digest(folder) != first
    (folder / "expert000_epoch01.safetensors").write_bytes(b"b")
    (folder / "expert000_epoch01.safetensors").rename(folder / "expert001_epoch01.safetensors")
    assert artifact_digest(folder) != first
    assert artifact_digest(tmp_path / "empty-or-missing") is None


def test_notes_reach_only_the_open_log(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    path.write_bytes(b"x")
    note_artifact(path)  # no log open: nothing to record, no error
    assert logged_digests() == {}
    with artifact_log() as outer:
        with artifact_log() as inner:
            note_artifact(path)
        assert inner == {artifact_name(path): path} and outer == {}
        note_artifact(path)
        note_artifact(tmp_path / "never-written")  # noted, but with no bytes it has no digest
        assert logged_digests() == {artifact_name(path): hashlib.sha256(b"x").hexdigest()[:16]}
    assert artifact_name(cache_dir("anchors") / "n.safetensors") == "anchors/n.safetensors"


def test_merge_keeps_every_build_of_a_name() -> None:
    assert merge_digests({"a": "1"}, {"a": "1", "b": "2"}) == {"a": "1", "b": "2"}
    assert merge_digests({"a": "1"}, {"a": "3"}) == {"a": "1,3"}
    assert merge_digests({"a": "1,3"}, {"a": "3"}) == {"a": "1,3"}


def _runs(tmp_path: Path, digests: list[dict[str, str] | None]) -> Path:
    runs = tmp_path / "runs"
    for seed, found in enumerate(digests):
        extra = {"artifacts": found} if found is not None else {}
        write(runs, "mdm", result("mdm", "flickr8k", 100, seed, **extra))
    return runs


def test_the_report_names_artifacts_read_in_more_than_one_build(tmp_path: Path) -> None:
    same = {"experts/cpu-shapes-k": "aaaa", "anchors/x.safetensors": "cccc"}
    # Agreeing builds, or files older than the record: no note.
    assert builds_note(load_frame(_runs(tmp_path / "same", [same, same, None]))) is None
    other = {**same, "experts/cpu-shapes-k": "bbbb"}
    runs = _runs(tmp_path / "mixed", [same, same, other])
    note = builds_note(load_frame(runs))
    assert note is not None
    assert "experts/cpu-shapes-k: aaaa in 2 results, bbbb in 1 results" in note
    assert "anchors" not in note  # read in one build by every result
    paths = write_report(runs, tmp_path / "report", formats=["markdown"], gallery=False)
    markdown = next(p for p in paths if p.name == "report_hard.md").read_text()
    assert "aaaa in 2 results, bbbb in 1 results" in markdown
    # An extension that read another build than its cell counts under both.
    both = _runs(tmp_path / "both", [same, {**same, "experts/cpu-shapes-k": "aaaa,bbbb"}])
    assert "aaaa in 2 results, bbbb in 1 results" in (builds_note(load_frame(both)) or "")


@pytest.mark.slow
def test_a_cells_result_names_the_artifacts_it_read(tmp_path: Path) -> None:
    from mdd_bench.cli import cli

    out = tmp_path / "runs"
    run = ["run", "--protocol", "smoke", "--repetitions", "1", "--budgets", "10", "--out", str(out)]
    done = CliRunner().invoke(cli, [*run, "--methods", "random,k-center,mtt-vl"])
    assert done.exit_code == 0, done.output
    home = cache_dir("anchors").parent
    recorded = {}
    for method in ("random", "k-center", "mtt-vl"):
        found = json.loads((out / "smoke" / "shapes" / method / "b10-s0.json").read_text())["artifacts"]
        # Each digest is the one of the artifact now in the cache (an independent read of its bytes).
        assert found == {name: artifact_digest(home / name) for name in found}
        recorded[method] = {name.split("/")[0] for name in found}
    assert {"anchors", "text"} <= recorded["random"]
    assert "references" not in recorded["random"] and "experts" not in recorded["random"]
    assert "references" in recorded["k-center"]  # k-center picks pairs with the full-data model
    assert "experts" in recorded["mtt-vl"]
