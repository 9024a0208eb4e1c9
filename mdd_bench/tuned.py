"""Tuned values: what `mdd-bench tune` chose per (dataset, method, budget), read by `Method.for_protocol`.

One TOML file per protocol. The packaged protocols' files live in `mdd_bench/protocols/tuned/<name>.toml`
and are looked up along the protocol's lineage (its own file first); `mdd-bench run --tuned FILE` names
another, `--tuned none` runs the untuned defaults. Each entry carries its provenance (study, trial,
val score, trial counts, CPU hours), which every result made with it records.

    [shapes.tesla.100]
    study = "tesla-shapes-b100"
    trial = 7
    best_val = 27.3
    trials = 16
    ...
    values = { lr_img = 120.5, lr_txt = 3.2 }
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mdd_bench.errors import MddError
from mdd_bench.protocol import Protocol

TUNED_FOLDER = "tuned"


@dataclass(frozen=True)
class TunedEntry:
    dataset: str
    method: str
    budget: int
    values: dict[str, Any]
    study: str = ""
    trial: int | None = None
    best_val: float | None = None
    trials: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    cpu_hours: float = 0.0
    wall_hours: float = 0.0
    protocol: str = ""
    protocol_hash: str = ""
    source: str = ""

    def provenance(self) -> dict[str, Any]:
        """What a result records about the tuning behind its settings."""
        return {k: v for k, v in asdict(self).items() if k != "values"}


@dataclass
class TunedFile:
    entries: dict[tuple[str, str, int], TunedEntry] = field(default_factory=dict)
    source: str = ""

    def get(self, dataset: str, method: str, budget: int | None) -> TunedEntry | None:
        if budget is None:
            return None
        return self.entries.get((dataset, method, int(budget)))


ENTRY_KEYS = {f for f in TunedEntry.__dataclass_fields__} - {"dataset", "method", "budget", "source"}


def read_tuned(path: Path | str, source: str | None = None) -> TunedFile:
    """A tuned-values file; a malformed one is a one-line error naming the file and the entry."""
    path = Path(path)
    name = source or str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise MddError(f"Tuned-values file '{name}' cannot be read ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise MddError(f"Tuned-values file '{name}' is not valid TOML: {exc}.") from None
    return parse_tuned(raw, name)


def parse_tuned(raw: dict[str, Any], name: str) -> TunedFile:
    out = TunedFile(source=name)
    header = {k: raw.pop(k) for k in ("protocol", "protocol_hash") if k in raw}
    for dataset, methods in raw.items():
        if not isinstance(methods, dict):
            raise MddError(
                f"Tuned-values file '{name}': '{dataset}' must be a table [dataset.method.budget]."
            )
        for method, budgets in methods.items():
            if not isinstance(budgets, dict):
                raise MddError(f"Tuned-values file '{name}': [{dataset}.{method}] must hold budget tables.")
            for budget, entry in budgets.items():
                where = f"Tuned-values file '{name}', [{dataset}.{method}.{budget}]"
                if not budget.isdigit() or not isinstance(entry, dict):
                    raise MddError(f"{where}: the last key must be a budget (a whole number) table.")
                unknown = sorted(set(entry) - ENTRY_KEYS)
                if unknown:
                    raise MddError(f"{where}: unknown key '{unknown[0]}'.")
                if not isinstance(entry.get("values"), dict):
                    raise MddError(f"{where}: missing 'values' (a table of hyper-parameters).")
                try:
                    item = TunedEntry(dataset, method, int(budget), **{**header, **entry}, source=name)
                except TypeError as exc:
                    raise MddError(f"{where}: {exc}.") from None
                out.entries[(dataset, method, int(budget))] = item
    return out


def check_entry(entry: TunedEntry, protocol: Protocol) -> None:
    """Tuned values apply along the protocol's lineage, as defaults do, and only to the protocol version
    they were tuned under: values tuned under another version of the same protocol are an error."""
    if not entry.protocol:
        return
    where = f"{entry.source} [{entry.dataset}.{entry.method}.{entry.budget}]"
    if entry.protocol not in protocol.lineage:
        raise MddError(
            f"{where} was tuned under protocol '{entry.protocol}', which protocol '{protocol.name}' does not "
            "inherit from. Tune under this protocol, or pass --tuned none."
        )
    if entry.protocol == protocol.name and entry.protocol_hash and entry.protocol_hash != protocol.hash:
        raise MddError(
            f"{where} was tuned under another version of protocol '{protocol.name}' (hash "
            f"{entry.protocol_hash}, now {protocol.hash}). Tune again (mdd-bench tune) or pass --tuned none."
        )


def packaged_tuned(protocol: Protocol) -> TunedFile | None:
    """The packaged file of the nearest protocol in the lineage that has one."""
    folder = resources.files("mdd_bench") / "protocols" / TUNED_FOLDER
    for name in protocol.lineage:
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return parse_tuned(tomllib.loads(candidate.read_text()), f"mdd_bench/protocols/tuned/{name}.toml")
    return None


def resolve_tuned(protocol: Protocol, tuned: str | Path | None = "packaged") -> TunedFile | None:
    """`packaged` (the protocol's own packaged file, if any), `none`/None (untuned), or a file path."""
    if tuned is None or str(tuned) == "none":
        return None
    if str(tuned) == "packaged":
        return packaged_tuned(protocol)
    path = Path(tuned)
    if not path.is_file():
        raise MddError(
            f"Tuned-values file '{path}' does not exist. Pass a file `mdd-bench tune` wrote, or none."
        )
    return read_tuned(path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MddError(f"Cannot write the non-finite value {value} to a tuned-values file.")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise MddError(f"Cannot write {value!r} ({type(value).__name__}) to a tuned-values file.")


def _key(part: str) -> str:
    return part if all(c.isalnum() or c in "-_" for c in part) else _toml_value(part)


def write_tuned(path: Path, entries: list[TunedEntry], protocol: Protocol, comment: str = "") -> Path:
    """Write (atomically) the tuned TOML of `entries`, one table per (dataset, method, budget)."""
    lines = [f"# {line}" for line in comment.splitlines()] if comment else []
    lines += [f"protocol = {_toml_value(protocol.name)}", f"protocol_hash = {_toml_value(protocol.hash)}", ""]
    for e in sorted(entries, key=lambda e: (e.dataset, e.method, e.budget)):
        lines.append(f"[{_key(e.dataset)}.{_key(e.method)}.{e.budget}]")
        for key, value in asdict(e).items():
            if key in ("dataset", "method", "budget", "values", "protocol", "protocol_hash", "source"):
                continue
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        values = ", ".join(f"{k} = {_toml_value(v)}" for k, v in e.values.items())
        lines.append(f"values = {{ {values} }}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)
    return path
