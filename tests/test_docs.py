"""The documentation site under docs/: the plugin page's worked example runs as a third-party plugin,
the navigation and the pages agree, the paths the pages name exist, README stays a first screen that
links into the site, and `mkdocs build --strict` passes (when mkdocs is installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
# A fenced block preceded by `<!-- plugin-example: PATH -->` is the file PATH of the worked example.
EXAMPLE = re.compile(r"<!-- plugin-example: (\S+) -->\s*\n```[\w-]*\n(.*?)\n```", re.S)
GROUP = "mdd_bench.methods"


def example_files() -> dict[str, str]:
    return dict(EXAMPLE.findall((DOCS / "plugins.md").read_text()))


def nav_pages(nav) -> list[str]:
    """Every page path of a mkdocs `nav` (strings, {title: page} and {title: [...]} entries)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return [page for entry in nav for page in nav_pages(entry)]


def clear_registry_caches() -> None:
    """Forget what the registry cached, so it sees (or stops seeing) the plugin on sys.path."""
    from mdd_bench import registry

    for value in list(vars(registry).values()):
        clear = getattr(value, "cache_clear", None)
        if callable(clear):
            clear()


@pytest.fixture
def documented_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The worked example of docs/plugins.md, put on sys.path like an installed distribution: its Python
    files as they are on the page, a dist-info with the page's name, version and entry points."""
    files = example_files()
    assert "pyproject.toml" in files and any(path.endswith(".py") for path in files), files
    project = tomllib.loads(files["pyproject.toml"])["project"]
    site = tmp_path / "site"
    for path, text in files.items():
        if path.endswith(".py"):
            (site / path).parent.mkdir(parents=True, exist_ok=True)
            (site / path).write_text(text + "\n")
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    entry_points = project["entry-points"][GROUP]
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(site))
    clear_registry_caches()
    yield project
    modules = {target.split(":")[0].split(".")[0] for target in entry_points.values()}
    for name in [m for m in sys.modules if m.split(".")[0] in modules]:
        sys.modules.pop(name)
    clear_registry_caches()


def test_plugin_page_marks_the_example_files() -> None:
    files = example_files()
    assert set(files) == {"my_plugin/__init__.py", "pyproject.toml"}
    project = tomllib.loads(files["pyproject.toml"])["project"]
    assert project["entry-points"][GROUP] == {"caption-spread": "my_plugin:CaptionSpread"}
    compile(files["my_plugin/__init__.py"], "my_plugin/__init__.py", "exec")


@pytest.mark.slow
def test_plugin_page_example_runs_through_mdd_bench_run(documented_plugin: dict, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mdd_bench.cli import cli
    from mdd_bench.distilled import DistilledSet

    listed = CliRunner().invoke(cli, ["list", "methods"])
    assert listed.exit_code == 0, listed.output
    assert "caption-spread" in listed.output and "my_plugin" in listed.output
    out = tmp_path / "runs"
    args = ["run", "--protocol", "smoke", "--methods", "caption-spread", "--budgets", "10",
            "--repetitions", "1", "--tracks", "hard", "--no-random-baseline", "--no-report",
            "--set", "caption-spread.candidates=50", "--out", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    result = json.loads((out / "smoke" / "shapes" / "caption-spread" / "b10-s0.json").read_text())
    assert result["hparams"] == {"candidates": 50}  # --set over the page's smoke default (60)
    assert result["method_dist"]["name"] == documented_plugin["name"]
    assert result["distill"]["extra"]["coverage_radius"] > 0
    assert result["evaluation"]["hard"]["archs"][0]["mean"]["mean"] >= 0
    chosen = DistilledSet.load(result["distilled_set"]).provenance["real_indices"]
    assert len(set(chosen)) == 10

    bad = CliRunner().invoke(cli, [*args[:-4], "--set", "caption-spread.candidates=many", "--out", str(out)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    assert len(listed) == len(set(listed)), "a page is listed twice in mkdocs.yml's nav"
    missing = [page for page in listed if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist: {missing}"
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    left_out = [page for page in pages if page not in listed]
    assert not left_out, f"pages missing from mkdocs.yml's nav: {left_out}"


def test_paths_the_pages_name_exist() -> None:
    """A file or folder of the repository named in a code span (`mdd_bench/...`, `reports/...`) is
    there, so the pages follow the code when it moves."""
    span = re.compile(r"`((?:mdd_bench|reports|benchmarks|tests)/[^`\s]*)`")
    stale = []
    for page in [*DOCS.rglob("*.md"), REPO / "README.md"]:
        for path in span.findall(page.read_text()):
            if any(c in path for c in "<{"):  # a pattern such as `mdd_bench/methods/<name>.py`
                continue
            found = list(REPO.glob(path.rstrip("/"))) if "*" in path else (REPO / path).exists()
            if not found:
                stale.append(f"{page.relative_to(REPO)}: {path}")
    assert not stale, f"paths named in the docs that do not exist: {stale}"


def test_readme_is_a_first_screen_that_links_into_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert links, "README links into docs/"
    assert not [link for link in links if not (REPO / link).is_file()]
    assert "mkdocs build --strict" in readme


@pytest.mark.slow
def test_site_builds_with_mkdocs_strict(tmp_path: Path) -> None:
    needed = ("mkdocs", "material", "mkdocs_click", "mkdocstrings_handlers")
    absent = [name for name in needed if importlib.util.find_spec(name) is None]
    if absent:
        pytest.skip(f"the docs extra is not installed (pip install -e '.[docs]'): {', '.join(absent)}")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "site" / "cli" / "index.html").read_text().count("mdd-bench run") > 0
    assert "DistillContext" in (tmp_path / "site" / "api" / "index.html").read_text()
