"""Whether the results one report compares stood on the same builds of the cached artifacts.

Each result names the anchors, experts, reference and text features it read, with a digest
(`digests.py`). Results from sessions or machines that built an artifact differently differ by more
than their seeds; the retrieval table says so when that happens. Files older than the record carry
none and are not counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

ARTIFACTS = "artifacts"  # frame.attrs key: result file -> {artifact name: digest}


def file_artifacts(result: dict[str, Any]) -> dict[str, str]:
    recorded = result.get(ARTIFACTS)
    if not isinstance(recorded, dict):
        return {}
    return {str(k): str(v) for k, v in recorded.items()}


def artifact_builds(frame: pd.DataFrame) -> dict[str, Counter]:
    """Per artifact name, how many of the frame's result files read each build (digest)."""
    per_file = frame.attrs.get(ARTIFACTS, {})
    builds: dict[str, Counter] = {}
    for file in dict.fromkeys(frame["file"]):
        for name, digests in per_file.get(file, {}).items():
            for digest in digests.split(","):
                builds.setdefault(name, Counter())[digest] += 1
    return builds


def builds_note(frame: pd.DataFrame) -> str | None:
    """A note naming every artifact read in more than one build among the frame's results, else None."""
    mixed = {name: count for name, count in sorted(artifact_builds(frame).items()) if len(count) > 1}
    if not mixed:
        return None
    parts = [
        f"{name}: " + ", ".join(f"{digest} in {n} results" for digest, n in sorted(count.items()))
        for name, count in mixed.items()
    ]
    return (
        f"Cached artifacts differ among these results ({'; '.join(parts)}): results on different builds "
        "differ by more than their seeds (see `artifacts` in each result file)."
    )
