"""Search spaces as data: a YAML file of fixed settings, typed distributions and search settings.

    extends: lenet5             # optional: start from a preset (tune_digits/presets/), all but its data.*
    fixed:                      # dotted keys, as in `train --set`; over the preset's
      model.name: lenet5
    space:                      # dotted key -> distribution
      train.lr: {type: loguniform, low: 3.0e-4, high: 1.0e-2}
      train.batch_size: {type: choice, values: [32, 64, 128]}
      augment.freq_masks: {type: int, low: 0, high: 3}
      model.dropout: {type: quantized, low: 0.0, high: 0.5, q: 0.05}
    search:                     # how to search
      num_samples: 16
      max_epochs: 20
    start:                      # optional: points tried first, in order (searched keys only;
      - {}                      #   a key left out takes its fixed or default value)
      - {train.batch_size: 128}

A preset's ``data.*`` settings (how one training run validates, e.g. ``data.val_clips``) are not
taken: a search judges its trials on whole validation speakers unless ``fixed`` says otherwise.

Distributions: uniform, loguniform, int (inclusive; ``log: true`` allowed), choice,
quantized (``q`` step; ``log: true`` allowed). Validation is strict: an unknown
key, a wrong type, low above high or an unknown distribution is a one-line error.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tune_digits.config import (  # noqa: F401  (MAX_SAMPLES: for callers)
    MAX_SAMPLES,
    Config,
    SearchConfig,
    all_keys,
    flatten,
    from_flat,
    list_presets,
    parse_yaml_text,
    preset_values,
    to_flat,
    with_values,
)
from tune_digits.errors import ConfigError, UserError

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice", "quantized")
_DIST_KEYS = {
    "uniform": {"low", "high"},
    "loguniform": {"low", "high"},
    "int": {"low", "high", "log"},
    "choice": {"values"},
    "quantized": {"low", "high", "q", "log"},
}


SearchSettings = SearchConfig  # the search: section of a space


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    q: float | None = None
    log: bool = False
    values: tuple[Any, ...] = ()

    def bounds(self) -> list[Any]:
        """Values that must each make a valid config (the ends of a range, or every choice)."""
        return list(self.values) if self.kind == "choice" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    source: str
    fixed: dict[str, Any]
    dims: tuple[Dimension, ...]
    search: SearchConfig = field(default_factory=SearchConfig)
    start: tuple[dict[str, Any], ...] = ()  # full points (every searched key), tried before sampling

    def base_config(self, extra: dict[str, Any] | None = None) -> Config:
        """The fixed settings and the ``search:`` section, then ``extra`` (``--set`` values) over them."""
        settings = {f"search.{k}": v for k, v in asdict(self.search).items()}
        return from_flat({**self.fixed, **settings, **(extra or {})})

    def with_overrides(self, extra: dict[str, Any]) -> tuple[SearchSpace, Config]:
        """The space with ``extra`` (dotted keys, ``search.*`` included) applied, and its base config."""
        base = self.base_config(extra)
        return replace(self, search=base.search), base


def _num(key: str, spec: dict, name: str, integer: bool = False) -> float | int:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"space.{key}.{name}: expected {'an int' if integer else 'a number'}, got {value!r}")
    return value


def parse_dimension(key: str, spec: Any) -> Dimension:
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(
            f"space.{key}: expected a mapping with a type, e.g. {{type: loguniform, low: 1e-4, high: 1e-2}}"
        )
    kind = spec["type"]
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"space.{key}.type: unknown distribution {kind!r}; use {', '.join(DISTRIBUTIONS)}")
    extra = set(spec) - {"type"} - _DIST_KEYS[kind]
    if extra:
        raise ConfigError(
            f"space.{key}: unknown field {sorted(extra)[0]!r} for {kind}; allowed: {sorted(_DIST_KEYS[kind])}"
        )
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"space.{key}.values: expected a non-empty list, got {values!r}")
        return Dimension(key, kind, values=tuple(tuple(v) if isinstance(v, list) else v for v in values))
    log = spec.get("log", kind == "loguniform")
    if not isinstance(log, bool):
        raise ConfigError(f"space.{key}.log: expected true or false, got {log!r}")
    low, high = _num(key, spec, "low", kind == "int"), _num(key, spec, "high", kind == "int")
    if low > high:
        raise ConfigError(f"space.{key}: low {low!r} is above high {high!r}")
    if log and low <= 0:
        raise ConfigError(f"space.{key}.low: must be > 0 on a log scale, got {low!r}")
    q = _num(key, spec, "q") if kind == "quantized" else None
    if q is not None and q <= 0:
        raise ConfigError(f"space.{key}.q: must be > 0, got {q!r}")
    if q is not None:  # Ray Tune samples round(x / q) * q and needs both ends on that grid
        off = [name for name, end in (("low", low), ("high", high)) if not math.isclose(end / q, round(end / q))]
        if off:
            raise ConfigError(f"space.{key}.{off[0]}: must be a multiple of q={q!r}, got {spec[off[0]]!r}")
    return Dimension(key, kind, low, high, q, log)


def parse_space(data: Any, source: str = "space") -> SearchSpace:
    """Validate a parsed YAML document into a SearchSpace."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with fixed, space and search sections")
    unknown = set(data) - {"extends", "fixed", "space", "search", "start"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown section {sorted(unknown)[0]!r}; sections are extends, fixed, space, search, start"
        )
    fixed = {**_preset_settings(data.get("extends"), source), **flatten(data.get("fixed") or {})}
    raw_space = data.get("space") or {}
    if not isinstance(raw_space, dict) or not raw_space:
        raise ConfigError(f"{source}: the space section is empty; add at least one distribution")
    if any(key.startswith("search.") for key in fixed):
        raise ConfigError(f"{source}: search settings go in the search section, not under fixed")
    known = {key for key in all_keys() if not key.startswith("search.")}
    dims = []
    for key, spec in raw_space.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"space.{key}: unknown config key{hint}")
        dims.append(parse_dimension(key, spec))
    search = _parse_settings(data.get("search") or {}, source)
    base = from_flat(fixed)  # unknown or invalid fixed keys fail here
    for dim in dims:
        for value in dim.bounds():
            try:
                with_values(base, {dim.key: list(value) if isinstance(value, tuple) else value})
            except ConfigError as exc:
                raise ConfigError(f"space.{dim.key}: the value {value!r} is not allowed ({exc})") from None
    start = _parse_start(data.get("start"), dims, base)
    return SearchSpace(source, fixed, tuple(dims), search, start)


