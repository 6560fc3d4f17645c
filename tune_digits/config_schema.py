"""The settings themselves: one frozen dataclass per config section, each validating its own values.

Loading them (YAML, ``--set``, presets, the dotted keys) is :mod:`tune_digits.config`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tune_digits.errors import ConfigError


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


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
    n_mels: int = 40  # (40, 63) images: small enough that LeNet-5 trains in seconds per epoch on a CPU
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
    enabled: bool = True  # on by default: it lifts test F1 on FSDD (docs/accuracy.md)
    freq_masks: int = 2
    freq_width: int = 8  # max mel bins per mask
    time_masks: int = 2
    time_width: int = 12  # max frames per mask
    time_shift: float = 0.1  # max circular shift, fraction of the frames
    repeats: int = 2  # augmented copies of the training set per epoch
    # Other voices and rooms, on the dB spectrogram before normalisation (docs/accuracy.md); 0 = off.
    freq_warp: float = 0.0  # VTLP: frequencies scaled by U[1 - a, 1 + a] (vocal-tract length), mel axis resampled
    time_stretch: float = 0.0  # speaking rate: the time axis resampled by U[1 - a, 1 + a] about its centre
    eq_db: float = 0.0  # microphone/room colour: a random smooth tilt-and-bow curve, at most +-eq_db dB
    noise_prob: float = 0.0  # share of items that get additive noise (in linear power) ...
    noise_snr_low: float = 10.0  # ... at an SNR drawn from U[low, high] dB (mean power over the clip)
    noise_snr_high: float = 30.0
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
        _check(0.0 <= self.eq_db <= 30.0, "augment.eq_db", "must be in [0, 30] dB", self.eq_db)
        _check(0.0 <= self.noise_prob <= 1.0, "augment.noise_prob", "must be in [0, 1]", self.noise_prob)
        _check(
            -20.0 <= self.noise_snr_low <= self.noise_snr_high <= 80.0,
            "augment.noise_snr_low",
            "must satisfy -20 <= noise_snr_low <= noise_snr_high <= 80 dB",
            (self.noise_snr_low, self.noise_snr_high),
        )

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
        """The one check of every model setting (the models trust it); types are checked too, since
        ``create_model(name, **hp)`` builds this section from plain keyword arguments."""
        _check(isinstance(self.name, str) and bool(self.name), "model.name", "must not be empty", self.name)
        _check(
            _ints(self.channels) and len(self.channels) >= 1,
            "model.channels",
            "must be one or more positive ints (one conv block each), e.g. [6, 16]",
            self.channels,
        )
        _check(
            _is_int(self.kernel_size) and self.kernel_size in (3, 5, 7),
            "model.kernel_size",
            "must be 3, 5 or 7",
            self.kernel_size,
        )
        _check(_ints(self.fc), "model.fc", "must be a list of positive ints (hidden sizes), e.g. [120, 84]", self.fc)
        _check(self.activation in ACTIVATIONS, "model.activation", "must be relu, tanh, gelu or silu", self.activation)
        _check(isinstance(self.batch_norm, bool), "model.batch_norm", "must be true or false", self.batch_norm)
        _check(
            _is_number(self.dropout) and 0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)", self.dropout
        )
        _check(isinstance(self.pretrained, bool), "model.pretrained", "must be true or false", self.pretrained)
        _check(_is_int(self.lifter) and self.lifter >= 0, "model.lifter", "must be >= 0 (0 = off)", self.lifter)


ACTIVATIONS = ("relu", "tanh", "gelu", "silu")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(values: object) -> bool:
    return isinstance(values, (tuple, list)) and all(_is_int(v) and v >= 1 for v in values)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
        _check(self.patience >= 0, "train.patience", "must be >= 0", self.patience)
        _check(self.device in ("auto", "cpu", "cuda"), "train.device", "must be auto, cpu or cuda", self.device)
        _check(self.threads >= 0, "train.threads", "must be >= 0", self.threads)


MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class SearchConfig:
    """How ``tune-digits search`` searches; a search space's ``search:`` section sets it, ``--set search.*`` too."""

    metric: str = "val_f1"
    mode: str = "max"
    num_samples: int = 16
    max_epochs: int = 20
    grace_period: int = 2  # epochs every trial runs before ASHA may stop it
    reduction_factor: int = 3
    seed: int = 0
    max_concurrent: int = 0  # 0 = as many as the resources allow
    time_budget: float = 0.0  # seconds; 0 = no limit
    max_failures: int = 1  # retries of a failed trial

    def __post_init__(self) -> None:
        metrics = ("val_f1", "val_accuracy", "val_loss")
        _check(self.metric in metrics, "search.metric", "must be val_f1, val_accuracy or val_loss", self.metric)
        _check(self.mode in ("max", "min"), "search.mode", "must be max or min", self.mode)
        _check(self.num_samples >= 1, "search.num_samples", "must be >= 1", self.num_samples)
        _check(
            self.num_samples <= MAX_SAMPLES,
            "search.num_samples",
            f"must be <= {MAX_SAMPLES} (Ray keeps every trial in memory and on disk; run several searches)",
            self.num_samples,
        )
        _check(self.max_epochs >= 1, "search.max_epochs", "must be >= 1", self.max_epochs)
        _check(self.grace_period >= 1, "search.grace_period", "must be >= 1", self.grace_period)
        _check(self.reduction_factor >= 2, "search.reduction_factor", "must be >= 2", self.reduction_factor)
        _check(self.max_concurrent >= 0, "search.max_concurrent", "must be >= 0", self.max_concurrent)
        _check(self.time_budget >= 0, "search.time_budget", "must be >= 0", self.time_budget)
        _check(self.max_failures >= 0, "search.max_failures", "must be >= 0", self.max_failures)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    bilateral: BilateralConfig = field(default_factory=BilateralConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        nyquist = self.audio.sample_rate / 2
        _check(
            self.features.f_max <= nyquist,
            "features.f_max",
            f"must be <= sample_rate / 2 = {nyquist:g}",
            self.features.f_max,
        )


SECTIONS: dict[str, type] = {  # section name -> its dataclass, in Config's order
    "data": DataConfig,
    "audio": AudioConfig,
    "features": FeatureConfig,
    "bilateral": BilateralConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "search": SearchConfig,
}
