"""The FINDINGS script's seed comparison: Welch's interval against scipy's own, and degenerate input."""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench_scripts import load_bench
from scipy import stats

findings = load_bench("findings_numbers")


def test_welch_matches_scipy_interval():
    a, b = np.array([27.1, 25.9, 28.0]), np.array([23.4, 21.0, 22.2, 24.9])
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    d = findings.welch(a, b)
    assert d.diff == pytest.approx((ci.low + ci.high) / 2)
    assert d.half == pytest.approx((ci.high - ci.low) / 2)


def test_welch_degenerate_inputs():
    one = findings.welch(np.array([20.0]), np.array([18.0, 19.0]))
    assert one.diff == pytest.approx(1.5) and math.isnan(one.half)  # one seed: no interval
    same = findings.welch(np.array([5.0, 5.0]), np.array([3.0, 3.0]))
    assert same.diff == 2.0 and same.half == 0.0  # no spread at all
    nan = findings.welch(np.array([math.nan, 4.0, 6.0]), np.array([]))
    assert math.isnan(nan.diff) and nan.n_a == 2 and nan.n_b == 0
    assert findings.welch(np.array([1.0, 3.0]), np.array([2.0, 2.0])).text().startswith("+0.0 ±")


def test_blend_section_separates_protocol_from_method():
    """Hand-made seeds: RepBlend@frozen 30, LoRS@cpu 20, LoRS@frozen 26: the paper-style gain is 10, of
    which 4 (40%) is left when both run under the frozen protocol."""
    rows = []
    for protocol, method, level in [("cpu-frozen", "repblend", 30.0), ("cpu", "lors", 20.0),
                                    ("cpu-frozen", "lors", 26.0), ("cpu", "repblend", 21.0)]:  # fmt: skip
        for seed, delta in enumerate((-1.0, 0.0, 1.0)):
            rows.append({"protocol": protocol, "track": "hard", "metric": "mean", "source": True,
                         "ablation_group": "", "method": method, "budget": 100, "seed": seed,
                         "value": level + delta})  # fmt: skip
    frame = pd.DataFrame(rows)
    grid = findings.blend_grid(frame, "hard")
    assert list(grid[("lors", "cpu-frozen", 100)]) == [25.0, 26.0, 27.0]
    text = findings.blend_section(frame, "hard")
    lines = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1].strip(" |") for line in text.splitlines()[4:]
    }
    assert lines["repblend@cpu-frozen − lors@cpu (the paper's comparison)"].startswith("+10.0 ±")
    assert lines["repblend − lors, both under cpu-frozen"].startswith("+4.0 ±")
    assert lines["repblend − lors, both under cpu"].startswith("+1.0 ±")
    assert lines["share of the paper-style gain left under cpu-frozen alone"] == "40%"
    assert lines["repblend under cpu"] == "21.0 ± 1.0"


def test_blend_section_claims_no_share_without_a_gain_or_a_cell():
    """Degenerate 2 x 2: no paper-style gain (RepBlend@frozen = LoRS@cpu, constant seeds), a gain inside
    the noise (its interval spans 0: the ratio would be any number, -1010% once on real cells) or a
    missing LoRS@frozen cell gives no share, not 0%, a wild ratio or a division by zero."""

    def frame(cells):
        return pd.DataFrame([{"protocol": p, "track": "hard", "metric": "mean", "source": True,
                              "ablation_group": "", "method": m, "budget": 100, "seed": s, "value": v}
                             for p, m, v in cells for s in range(3)])  # fmt: skip

    def share(text):
        line = next(ln for ln in text.splitlines() if ln.startswith("| share"))
        return line.split(" | ")[1].strip(" |")

    tied = frame([("cpu-frozen", "repblend", 20.0), ("cpu", "lors", 20.0), ("cpu-frozen", "lors", 18.0)])
    assert share(findings.blend_section(tied, "hard")) == "no gain to share (interval spans 0)"
    noisy = frame([("cpu-frozen", "lors", 18.0)]).assign(
        value=lambda f: f["value"] + [-9.0, 0.0, 9.0]  # seeds 9 apart
    )
    for protocol, method, level in [("cpu-frozen", "repblend", 20.5), ("cpu", "lors", 20.0)]:
        noisy = pd.concat(
            [noisy, frame([(protocol, method, level)]).assign(value=lambda f: f["value"] + [-9, 0, 9])]
        )
    text = findings.blend_section(noisy, "hard")
    assert "| repblend@cpu-frozen − lors@cpu (the paper's comparison) | +0.5 ±" in text
    assert share(text) == "no gain to share (interval spans 0)"
    one = frame([("cpu-frozen", "repblend", 30.0), ("cpu", "lors", 20.0), ("cpu-frozen", "lors", 26.0)])
    assert share(findings.blend_section(one[one["seed"] == 0], "hard")) == "-- (fewer than 2 seeds)"
    missing = frame([("cpu-frozen", "repblend", 30.0), ("cpu", "lors", 20.0)])
    text = findings.blend_section(missing, "hard")
    assert share(text) == "--" and "| lors under cpu-frozen | -- |" in text


sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))  # poster_claims imports findings_numbers
import poster_claims  # noqa: E402


def test_verdict_needs_the_interval_to_exclude_zero():
    diff = findings.Diff
    assert poster_claims.verdict(diff(3.0, 2.0, 3, 3)) == "holds"
    assert poster_claims.verdict(diff(3.0, 3.0, 3, 3)).startswith("tie")  # touching 0 is not a win
    assert poster_claims.verdict(diff(-3.0, 2.0, 3, 3)) == "reversed"
    assert poster_claims.verdict(diff(-1.0, 2.0, 3, 3), "not-worse") == "holds (tie)"
    assert poster_claims.verdict(diff(-3.0, 2.0, 3, 3), "not-worse") == "does not hold (worse)"
    assert poster_claims.verdict(diff(5.0, math.nan, 1, 3)).startswith("open")
    assert poster_claims.verdict(diff(math.nan, math.nan, 0, 3)) == "not run yet"


def _rows(cells, **extra):
    return pd.DataFrame([{"protocol": "cpu", "track": "hard", "metric": "mean", "source": True,
                          "ablation_group": "", "method": m, "budget": 100, "seed": s, "value": v,
                          "rep_std": math.nan, "repetitions": 5, "deterministic": False, **extra}
                         for m, s, v in cells])  # fmt: skip


def test_deterministic_method_falls_back_to_its_evaluation_runs():
    """A deterministic coreset has one seed: its spread is its evaluation runs', not 'no interval'."""
    frame = _rows([("herding", 0, 18.0)], deterministic=True, rep_std=0.5)
    frame = pd.concat(
        [frame, _rows([("random", s, v) for s, v in enumerate((17.0, 18.0, 16.0))])], ignore_index=True
    )
    table = findings.seed_values(frame, "cpu", "hard")
    herding = findings.sample_of(table, "herding", 100)
    assert (herding.mean, herding.sd, herding.n) == (18.0, 0.5, 5)
    random = findings.sample_of(table, "random", 100)
    assert random.mean == pytest.approx(17.0) and random.sd == pytest.approx(1.0) and random.n == 3
    d = findings.welch_samples(herding, random)
    ref = stats.ttest_ind_from_stats(18.0, 0.5, 5, 17.0, 1.0, 3, equal_var=False)
    assert d.diff == pytest.approx(1.0) and ref.pvalue > 0.05 and not d.diff - d.half > 0


def _unseen(cells):
    """Unseen-pair rows: (method, seed, value, image encoder), all with the same unseen text encoder."""
    return pd.concat(
        [_rows([(m, s, v)], source=False, image_encoder=e, text_encoder="clip-text") for m, s, v, e in cells],
        ignore_index=True,
    )


def test_unseen_drop_is_per_seed_relative_to_the_source_pair():
    src = _rows([("mdm", 0, 20.0), ("mdm", 1, 30.0)], image_encoder="nf", text_encoder="bert")
    unseen = _unseen([("mdm", 0, 10.0, "vit"), ("mdm", 0, 14.0, "rn"), ("mdm", 1, 15.0, "vit"),
                      ("mdm", 1, 15.0, "rn")])  # fmt: skip
    source, other, drop = poster_claims.unseen_samples(pd.concat([src, unseen]), "cpu", "hard", "mdm", 100)
    assert other.mean == pytest.approx((12.0 + 15.0) / 2)
    assert drop.mean == pytest.approx((40.0 + 50.0) / 2) and drop.n == 2  # 20->12 and 30->15


