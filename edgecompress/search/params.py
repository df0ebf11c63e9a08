"""One searched parameter of a search space (`space.SearchSpace.grid`): a list of values, or a range as Optuna
takes it (`low`, `high`, `step`, `log`)."""

from __future__ import annotations

import dataclasses
import json

from edgecompress.configs import require
from edgecompress.errors import EdgeCompressError


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched parameter: `choices` (categorical) or `low`..`high` (a range)."""

    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) and not isinstance(v, bool)
                                            for v in (self.low, self.high)) and (self.step is None or isinstance(self.step, int))

    def values(self) -> list | None:
        """Every value, when it can be listed (choices, or a range with a `step`)."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            return list(range(self.low, self.high + 1, self.step or 1))
        if self.step is None:
            return None
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + i * self.step, 10) for i in range(n + 1)]


def encode(v):
    """A categorical value as Optuna stores it: JSON text for anything but None/bool/int/float/str."""
    return v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v, sort_keys=True)


def parse_param(space_name: str, key: str, spec) -> Param:
    """The `Param` of grid entry `key`: a list of values, or a range; refuses anything else naming the space."""
    where = f"Search space {space_name!r}: grid key {key!r}"
    if isinstance(spec, list):
        require(bool(spec), f"{where} needs a non-empty list of values. Received: {spec!r}")
        return Param(key, choices=tuple(spec))
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"low", "high", "step", "log"})
        require(not unknown and {"low", "high"} <= set(spec),
                 f"{where}: a range is {{\"low\": L, \"high\": H}} with optional \"step\" and \"log\". "
                 f"Received: {spec!r}")
        low, high, step, log = spec["low"], spec["high"], spec.get("step"), bool(spec.get("log", False))
        num = (int, float)
        require(isinstance(low, num) and isinstance(high, num) and not isinstance(low, bool),
                 f"{where}: `low` and `high` must be numbers. Received: {spec!r}")
        require(low <= high, f"{where}: the range has low > high ({low!r} > {high!r}). Swap them.")
        require(step is None or (isinstance(step, num) and step > 0), f"{where}: `step` must be > 0. Received: {step!r}")
        require(not (log and (low <= 0 or step is not None)),
                 f"{where}: a `log` range needs low > 0 and no `step`. Received: {spec!r}")
        return Param(key, low=low, high=high, step=step, log=log)
    raise EdgeCompressError(f"{where} must be a list of values or a range {{\"low\": L, \"high\": H}}. "
                            f"Received: {spec!r}")
