"""What `mdd-bench tune` may vary for a method: typed ranges declared in the plugin beside its `defaults`.

A method's `search_space` maps a protocol name to {hyper-parameter: range}, looked up along the
protocol's lineage like `defaults`. Ranges are `Float`, `Int` and `Choice`; a bound may be a function of
the protocol and the values drawn before it (in declaration order), for ranges that depend on each other
(a start epoch plus an expert span must stay inside the stored epochs). Every key and every value is
checked against the method's hyper-parameter dataclass before a trial runs, so a typo is one line.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Union
from typing import Protocol as TypingProtocol

from pydantic import TypeAdapter, ValidationError

from mdd_bench.errors import MddError, did_you_mean
from mdd_bench.protocol import Protocol

# A bound: a number, or a function of (protocol, the values drawn so far) giving one.
Bound = Union[float, Callable[[Protocol, dict[str, Any]], float]]  # noqa: UP007 (a runtime alias)


class Suggester(TypingProtocol):
    """What a range needs from a trial (Optuna's `Trial` is one)."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def _resolve(bound: Bound, protocol: Protocol, drawn: dict[str, Any]) -> float:
    return bound(protocol, drawn) if callable(bound) else bound


@dataclass(frozen=True)
class Float:
    low: Bound
    high: Bound
    log: bool = False

    def bounds(self, protocol: Protocol, drawn: dict[str, Any]) -> tuple[float, float]:
        return float(_resolve(self.low, protocol, drawn)), float(_resolve(self.high, protocol, drawn))

    def suggest(self, trial: Suggester, name: str, protocol: Protocol, drawn: dict[str, Any]) -> float:
        low, high = self.bounds(protocol, drawn)
        return trial.suggest_float(name, low, high, log=self.log)

    def values(self) -> tuple[Any, ...]:
        return ()


@dataclass(frozen=True)
class Int:
    low: Bound
    high: Bound
    log: bool = False
    step: int = 1

    def bounds(self, protocol: Protocol, drawn: dict[str, Any]) -> tuple[int, int]:
        return int(_resolve(self.low, protocol, drawn)), int(_resolve(self.high, protocol, drawn))

    def suggest(self, trial: Suggester, name: str, protocol: Protocol, drawn: dict[str, Any]) -> int:
        low, high = self.bounds(protocol, drawn)
        return trial.suggest_int(name, low, high, step=self.step, log=self.log)

    def values(self) -> tuple[Any, ...]:
        return ()


@dataclass(frozen=True)
class Choice:
    options: tuple[Any, ...]

    def bounds(self, protocol: Protocol, drawn: dict[str, Any]) -> tuple[Any, Any]:
        return self.options[0], self.options[-1]

    def suggest(self, trial: Suggester, name: str, protocol: Protocol, drawn: dict[str, Any]) -> Any:
        return trial.suggest_categorical(name, self.options)

    def values(self) -> tuple[Any, ...]:
        return self.options


Range = Float | Int | Choice
SearchSpace = Mapping[str, Range]


def _field_types(hparams_class: type) -> dict[str, Any]:
    hints = typing.get_type_hints(hparams_class)
    return {f.name: hints[f.name] for f in dataclasses.fields(hparams_class)}


def check_space(method: str, hparams_class: type, space: SearchSpace, protocol: Protocol) -> None:
    """Raise a one-line MddError for a key the method lacks or a range its type cannot hold."""
    types = _field_types(hparams_class)
    drawn: dict[str, Any] = {}
    for key, rng in space.items():
        if key not in types:
            raise MddError(
                f"Search space of '{method}': no hyper-parameter '{key}'.{did_you_mean(key, list(types))}"
            )
        where = f"Search space of '{method}', {key}"
        if not isinstance(rng, Float | Int | Choice):
            raise MddError(f"{where}: {rng!r} is not a range; use Float(low, high), Int(...) or Choice(...).")
        kind = types[key]
        if isinstance(rng, Float | Int):
            low, high = rng.bounds(protocol, drawn)
            if not (math.isfinite(low) and math.isfinite(high)) or low > high:
                raise MddError(f"{where}: low {low} must be finite and at most high {high}.")
            if rng.log and low <= 0:
                raise MddError(f"{where}: a log range needs low > 0 (got {low}); use Choice to include 0.")
            wanted = float if isinstance(rng, Float) else int
            if kind is not wanted:
                fits = {float: "Float", int: "Int"}.get(kind, "Choice")
                raise MddError(
                    f"{where}: a {type(rng).__name__} range on a {getattr(kind, '__name__', kind)} "
                    f"hyper-parameter; use {fits}."
                )
            samples = (low, high)
        else:
            if not rng.options:
                raise MddError(f"{where}: Choice needs at least one option.")
            samples = rng.options
        adapter = TypeAdapter(kind)
        for value in samples:
            try:
                adapter.validate_python(value, strict=kind in (int, bool))
            except ValidationError:
                raise MddError(
                    f"{where}: {value!r} is not a valid {getattr(kind, '__name__', kind)}."
                ) from None
        drawn[key] = samples[0]


def suggest(trial: Suggester, space: SearchSpace, protocol: Protocol) -> dict[str, Any]:
    """One draw of every range, in declaration order (later bounds may read earlier values)."""
    drawn: dict[str, Any] = {}
    for key, rng in space.items():
        drawn[key] = rng.suggest(trial, key, protocol, drawn)
    return drawn


def describe(space: SearchSpace) -> dict[str, str]:
    """Readable ranges for listings and the docs ("Float(1, 3000, log)")."""
    out: dict[str, str] = {}
    for key, rng in space.items():
        if isinstance(rng, Choice):
            out[key] = "Choice(" + ", ".join(repr(v) for v in rng.options) + ")"
        else:
            low = "f(...)" if callable(rng.low) else f"{rng.low:g}"
            high = "f(...)" if callable(rng.high) else f"{rng.high:g}"
            out[key] = f"{type(rng).__name__}({low}, {high}{', log' if rng.log else ''})"
    return out