def test_cross_arch_section_pairs_seeds_and_skips_source_only_methods():
    """A seed without unseen runs is left out of both columns, so the drop compares like with like."""
    src = _rows(
        [("mdm", 0, 20.0), ("mdm", 1, 30.0), ("lors", 0, 25.0)], image_encoder="nf", text_encoder="bert"
    )
    unseen = _unseen([("mdm", 0, 10.0, "vit"), ("mdm", 0, 14.0, "rn")])
    text = findings.cross_arch_section(pd.concat([src, unseen], ignore_index=True), "cpu", "hard")
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == 1 and rows[0].startswith("| mdm | 20.0 ")  # seed 1 has no unseen runs; lors none
    assert rows[0].rstrip(" |").endswith("| 2")  # two unseen (image, text) pairs
    assert "| 8.0 " in rows[0] and "| 40.0 " in rows[0]  # 20 -> 12: 8 points, 40 %


def test_bench_ratios_parse_the_benchmark_table(tmp_path):
    text = """Per iteration ...
budget                    lors                     mdm
   100  1.319s (1.00x)   47.4MB  0.121s (0.09x)   30.6MB
   200  1.189s (1.00x)   47.4MB  0.146s (0.12x)   30.6MB
"""
    (tmp_path / "bench.txt").write_text(text)
    ratios = poster_claims.bench_ratios(tmp_path / "bench.txt")
    assert ratios == {("lors", 100): 1.0, ("mdm", 100): 0.09, ("lors", 200): 1.0, ("mdm", 200): 0.12}
    assert poster_claims.bench_ratios(tmp_path / "missing.txt") == {}


def test_collapsed_source_recall_gives_no_relative_drop():
    """Source and unseen both at 0 recall: the points drop is 0, the relative drop is undefined ('--'),
    not 0 % or a division error."""
    src = _rows([("mdm", 0, 0.0), ("mdm", 1, 0.0)], image_encoder="nf", text_encoder="bert")
    frame = pd.concat([src, _unseen([("mdm", 0, 0.0, "vit"), ("mdm", 1, 0.0, "vit")])], ignore_index=True)
    row = [line for line in findings.cross_arch_section(frame, "cpu", "hard").splitlines() if "| mdm" in line]
    assert row[0].split(" | ")[3:5] == ["0.0 ± 0.0", "--"]
    assert poster_claims.unseen_samples(frame, "cpu", "hard", "mdm", 100)[2].n == 0


def test_unseen_rows_outside_the_cross_arch_budget_say_so():
    """The grid runs unseen encoders at 100 pairs only: a 200-pair row is not 'not run yet' but out of scope;
    a 100-pair row with no unseen cells is still 'not run yet'."""
    frame = pd.concat(
        [
            _rows([(m, s, 20.0 + s) for m in ("mdm", "lors") for s in range(2)], budget=b, image_encoder="nf",
                  text_encoder="bert")
            for b in (100, 200)
        ]
    )  # fmt: skip
    text = poster_claims.claims_table(frame, "cpu", "hard", Path("missing.md"), recall_only=True)
    unseen = [line for line in text.splitlines() if "unseen encoders" in line]
    assert len(unseen) == 4
    assert all(line.rstrip(" |").endswith("not run yet") for line in unseen if "| 100 |" in line)
    assert all(poster_claims.OUTSIDE_GRID in line for line in unseen if "| 200 |" in line)


def test_ablation_section_skips_groups_with_one_variant_on_the_track():
    """The ablations ran the hard track; only their main variant has a native row. A one-entry
    'ranking' would read as a result, so the group, and then the section, is left out."""
    cells = [("mdm", s, v) for s, v in enumerate((27.0, 28.0, 29.0))]
    hard = pd.concat(
        [
            _rows(cells, ablation_group="loss", ablation_variant="+both"),
            _rows([(m, s, v - 1) for m, s, v in cells], ablation_group="loss", ablation_variant="L_NCE"),
        ],
        ignore_index=True,
    )
    native = _rows(cells, ablation_group="loss", ablation_variant="+both").assign(track="native")
    frame = pd.concat([hard, native], ignore_index=True)
    assert findings.ablation_section(frame, "cpu", "hard").splitlines()[1] == (
        "- mdm loss, 100 pairs: +both 28.0 ± 1.0 > L_NCE 27.0 ± 1.0"
    )
    assert findings.ablation_section(frame, "cpu", "native") == ""
