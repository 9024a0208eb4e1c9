"""Which cells get the longer run (issue 34): still rising at the maximum in most seeds, main grid only."""

import pandas as pd
from bench_scripts import load_bench

still_rising = load_bench("still_rising")


def rows(method: str, budget: int, flags: list[int], group: str = "", top: int = 900) -> list[dict]:
    out = []
    for seed, flag in enumerate(flags):
        for metric, value in (("still_rising", float(flag)), ("max_iterations", float(top))):
            out.append({"protocol": "cpu", "method": method, "budget": budget, "seed": seed, "track": "-",
                        "metric": metric, "value": value, "ablation_group": group})  # fmt: skip
    return out


def test_most_seeds_rising_are_listed_with_their_maximum() -> None:
    frame = pd.DataFrame(
        rows("lors", 100, [1, 1, 0])  # 2 of 3: listed
        + rows("tesla", 100, [1, 0, 0])  # 1 of 3: not
        + rows("mdm", 100, [1, 1], top=300)  # both of 2
        + rows("mtt-vl", 100, [1, 0])  # half is not most
        + rows("repblend", 100, [1, 1, 1], group="factors")  # an ablation is not the grid
        + rows("lors", 200, [0, 0, 0])
    )
    assert still_rising.rising_cells(frame) == [("cpu", "lors", 100, 900), ("cpu", "mdm", 100, 300)]
    assert still_rising.rising_cells(pd.DataFrame(rows("lors", 100, [0]))) == []