def _preset_settings(name: Any, source: str) -> dict[str, Any]:
    """``extends: NAME``: the preset's dotted settings without its ``data.*`` ones; none when absent."""
    if name is None:
        return {}
    if not isinstance(name, str):
        raise ConfigError(f"{source}: extends must name a preset ({', '.join(list_presets())}), got {name!r}")
    try:
        values = preset_values(name)
    except ConfigError as exc:
        raise ConfigError(f"{source}: extends: {exc}") from None
    return {key: value for key, value in values.items() if not key.startswith("data.")}


def contains(dim: Dimension, value: Any) -> bool:
    """Whether ``value`` (a config value: lists as lists) is a point of ``dim``."""
    if dim.kind == "choice":
        value = tuple(value) if isinstance(value, list) else value
        return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in dim.values)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if dim.kind == "int" and not isinstance(value, int):
        return False
    if not dim.low <= value <= dim.high:
        return False
    return dim.q is None or math.isclose(value / dim.q, round(value / dim.q), abs_tol=1e-9)


def _parse_start(raw: Any, dims: list[Dimension], base: Config) -> tuple[dict[str, Any], ...]:
    """``start:``: a list of partial points; each is completed from the fixed values and the defaults."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, dict) or p is None for p in raw):
        raise ConfigError("start: expected a list of mappings, e.g. [{}, {train.batch_size: 128}]")
    by_key = {d.key: d for d in dims}
    defaults = to_flat(base)
    points = []
    for n, partial in enumerate(raw, 1):
        given = flatten(partial or {})
        for key, value in given.items():
            if key not in by_key:
                raise ConfigError(f"start[{n}].{key}: not a searched key; only keys under space: can start elsewhere")
            if not contains(by_key[key], value):
                raise ConfigError(f"start[{n}].{key}: {value!r} is outside its distribution in space:")
        point = {}
        for dim in dims:
            value = given.get(dim.key, defaults.get(dim.key))
            if not contains(dim, value):
                raise ConfigError(
                    f"start[{n}].{dim.key}: its fixed or default value {value!r} is outside the space; give one"
                )
            point[dim.key] = list(value) if isinstance(value, tuple) else value
        try:
            with_values(base, point)
        except ConfigError as exc:
            raise ConfigError(f"start[{n}]: not a valid config ({exc})") from None
        points.append(point)
    return tuple(points)


def _parse_settings(raw: Any, source: str) -> SearchConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: search must be a mapping")
    names = {f.name: f.type for f in fields(SearchConfig)}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"search.{key}: unknown setting; known: {', '.join(names)}")
        expected = {"str": str, "int": int, "float": (int, float)}[names[key]]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(f"search.{key}: expected {names[key]}, got {value!r}")
    return SearchConfig(**raw)


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search space {path} not found; see search_spaces/ for examples")
    return parse_space(parse_yaml_text(path.read_text(encoding="utf-8"), str(path)), str(path))


def encode(value: Any) -> Any:
    """Optuna's categorical values must be scalars: lists travel as JSON strings."""
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else value


def list_keys(space: SearchSpace) -> tuple[str, ...]:
    """The searched keys whose values are lists (they travel through Ray and Optuna as JSON strings)."""
    return tuple(d.key for d in space.dims if d.kind == "choice" and any(isinstance(v, tuple) for v in d.values))


def decode(params: dict[str, Any], lists: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Sampled params back to config values: the JSON strings of the ``lists`` keys back to lists.

    The one decoder of trial settings: every trial's config and its W&B config (``tuning.trial_settings``).
    """
    return {k: json.loads(v) if k in lists and isinstance(v, str) else v for k, v in params.items()}


def to_tune(space: SearchSpace) -> dict[str, Any]:
    """The Ray Tune param_space: one sampler per dotted key."""
    from ray import tune

    out: dict[str, Any] = {}
    for d in space.dims:
        if d.kind == "choice":
            out[d.key] = tune.choice([encode(v) for v in d.values])
        elif d.kind == "uniform":
            out[d.key] = tune.uniform(d.low, d.high)
        elif d.kind == "loguniform":
            out[d.key] = tune.loguniform(d.low, d.high)
        elif d.kind == "int":
            out[d.key] = (tune.lograndint if d.log else tune.randint)(d.low, d.high + 1)
        else:
            out[d.key] = (tune.qloguniform if d.log else tune.quniform)(d.low, d.high, d.q)
    return out


def to_optuna(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions of the same space (for parameter importance)."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for d in space.dims:
        if d.kind == "choice":
            out[d.key] = od.CategoricalDistribution([encode(v) for v in d.values])
        elif d.kind == "int":
            out[d.key] = od.IntDistribution(int(d.low), int(d.high), log=d.log)
        else:
            out[d.key] = od.FloatDistribution(float(d.low), float(d.high), log=d.log)
    return out
