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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tune_digits.errors import ConfigError
from tune_digits.safe_yaml import MAX_ALIASES, AliasError, load_bounded  # noqa: F401  (MAX_ALIASES: for callers)


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # "" = the bundled demo corpus
    split: str = "speakers"  # becker:K | speakers | fsdd-official | random | loso:SPK | split.json
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    # > 0: speaker splits (becker, speakers, loso) train on their validation speakers too and validate on
    # this share of every training speaker's clips; 0 = whole speakers validate. Other splits ignore it.
    val_clips: float = 0.0
    strict: bool = False  # unreadable recordings are errors instead of counted skips

    def __post_init__(self) -> None:
        _check(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)", self.val_fraction)
        _check(0.0 <= self.test_fraction < 1.0, "data.test_fraction", "must be in [0, 1)", self.test_fraction)
        _check(0.0 <= self.val_clips < 1.0, "data.val_clips", "must be in [0, 1)", self.val_clips)
        _check(
            self.val_fraction + self.test_fraction < 1.0,
            "data.test_fraction",
            "val + test must be < 1",
            self.test_fraction,
        )


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 8000  # Hz, as Becker et al.; AudioMNIST's 48 kHz is resampled
    duration: float = 1.0  # seconds; clips are centred, zero-padded or cropped
    trim: bool = True  # a clip longer than the window is cropped around its word (tune_digits/vad.py)

    def __post_init__(self) -> None:
        _check(1000 <= self.sample_rate <= 96000, "audio.sample_rate", "must be in [1000, 96000] Hz", self.sample_rate)
        _check(0.1 <= self.duration <= 10.0, "audio.duration", "must be in [0.1, 10] s", self.duration)

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration))


@dataclass(frozen=True)
class FeatureConfig:
    variant: str = "raw"  # raw | bilateral
    n_fft: int = 256  # 32 ms window at 8 kHz
    hop_length: int = 128  # 16 ms hop, 50 % overlap: 63 frames per second
    n_mels: int = 40  # (40, 63) images: a LeNet-5 epoch over 2,000 clips takes ~1 s on 2 cores
    f_min: float = 20.0
    f_max: float = 4000.0  # Nyquist at 8 kHz
    top_db: float = 80.0
    normalize: str = "utterance"  # utterance | corpus | none
    frontend: str = "logmel"  # logmel | pcen (per-channel energy normalisation of the mel power, in dB)

    def __post_init__(self) -> None:
        _check(self.variant in ("raw", "bilateral"), "features.variant", "must be raw or bilateral", self.variant)
        _check(self.frontend in ("logmel", "pcen"), "features.frontend", "must be logmel or pcen", self.frontend)
        _check(self.n_fft >= 16, "features.n_fft", "must be >= 16", self.n_fft)
        _check(1 <= self.hop_length <= self.n_fft, "features.hop_length", "must be in [1, n_fft]", self.hop_length)
        _check(4 <= self.n_mels <= 256, "features.n_mels", "must be in [4, 256]", self.n_mels)
        _check(0.0 <= self.f_min < self.f_max, "features.f_min", "must be >= 0 and below f_max", self.f_min)
        _check(self.top_db > 0, "features.top_db", "must be > 0", self.top_db)
        _check(
            self.normalize in ("utterance", "corpus", "none"),
            "features.normalize",
            "must be utterance, corpus or none",
            self.normalize,
        )


