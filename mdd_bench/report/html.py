"""`report.html`: one self-contained page per protocol (no network: the CSS, the script and every image
are inlined) with the tables of every track behind a track switch, sortable columns, the figures, the
galleries of the distilled sets, and for each number the result files it came from (protocol, seeds,
versions and a relative link to the JSON).

The tables are the very `Table` objects the Markdown and LaTeX writers print (`build_tables`, once per
track); this module only lays them out.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from collections.abc import Iterable
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from PIL import Image

from mdd_bench.record import read_result
from mdd_bench.report.figures import write_figures
from mdd_bench.report.frame import TIMING_TRACK
from mdd_bench.report.gallery import Gallery
from mdd_bench.report.html_table import table_section
from mdd_bench.report.layout import Table
from mdd_bench.report.lineage import Lineage
from mdd_bench.report.random_weights import NOTE as RANDOM_WEIGHTS_NOTE
from mdd_bench.report.random_weights import is_random
from mdd_bench.report.tables import TRACK_TEXT, build_tables


def _asset(name: str) -> str:
    return (resources.files("mdd_bench.report") / name).read_text(encoding="utf-8")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _relative(target: Path, page_dir: Path) -> str:
    return Path(os.path.relpath(target.resolve(), page_dir.resolve())).as_posix()


def _href(target: Path, page_dir: Path) -> str:
    """A relative link from the page to a file, URL-quoted (it still works once both folders move)."""
    return quote(_relative(target, page_dir))


def _eval_seeds(result: dict[str, Any]) -> dict[str, list[int]]:
    """Per track, the seeds of the source encoders' evaluation repetitions."""
    out = {}
    for track, evaluation in result["evaluation"].items():
        archs = evaluation.get("archs", [])
        source = next((a for a in archs if a.get("source")), archs[0] if archs else {})
        out[track] = list(source.get("seeds", []))
    return out


def provenance(
    runs: Path, files: Iterable[str], page_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """What the page shows about each result file, and each file's index in that list."""
    records, index = [], {}
    for file in dict.fromkeys(files):
        result = read_result(runs / file)
        ablation = result.get("ablation") or {}
        index[file] = len(records)
        records.append(
            {
                "file": file,
                "href": _href(runs / file, page_dir),
                "method": result["method"],
                "dataset": result["dataset"],
                "budget": result["budget"],
                "seed": result["seed"],
                "protocol": result["protocol"],
                "protocol_hash": result.get("protocol_hash", ""),
                "eval_seeds": _eval_seeds(result),
                "versions": result.get("versions", {}),
                "created": result.get("created", ""),
                "ablation": f"{ablation['group']}: {ablation['variant']}" if ablation else "",
            }
        )
    return records, index


def tables_by_track(
    frame: pd.DataFrame,
    tracks: list[str],
    baseline: str | None,
    interval: str,
    lineage: Lineage | None = None,
    before: pd.DataFrame | None = None,
) -> list[tuple[str, dict[str | None, Table]]]:
    """Every table of every track, paired across tracks by name (`retrieval_hard` and `retrieval_native`
    are one entry); a table without the track in its name (timing) is shared, under None."""
    entries: dict[str, dict[str | None, Table]] = {}
    for track in tracks:
        for table in build_tables(frame, track, baseline, interval, lineage, before):
            suffix = f"_{track}"
            if table.name.endswith(suffix):
                entries.setdefault(table.name[: -len(suffix)], {})[track] = table
            else:
                entries.setdefault(table.name, {}).setdefault(None, table)
    return list(entries.items())


def figures_by_track(
    frame: pd.DataFrame, tracks: list[str], written: dict[str, list[tuple[Path, str]]]
) -> dict[str, dict[str, bytes]]:
    """caption -> track -> PNG bytes: the figures already written for a track, the others drawn aside."""
    out: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="mdd-figures-") as tmp:
        for track in tracks:
            figures = written.get(track) or write_figures(frame, track, Path(tmp) / track)
            for path, caption in figures:
                if path.suffix == ".png":
                    out.setdefault(caption, {})[track] = path.read_bytes()
    return out


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def gallery_html(gallery: Gallery, result_href: str, png_href: str | None, open_: bool) -> str:
    items = []
    for k, i in enumerate(gallery.indices):
        caption, cosine = escape(gallery.captions[k]), gallery.similarities[k]
        items.append(
            f'<figure><img src="{_data_uri(_png(gallery.images[k]))}" alt="synthetic image {i}">'
            f'<figcaption><q>{caption}</q><span class="cos">#{i} · cos {cosine:.2f}</span></figcaption>'
            "</figure>"
        )
    n = len(gallery.indices)
    shown = f"{n} of {gallery.set_size} pairs" if n < gallery.set_size else f"all {n} pairs"
    links = f'<a href="{result_href}">result file</a>' + (
        f' · <a href="{png_href}">PNG</a>' if png_href else ""
    )
    return (
        f'<details class="gallery" id="g-{escape(gallery.key)}"{" open" if open_ else ""}>'
        f"<summary>{escape(gallery.title)} <small>({shown})</small></summary><p>{links}</p>"
        f'<div class="grid">{"".join(items)}</div></details>'
    )


def _track_switch(tracks: list[str], initial: str) -> str:
    options = "".join(
        f'<label title="{escape(TRACK_TEXT.get(t, t))}"><input type="radio" name="track" value="{escape(t)}"'
        f"{' checked' if t == initial else ''}> {escape(t)}</label>"
        for t in tracks
    )
    texts = "".join(
        f'<p class="track-text" data-track="{escape(t)}">{escape(TRACK_TEXT.get(t, t + " track"))}.</p>'
        for t in tracks
    )
    return f'<fieldset id="track-switch"><legend>Track</legend>{options}{texts}</fieldset>'


