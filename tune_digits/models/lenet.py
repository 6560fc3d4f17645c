"""LeNet-5 for log-mel spectrogram images, with the flatten size adapted to the input size."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tune_digits.config import ModelConfig
from tune_digits.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class LeNet5(nn.Module):
    """LeNet-5 on a spectrogram image.

    Built from a ``model:`` config section ``m``. Layout, with the defaults channels=(6, 16),
    fc=(120, 84) and an input of shape (B, 1, F, T)::

        conv(1 -> 6, k, padding k//2) -> [BN] -> act -> maxpool 2      # (B, 6, F//2, T//2)
        conv(6 -> 16, k, padding k//2) -> [BN] -> act -> maxpool 2     # (B, 16, F//4, T//4)
        flatten                                                       # (B, 16 * (F//4) * (T//4))
        fc(-> 120) -> act -> dropout -> fc(-> 84) -> act -> dropout    # (B, 84)
        fc(-> num_classes)                                            # (B, num_classes) logits

    ``channels`` gives one conv block per entry and ``fc`` one hidden layer per entry, so the
    flatten size is ``channels[-1] * (F // 2**len(channels)) * (T // 2**len(channels))``.
    """

    def __init__(
        self, input_shape: tuple[int, int, int] = (1, 40, 63), num_classes: int = 10, m: ModelConfig | None = None
    ) -> None:
        super().__init__()
        m = m or ModelConfig()  # checked there: channels, kernel_size, fc, activation, batch_norm, dropout
        check_input(input_shape, num_classes)
        check_depth(m.channels, input_shape)
        in_chans, n_freq, n_time = input_shape
        self.input_shape = tuple(input_shape)
        self.features = _conv_blocks(in_chans, tuple(m.channels), m.kernel_size, m.activation, m.batch_norm)
        n_pool = 2 ** len(m.channels)
        self.flatten_size = m.channels[-1] * (n_freq // n_pool) * (n_time // n_pool)
        self.classifier = _fc_layers(self.flatten_size, tuple(m.fc), num_classes, m.activation, m.dropout)

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


def check_depth(channels: tuple[int, ...], input_shape: tuple[int, int, int]) -> None:
    """Each conv block halves the image: the spectrogram must survive ``len(channels)`` halvings."""
    _check(
        min(input_shape[1], input_shape[2]) >= 2 ** len(channels),
        "model.channels",
        f"{len(channels)} conv blocks halve the input {len(channels)} times, too often for a "
        f"{input_shape[1]}x{input_shape[2]} spectrogram; use fewer blocks or more mels/frames",
        channels,
    )


def check_input(input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Check what every model is built for (the settings themselves are checked by ``ModelConfig``)."""
    _check(
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(_is_int(d) and d >= 1 for d in input_shape),
        "input_shape",
        "must be three positive ints (channels, mels, frames), e.g. (1, 40, 63)",
        input_shape,
    )
    _check(_is_int(num_classes) and num_classes >= 2, "num_classes", "must be an int >= 2", num_classes)
