"""LeNet-5 for log-mel spectrogram images, with the flatten size adapted to the input size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tune_digits.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class LeNet5(nn.Module):
    """LeNet-5 on a spectrogram image.

    Layout, with the defaults channels=(6, 16), fc=(120, 84) and an input of shape (B, 1, F, T)::

        conv(1 -> 6, k, padding k//2) -> [BN] -> act -> maxpool 2      # (B, 6, F//2, T//2)
        conv(6 -> 16, k, padding k//2) -> [BN] -> act -> maxpool 2     # (B, 16, F//4, T//4)
        flatten                                                       # (B, 16 * (F//4) * (T//4))
        fc(-> 120) -> act -> dropout -> fc(-> 84) -> act -> dropout    # (B, 84)
        fc(-> num_classes)                                            # (B, num_classes) logits

    ``channels`` gives one conv block per entry and ``fc`` one hidden layer per entry, so the
    flatten size is ``channels[-1] * (F // 2**len(channels)) * (T // 2**len(channels))``.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int] = (1, 64, 126),
        num_classes: int = 10,
        *,
        channels: tuple[int, ...] = (6, 16),
        kernel_size: int = 5,
        fc: tuple[int, ...] = (120, 84),
        activation: str = "relu",
        batch_norm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _validate(input_shape, num_classes, channels, kernel_size, fc, activation, batch_norm, dropout)
        in_chans, n_freq, n_time = input_shape
        self.input_shape = tuple(input_shape)
        self.features = _conv_blocks(in_chans, channels, kernel_size, activation, batch_norm)
        n_pool = 2 ** len(channels)
        self.flatten_size = channels[-1] * (n_freq // n_pool) * (n_time // n_pool)
        self.classifier = _fc_layers(self.flatten_size, fc, num_classes, activation, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C_last, F // 2**n, T // 2**n)
        x = torch.flatten(x, 1)  # (B, flatten_size)
        return self.classifier(x)  # (B, num_classes)


def _conv_blocks(
    in_chans: int, channels: tuple[int, ...], kernel_size: int, activation: str, batch_norm: bool
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for out_chans in channels:
        layers.append(nn.Conv2d(in_chans, out_chans, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_chans))
        layers += [ACTIVATIONS[activation](), nn.MaxPool2d(2)]
        in_chans = out_chans
    return nn.Sequential(*layers)


def _fc_layers(
    in_features: int, hidden: tuple[int, ...], num_classes: int, activation: str, dropout: float
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_features, width), ACTIVATIONS[activation](), nn.Dropout(dropout)]
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))
    return nn.Sequential(*layers)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: bool, key: str, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


def _validate(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels: tuple[int, ...],
    kernel_size: int,
    fc: tuple[int, ...],
    activation: str,
    batch_norm: bool,
    dropout: float,
) -> None:
    validate_common(input_shape, num_classes, dropout)
    _check(
        isinstance(channels, (tuple, list)) and len(channels) >= 1 and all(_is_int(c) and c >= 1 for c in channels),
        "model.channels",
        "must be one or more positive ints, e.g. [6, 16]",
        channels,
    )
    _check(
        _is_int(kernel_size) and kernel_size >= 1 and kernel_size % 2 == 1,
        "model.kernel_size",
        "must be a positive odd int, e.g. 5",
        kernel_size,
    )
    _check(
        isinstance(fc, (tuple, list)) and all(_is_int(w) and w >= 1 for w in fc),
        "model.fc",
        "must be a list of positive ints, e.g. [120, 84]",
        fc,
    )
    _check(
        isinstance(activation, str) and activation in ACTIVATIONS,
        "model.activation",
        f"must be one of {', '.join(ACTIVATIONS)}",
        activation,
    )
    _check(isinstance(batch_norm, bool), "model.batch_norm", "must be true or false", batch_norm)
    smallest = min(input_shape[1], input_shape[2])
    _check(
        smallest >= 2 ** len(channels),
        "model.channels",
        f"{len(channels)} conv blocks halve the input {len(channels)} times, too often for a "
        f"{input_shape[1]}x{input_shape[2]} spectrogram; use fewer blocks or more mels/frames",
        channels,
    )


def validate_common(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> None:
    """Check the settings every model takes; raise ConfigError on the first bad one."""
    _check(
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(_is_int(d) and d >= 1 for d in input_shape),
        "input_shape",
        "must be three positive ints (channels, mels, frames), e.g. (1, 64, 126)",
        input_shape,
    )
    _check(_is_int(num_classes) and num_classes >= 2, "num_classes", "must be an int >= 2", num_classes)
    _check(
        isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0.0 <= dropout < 1.0,
        "model.dropout",
        "must be in [0, 1)",
        dropout,
    )