@dataclass(frozen=True)
class BilateralConfig:
    # Applied to the log-mel image in dB before normalisation (see docs/architecture.md).
    d: int = 5  # pixel neighbourhood diameter
    sigma_color: float = 8.0  # dB: differences well above this are edges and are kept
    sigma_space: float = 2.0  # pixels

    def __post_init__(self) -> None:
        _check(1 <= self.d <= 15, "bilateral.d", "must be in [1, 15]", self.d)
        _check(self.sigma_color > 0, "bilateral.sigma_color", "must be > 0 (dB)", self.sigma_color)
        _check(self.sigma_space > 0, "bilateral.sigma_space", "must be > 0 (pixels)", self.sigma_space)


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True  # on by default: LeNet-5 on FSDD reaches 0.99 test F1 with it, 0.96 without
    freq_masks: int = 2
    freq_width: int = 8  # max mel bins per mask
    time_masks: int = 2
    time_width: int = 12  # max frames per mask
    time_shift: float = 0.1  # max circular shift, fraction of the frames
    repeats: int = 2  # augmented copies of the training set per epoch
    # Other voices and rooms, on the dB spectrogram before normalisation (docs/accuracy.md); 0 = off.
    freq_warp: float = 0.0  # VTLP: frequencies scaled by U[1 - a, 1 + a] (vocal-tract length), mel axis resampled
    time_stretch: float = 0.0  # speaking rate: the time axis resampled by U[1 - a, 1 + a] about its centre
    gain_db: float = 0.0  # level offset U[-g, g] dB; cancelled exactly by features.normalize=utterance
    eq_db: float = 0.0  # microphone/room colour: a random smooth tilt-and-bow curve, at most +-eq_db dB
    noise_prob: float = 0.0  # share of items that get additive noise (in linear power) ...
    noise_snr_low: float = 10.0  # ... at an SNR drawn from U[low, high] dB (mean power over the clip)
    noise_snr_high: float = 30.0
    mixup: float = 0.0  # mixup Beta(alpha, alpha) on training batches (inputs and targets); 0 = off
    # Real noise and microphones on the waveform, drawn anew every epoch (tune_digits/noise.py); "" = off.
    noise_dir: str = ""  # folder of noise recordings; training uses the first 70 % of each file
    noise_share: float = 0.5  # share of each training batch that gets noise (the rest stays clean)
    noise_min_snr: float = 0.0  # SNR drawn from U[min, max] dB (speech power over its samples)
    noise_max_snr: float = 20.0
    noise_offset: float = 0.25  # the word moved by up to this fraction of the window, either way
    noise_rumble: float = 0.2  # share of noisy items that also get rumble below 100 Hz (-10..+10 dB)
    noise_telephone: float = 0.2  # share of noisy items band-limited to 300-3400 Hz
    noise_gain_db: float = 30.0  # noisy items scaled by U[-g, 0] dB

    def __post_init__(self) -> None:
        self._check_real_noise()
        for key in ("freq_masks", "freq_width", "time_masks", "time_width"):
            _check(getattr(self, key) >= 0, f"augment.{key}", "must be >= 0", getattr(self, key))
        _check(0.0 <= self.time_shift <= 0.5, "augment.time_shift", "must be in [0, 0.5]", self.time_shift)
        _check(1 <= self.repeats <= 32, "augment.repeats", "must be in [1, 32]", self.repeats)
        _check(0.0 <= self.freq_warp <= 0.5, "augment.freq_warp", "must be in [0, 0.5]", self.freq_warp)
        _check(0.0 <= self.time_stretch <= 0.5, "augment.time_stretch", "must be in [0, 0.5]", self.time_stretch)
        _check(0.0 <= self.gain_db <= 60.0, "augment.gain_db", "must be in [0, 60] dB", self.gain_db)
        _check(0.0 <= self.eq_db <= 30.0, "augment.eq_db", "must be in [0, 30] dB", self.eq_db)
        _check(0.0 <= self.noise_prob <= 1.0, "augment.noise_prob", "must be in [0, 1]", self.noise_prob)
        _check(
            -20.0 <= self.noise_snr_low <= self.noise_snr_high <= 80.0,
            "augment.noise_snr_low",
            "must satisfy -20 <= noise_snr_low <= noise_snr_high <= 80 dB",
            (self.noise_snr_low, self.noise_snr_high),
        )
        _check(0.0 <= self.mixup <= 10.0, "augment.mixup", "must be in [0, 10] (Beta alpha; 0 = off)", self.mixup)

    def _check_real_noise(self) -> None:
        for key in ("noise_share", "noise_rumble", "noise_telephone"):
            _check(0.0 <= getattr(self, key) <= 1.0, f"augment.{key}", "must be in [0, 1]", getattr(self, key))
        _check(0.0 <= self.noise_offset <= 0.5, "augment.noise_offset", "must be in [0, 0.5]", self.noise_offset)
        _check(0.0 <= self.noise_gain_db <= 60.0, "augment.noise_gain_db", "must be in [0, 60] dB", self.noise_gain_db)
        _check(
            -20.0 <= self.noise_min_snr <= self.noise_max_snr <= 80.0,
            "augment.noise_min_snr",
            "must satisfy -20 <= noise_min_snr <= noise_max_snr <= 80 dB",
            (self.noise_min_snr, self.noise_max_snr),
        )


