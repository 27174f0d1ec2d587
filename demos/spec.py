"""What a demo declares about itself: typed, bounded parameters, needs and timeout."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class DemoParamError(ValueError):
    """A demo parameter is unknown, of the wrong type, or out of bounds."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: type                       # int, float, bool or str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    advanced: bool = False           # e.g. planted-bug variants: hidden from the casual UI

    def parse(self, raw: Any) -> Any:
        """Convert `raw` (a value or a command-line string) and check the bounds."""
        try:
            if self.kind is bool:
                if isinstance(raw, str):
                    low = raw.strip().lower()
                    if low not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    value = low in ("1", "true", "yes")
                else:
                    value = bool(raw)
            elif self.kind is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError(raw)
                value = int(raw)
            elif self.kind is float:
                if isinstance(raw, bool):
                    raise ValueError(raw)
                value = float(raw)
                if not math.isfinite(value):   # NaN passes every bounds check; inf is never a useful setting
                    raise ValueError(raw)
            else:
                value = str(raw)
        except (TypeError, ValueError):
            raise DemoParamError(f"parameter '{self.name}' expects {self.kind.__name__}, got {raw!r}") from None
        if self.choices is not None and value not in self.choices:
            raise DemoParamError(f"parameter '{self.name}' must be one of {', '.join(self.choices)}; got {value!r}")
        if self.min is not None and value < self.min:
            raise DemoParamError(f"parameter '{self.name}' must be ≥ {self.min}; got {value}")
        if self.max is not None and value > self.max:
            raise DemoParamError(f"parameter '{self.name}' must be ≤ {self.max}; got {value}")
        return value


@dataclass(frozen=True)
class DemoSpec:
    id: str
    title: str                       # Chinese title shown in the UI
    summary: str                     # one line
    articles: tuple[str, ...]        # slugs of the articles that link this demo
    module: str                      # python -m <module>
    params: tuple[Param, ...] = ()
    device: str = "cpu"              # "cpu" or "cuda-preferred"
    processes: int = 1
    timeout_s: float = 120.0
    tags: tuple[str, ...] = field(default=())

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise DemoParamError(f"demo '{self.id}' has no parameter '{name}' (known: {known})")

    def validate(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults filled in, every given value parsed and bounded; unknown names are an error."""
        given = dict(given or {})
        values = {p.name: p.default for p in self.params}
        for name, raw in given.items():
            values[name] = self.param(name).parse(raw)
        return values