def render_page(
    title: str,
    entries: list[tuple[str, dict[str | None, Table]]],
    figures: dict[str, dict[str, bytes]],
    galleries: list[tuple[Gallery, str, str | None]],
    sources: list[dict[str, Any]],
    source_ids: dict[str, int],
    tracks: list[str],
    initial: str,
    intro: str,
) -> str:
    """The whole page as a string; `galleries` holds (gallery, link to its result, link to its PNG)."""
    sections, nav = [], []
    for key, by_track in entries:
        title_of = next(iter(by_track.values())).title
        anchor = f"s-{escape(key)}"
        nav.append(f'<li><a href="#{anchor}">{escape(title_of)}</a></li>')
        if None in by_track:
            body = table_section(by_track[None], source_ids)
        else:
            body = "".join(
                f'<div data-track="{escape(t)}">'
                + (
                    table_section(by_track[t], source_ids)
                    if t in by_track
                    else f'<p class="none">No {escape(t)}-track results for this table.</p>'
                )
                + "</div>"
                for t in tracks
            )
        shared = ' <small class="shared">(the same for every track)</small>' if None in by_track else ""
        sections.append(f'<section id="{anchor}"><h2>{escape(title_of)}{shared}</h2>{body}</section>')
    if figures:
        nav.append('<li><a href="#s-figures">Figures</a></li>')
        blocks = []
        for caption, by_track in figures.items():
            for t in tracks:
                inner = (
                    f'<img src="{_data_uri(by_track[t])}" alt="{escape(caption)}, {escape(t)} track">'
                    if t in by_track
                    else f'<p class="none">No {escape(t)}-track figure.</p>'
                )
                blocks.append(
                    f'<figure class="plot" data-track="{escape(t)}">{inner}'
                    f"<figcaption>{escape(caption)} ({escape(t)} track)</figcaption></figure>"
                )
        sections.append(f'<section id="s-figures"><h2>Figures</h2>{"".join(blocks)}</section>')
    if galleries:
        nav.append('<li><a href="#s-galleries">Distilled sets</a></li>')
        # The first opens by itself; all do when there are few.
        body = "".join(
            gallery_html(g, r, p, k == 0 or len(galleries) <= 4) for k, (g, r, p) in enumerate(galleries)
        )
        sections.append(
            '<section id="s-galleries"><h2>Distilled sets</h2><p class="caption">Synthetic images '
            "(de-normalised with the protocol's mean and std), each with the real training caption whose "
            "embedding is nearest (cosine) to its synthetic text embedding under the source text encoder."
            f"</p>{body}</section>"
        )
    data = json.dumps(sources, ensure_ascii=False).replace("</", "<\\/")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_asset('page.css')}</style></head>"
        f'<body data-initial-track="{escape(initial)}"><header><h1>{escape(title)}</h1>'
        f'<p class="intro">{escape(intro)}</p>{_track_switch(tracks, initial)}'
        f"<nav><ol>{''.join(nav)}</ol></nav></header><main>{''.join(sections)}</main>"
        '<aside id="provenance" hidden><button type="button" class="close" aria-label="close">×</button>'
        '<div class="content"></div></aside>'
        f'<script type="application/json" id="mdd-sources">{data}</script>'
        f"<script>{_asset('page.js')}</script></body></html>\n"
    )


def write_html(
    path: Path,
    frame: pd.DataFrame,
    runs: Path,
    track: str,
    baseline: str | None = None,
    interval: str = "std",
    figures: dict[str, list[tuple[Path, str]]] | None = None,
    galleries: Iterable[Gallery] = (),
    gallery_pngs: dict[str, Path] | None = None,
    lineage: Lineage | None = None,
    before: pd.DataFrame | None = None,
) -> Path:
    """The page of one protocol's results at `path`, opened on `track`; `figures` holds figures already
    written per track (the others are drawn for the page alone), `gallery_pngs` the PNG of each gallery
    key that was written, `lineage` the protocols to compare it with (their result files are linked too),
    `before` the same protocol's results from another folder (the before -> after table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page_dir = path.parent
    present = set(frame["track"]) - {TIMING_TRACK}
    tracks = [track] + sorted(present - {track})
    protocol = frame["protocol"].iloc[0]
    files = list(dict.fromkeys(frame["file"]))
    others = [] if lineage is None else [f for f in dict.fromkeys(lineage.frame["file"]) if f not in files]
    sources, source_ids = provenance(runs, files + others, page_dir)
    pngs = gallery_pngs or {}
    shown = [
        (
            g,
            sources[source_ids[g.result_file]]["href"],
            _href(pngs[g.key], page_dir) if g.key in pngs else None,
        )
        for g in galleries
    ]
    intro = (
        f"{len(files)} result files of protocol {protocol} under {_relative(runs, page_dir)}/. Click a "
        "column header to sort the rows of each block (again to reverse, a third time for the printed "
        "order); click a number for the result files behind it."
    )
    title = f"mdd-bench report: protocol {protocol}"
    if is_random(frame):  # the title and the first line of the page: no one reads these numbers as results
        title, intro = f"{title}. {RANDOM_WEIGHTS_NOTE}", f"{RANDOM_WEIGHTS_NOTE} {intro}"
    page = render_page(
        title,
        tables_by_track(frame, tracks, baseline, interval, lineage, before),
        figures_by_track(frame, tracks, figures or {}),
        shown,
        sources,
        source_ids,
        tracks,
        track,
        intro,
    )
    path.write_text(page, encoding="utf-8")
    return path