@dataclass(frozen=True)
class ModelConfig:
    name: str = "lenet5"  # lenet5, resnet20/32/44/56 (small-image ResNets) or a timm model name
    channels: tuple[int, ...] = (6, 16)  # lenet5: conv channels
    kernel_size: int = 5  # lenet5
    fc: tuple[int, ...] = (120, 84)  # lenet5: hidden fully connected sizes
    activation: str = "relu"  # lenet5: relu | tanh | gelu | silu
    batch_norm: bool = True  # lenet5
    dropout: float = 0.0  # lenet5 before each hidden fc; resnet20 before the classifier; timm drop_rate
    pretrained: bool = False  # timm: only when the weights are already on disk
    # > 0: the network reads each frame's log-mel spectrum smoothed to its first `lifter` cepstral coefficients
    # (the envelope: formants, not the speaker's pitch harmonics); 0 = off. Any model; no parameters.
    lifter: int = 0

    def __post_init__(self) -> None:
        _check(bool(self.name), "model.name", "must not be empty", self.name)
        _check(
            len(self.channels) == 2 and min(self.channels) >= 1,
            "model.channels",
            "must be two positive ints",
            self.channels,
        )
        _check(self.kernel_size in (3, 5, 7), "model.kernel_size", "must be 3, 5 or 7", self.kernel_size)
        _check(len(self.fc) >= 1 and min(self.fc) >= 1, "model.fc", "must be positive ints", self.fc)
        _check(
            self.activation in ("relu", "tanh", "gelu", "silu"),
            "model.activation",
            "must be relu, tanh, gelu or silu",
            self.activation,
        )
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout)
        _check(self.lifter >= 0, "model.lifter", "must be >= 0 (0 = off)", self.lifter)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    schedule: str = "cosine"  # cosine | onecycle | constant
    label_smoothing: float = 0.0
    ema: float = 0.0  # per-step decay of a weight average that is validated and kept; 0 = off
    patience: int = 0  # epochs without val_f1 gain before stopping; 0 = never
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # CPU threads for torch; 0 = torch's default

    def __post_init__(self) -> None:
        _check(1 <= self.epochs <= 10000, "train.epochs", "must be in [1, 10000]", self.epochs)
        _check(1 <= self.batch_size <= 65536, "train.batch_size", "must be in [1, 65536]", self.batch_size)
        _check(self.optimizer in ("adamw", "sgd"), "train.optimizer", "must be adamw or sgd", self.optimizer)
        _check(0 < self.lr <= 10, "train.lr", "must be in (0, 10]", self.lr)
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0", self.weight_decay)
        _check(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)", self.momentum)
        _check(
            self.schedule in ("cosine", "onecycle", "constant"),
            "train.schedule",
            "must be cosine, onecycle or constant",
            self.schedule,
        )
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing", "must be in [0, 1)", self.label_smoothing)
        _check(0 <= self.ema < 1, "train.ema", "must be in [0, 1) (e.g. 0.999; 0 = off)", self.ema)
        _check(self.patience >= 0, "train.patience", "must be >= 0", self.patience)
        _check(self.device in ("auto", "cpu", "cuda"), "train.device", "must be auto, cpu or cuda", self.device)
        _check(self.threads >= 0, "train.threads", "must be >= 0", self.threads)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    bilateral: BilateralConfig = field(default_factory=BilateralConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        nyquist = self.audio.sample_rate / 2
        _check(
            self.features.f_max <= nyquist,
            "features.f_max",
            f"must be <= sample_rate / 2 = {nyquist:g}",
            self.features.f_max,
        )


_SECTION_TYPES = {
    "data": DataConfig,
    "audio": AudioConfig,
    "features": FeatureConfig,
    "bilateral": BilateralConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "train": TrainConfig,
}


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


def all_keys() -> list[str]:
    """Every dotted key, e.g. ``train.lr``."""
    return [f"{s}.{f.name}" for s, cls in _SECTION_TYPES.items() for f in dataclasses.fields(cls)]


def known_in(section: str) -> list[str]:
    """The dotted keys of one section, e.g. ``known_in("train")`` -> ``["train.epochs", ...]``."""
    return [f"{section}.{f.name}" for f in dataclasses.fields(_SECTION_TYPES[section])]


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


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
        elif value is None and full in _SECTION_TYPES:
            continue
        else:
            flat[full] = value
    return flat


def from_flat(values: dict[str, Any], base: Config | None = None) -> Config:
    """Build a Config from dotted keys over ``base`` (defaults when None)."""
    known = all_keys()
    sections = {name: dataclasses.asdict(getattr(base or Config(), name)) for name in _SECTION_TYPES}
    for key, value in values.items():
        if key in _SECTION_TYPES:
            raise ConfigError(f"{key}: expected a mapping of {key} settings (e.g. {known_in(key)[0]}), got {value!r}")
        if key not in known:
            raise _unknown(key, known)
        section, name = key.split(".", 1)
        sections[section][name] = _coerce(key, value, _field_type(_SECTION_TYPES[section], name))
    parts = {}
    for section, cls in _SECTION_TYPES.items():
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in sections[section].items()}
        parts[section] = cls(**kwargs)
    return Config(**parts)


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
    cls = _SECTION_TYPES.get(section)
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
