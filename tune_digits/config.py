"""Typed, frozen configuration with strict YAML loading and dotted overrides.

One name per setting everywhere: the dotted key ``train.lr`` is the same in a
YAML file, in ``--set train.lr=3e-4``, in a search space and in the W&B config.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from tune_digits.config_schema import (  # noqa: F401  (the sections and MAX_SAMPLES: imported from here by callers)
    MAX_SAMPLES,
    SECTIONS,
    AudioConfig,
    AugmentConfig,
    BilateralConfig,
    Config,
    DataConfig,
    FeatureConfig,
    ModelConfig,
    SearchConfig,
    TrainConfig,
)
from tune_digits.errors import ConfigError
from tune_digits.safe_yaml import MAX_ALIASES, AliasError, load_bounded  # noqa: F401  (MAX_ALIASES: for callers)

# Experiments that were tried and dropped (their measurements are in docs/accuracy.md). Every run saved
# before they went wrote them at their off value, which still loads; any other value is an error.
REMOVED = {"train.ema": 0.0, "augment.mixup": 0.0, "augment.gain_db": 0.0}


def all_keys() -> list[str]:
    """Every dotted key, e.g. ``train.lr``."""
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def known_in(section: str) -> list[str]:
    """The dotted keys of one section, e.g. ``known_in("train")`` -> ``["train.epochs", ...]``."""
    return [f"{section}.{f.name}" for f in dataclasses.fields(SECTIONS[section])]


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _check_removed(key: str, value: Any) -> None:
    """Accept a removed setting at its off value (as saved runs hold it); anything else is an error."""
    if isinstance(value, bool) or _number(value) != REMOVED[key]:
        raise ConfigError(
            f"unknown config key {key!r}: the experiment was removed (docs/accuracy.md has its measurements); "
            "delete the setting"
        )


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the field's type; ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(hint)
    if origin is tuple or hint is tuple:
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ConfigError(f"{key}: expected a list of ints, got {value!r}")
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        number = _number(value)
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            number = int(number)
        if isinstance(value, bool) or not isinstance(number, int):
            raise ConfigError(f"{key}: expected an int, got {value!r}")
        return number
    if hint is float:
        number = _number(value)
        if isinstance(value, bool) or number is None:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(number)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _number(value: Any) -> int | float | None:
    """``value`` as a number: ints and floats as they are, numeric strings parsed, anything else None.

    YAML 1.1 reads ``3e-4`` (no dot) as a string, so ``--set train.lr=3e-4`` arrives here as text.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return None
    return None


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; dotted keys pass through.

    No setting takes a mapping, so every nested mapping is flattened: a misspelt section
    (``trian: {lr: 1}``) becomes ``trian.lr`` and gets a suggestion. An empty section
    (``train:`` with every line commented out) is skipped.
    """
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{full}."))
        elif value is None and full in SECTIONS:
            continue
        else:
            flat[full] = value
    return flat


def from_flat(values: dict[str, Any], base: Config | None = None) -> Config:
    """Build a Config from dotted keys over ``base`` (defaults when None)."""
    known = all_keys()
    sections = {name: dataclasses.asdict(getattr(base or Config(), name)) for name in SECTIONS}
    for key, value in values.items():
        if key in SECTIONS:
            raise ConfigError(f"{key}: expected a mapping of {key} settings (e.g. {known_in(key)[0]}), got {value!r}")
        if key in REMOVED:
            _check_removed(key, value)
            continue
        if key not in known:
            raise _unknown(key, known)
        section, name = key.split(".", 1)
        sections[section][name] = _coerce(key, value, _field_type(SECTIONS[section], name))
    parts = {}
    for section, cls in SECTIONS.items():
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in sections[section].items()}
        parts[section] = cls(**kwargs)
    return Config(**parts)


def from_saved(values: dict[str, Any]) -> Config:
    """The config a saved model was trained with: a removed experiment's setting, whatever its value, only
    changed how the weights were trained, so it is dropped and the model stays usable."""
    return from_flat({key: value for key, value in values.items() if key not in REMOVED})


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Nested plain dict (tuples as lists), as written to config.yaml."""
    out = dataclasses.asdict(cfg)
    return {s: {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()} for s, d in out.items()}


def to_flat(cfg: Config) -> dict[str, Any]:
    return flatten(to_dict(cfg))


def parse_yaml_text(text: str, source: str) -> Any:
    """YAML ``text`` as plain data (safe types only, aliases bounded); a syntax error names ``source`` and the line."""
    try:
        return load_bounded(text)
    except AliasError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}{where}: {problem}") from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    return parse_yaml_text(path.read_text(encoding="utf-8"), str(path))


PRESETS_DIR = Path(__file__).resolve().parent / "presets"


def list_presets() -> list[str]:
    """Names of the bundled presets (``tune_digits/presets/NAME.yaml``), sorted."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_values(name: str, _within: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dotted settings of preset ``name``; an unknown name is a one-line error listing the presets.

    A preset may start from another one (``extends: lenet5``) and list only what it changes.
    """
    path = PRESETS_DIR / f"{name}.yaml"
    if name not in list_presets():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(list_presets()) or 'none'}")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections")
    base = data.pop("extends", None)
    values: dict[str, Any] = {}
    if base is not None:
        if not isinstance(base, str) or base in (*_within, name):
            raise ConfigError(f"{path}: extends must name another preset, without a loop (got {base!r})")
        values = preset_values(base, (*_within, name))
    values.update(flatten(data))
    return values


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, preset: str | None = None
) -> Config:
    """Defaults, then the preset, then the YAML file (nested or dotted keys), then ``key=value`` overrides."""
    values: dict[str, Any] = preset_values(preset) if preset else {}
    if path is not None:
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config sections")
        values.update(flatten(data))
    values.update(parse_overrides(overrides or []))
    return from_flat(values)


def _is_text_key(key: str) -> bool:
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    return cls is not None and name in {f.name for f in dataclasses.fields(cls)} and _field_type(cls, name) is str


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["train.lr=3e-4", "model.channels=[8, 16]"]`` -> typed dict (values parsed as YAML).

    Text settings (``data.root``, ``data.split``, ``model.name``, ...) take the value literally, so a
    path such as ``/data/take: 2`` or ``/data/run #2`` survives; quote it to have YAML unquote it.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key, text = key.strip(), raw.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-4")
        quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
        if not text:
            out[key] = ""
        elif _is_text_key(key) and not quoted:
            out[key] = text
        else:
            out[key] = parse_yaml_text(text, f"--set {key}")
    return out


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted keys replaced."""
    return from_flat(values, base=cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
