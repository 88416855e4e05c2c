"""A schema field's three facts, declared once and side by side: its default, its help, its allowed values.

`doc("prompts per generation batch", ge=1)` makes a dataclass field whose metadata carries the help and a
`Check`; `mbdef.schemas.validate` reads both when it checks a composed config, and `describe` prints them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


class ConfigError(ValueError):
    """A config value outside what its schema allows; the message names each key, its value and the range."""


@dataclass(frozen=True)
class Check:
    """Allowed values of one field: a numeric interval (`ge`/`gt`, `le`/`lt`) or names (`one_of`). A list value
    is checked item by item; `or_list`: a list is accepted as it is (e.g. explicit behaviours instead of a mode)."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    one_of: tuple | None = None
    or_list: bool = False

    def describe(self) -> str:
        if self.one_of is not None:
            return "one of " + " | ".join(map(str, self.one_of)) + (", or a list" if self.or_list else "")
        lo = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else "(-inf"
        hi = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else "inf)"
        return f"{lo}, {hi}"

    def violation(self, value: Any) -> str | None:
        """Why `value` is not allowed (None: it is). None itself is left to the field's type (Optional)."""
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if self.or_list:
                return None
            return next((f"item {v!r} {why}" for v in value if (why := self.violation(v))), None)
        if self.one_of is not None:
            return None if value in self.one_of else f"is not {self.describe()}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return f"is not a number in {self.describe()}"
        inside = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                  and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        return None if inside else f"is outside {self.describe()}"

    def outside(self) -> Any:
        """A value this check refuses (the tests give one to every checked field)."""
        if self.one_of is not None:  # numeric choices (bits) need a number that is not one of them
            numeric = all(isinstance(v, int) and not isinstance(v, bool) for v in self.one_of)
            return max(self.one_of) + 1 if numeric else "not_a_choice"
        if self.ge is not None:
            return self.ge - 1
        if self.gt is not None:
            return self.gt
        if self.le is not None:
            return self.le + 1
        return self.lt


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def doc(help: str, default=MISSING, factory=None, *, optional: bool = False, ge=None, gt=None, le=None, lt=None,
        one_of=None, or_list: bool = False):
    """A dataclass field with its help string and allowed values. `optional`: the key may be absent from a
    config (the code's own default then applies); validation checks it when present."""
    check = (Check(ge, gt, le, lt, tuple(one_of) if one_of is not None else None, or_list)
             if any(x is not None for x in (ge, gt, le, lt, one_of)) else None)
    meta = {"help": help, "check": check, "optional": optional}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)
