"""Models for (B, C, F, T) log-mel spectrograms: ``lenet5``, small-image ResNets and any timm image model.

``create_model("lenet5", ...)`` builds :class:`~tune_digits.models.lenet.LeNet5`; ``resnet20``, ``resnet32``,
``resnet44`` and ``resnet56`` build He et al.'s ResNets for small images
(:mod:`tune_digits.models.resnet_cifar`); every other name is passed to timm (see
:mod:`tune_digits.models.timm_backbone`). The LeNet-only settings
(``channels``, ``kernel_size``, ``fc``, ``activation``, ``batch_norm``) are ignored for the other models;
``dropout`` becomes timm's ``drop_rate`` (for the small-image ResNets: dropout before the classifier).
Every model returns logits of shape (B, num_classes) and carries ``tune_digits_name`` and ``input_shape``
attributes.
"""

from __future__ import annotations

import difflib

from torch import nn

from tune_digits.config import ModelConfig
from tune_digits.errors import ConfigError
from tune_digits.models.cepstral import Smoothed
from tune_digits.models.lenet import LeNet5, validate_common
from tune_digits.models.resnet_cifar import DEPTHS, CifarResNet

__all__ = ["LISTED_TIMM", "LeNet5", "count_parameters", "create_model", "list_models", "model_from_config"]

# timm backbones known to build and run on 1-channel spectrograms from (1, 40, 101) upwards.
LISTED_TIMM: tuple[str, ...] = (
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "resnet18",
    "densenet121",
    "inception_v3",
)


def list_models() -> list[str]:
    """The known-good model names: ``lenet5``, the small-image ResNets (``resnet20`` ...) and :data:`LISTED_TIMM`."""
    return ["lenet5", *DEPTHS, *LISTED_TIMM]


def create_model(
    name: str,
    input_shape: tuple[int, int, int] = (1, 64, 126),
    num_classes: int = 10,
    *,
    channels: tuple[int, ...] = (6, 16),
    kernel_size: int = 5,
    fc: tuple[int, ...] = (120, 84),
    activation: str = "relu",
    batch_norm: bool = True,
    dropout: float = 0.0,
    pretrained: bool = False,
    lifter: int = 0,
) -> nn.Module:
    """Build model ``name`` for inputs (B, *input_shape); its output is logits (B, num_classes).

    Raises ConfigError for an unknown name (listing the closest matches), an invalid setting,
    or pretrained weights that are not already on disk. Nothing is ever downloaded.
    ``lifter`` > 0 puts :class:`~tune_digits.models.cepstral.CepstralSmoothing` in front (keep that many
    cepstral coefficients of every frame); the smoothing has no parameters.
    """
    validate_common(input_shape, num_classes, dropout)
    input_shape = tuple(input_shape)
    if name == "lenet5":
        if pretrained:
            raise ConfigError("model.pretrained: lenet5 has no pretrained weights; use model.pretrained=false")
        model: nn.Module = LeNet5(
            input_shape,
            num_classes,
            channels=channels,
            kernel_size=kernel_size,
            fc=fc,
            activation=activation,
            batch_norm=batch_norm,
            dropout=dropout,
        )
    elif isinstance(name, str) and name in DEPTHS:
        if pretrained:
            raise ConfigError(f"model.pretrained: {name} has no pretrained weights; use model.pretrained=false")
        model = CifarResNet(input_shape, num_classes, depth=DEPTHS[name], dropout=dropout)
    elif isinstance(name, str) and name and _timm().is_model(name):
        from tune_digits.models.timm_backbone import create_timm_model  # timm is imported only when used

        model = create_timm_model(name, input_shape, num_classes, float(dropout), bool(pretrained))
    else:
        raise _unknown_model(name)
    if lifter:
        model = Smoothed(model, input_shape[1], int(lifter))
    model.tune_digits_name = name
    model.input_shape = input_shape
    return model


def _timm():  # noqa: ANN202
    import timm

    return timm


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def _unknown_model(name: object) -> ConfigError:
    matches = difflib.get_close_matches(str(name), ["lenet5", *DEPTHS, *_timm().list_models()], n=5)
    if matches:
        return ConfigError(f"unknown model {name!r}; closest matches: {', '.join(matches)}")
    return ConfigError(f"unknown model {name!r}; known-good models: {', '.join(list_models())}")


def model_from_config(
    m: ModelConfig, input_shape: tuple[int, int, int], *, pretrained: bool | None = None
) -> nn.Module:
    """The untrained 10-class model a ``model:`` config section describes, for inputs (B, *input_shape).

    ``pretrained`` overrides ``m.pretrained`` (loading a checkpoint needs no downloaded weights).
    """
    return create_model(
        m.name,
        tuple(input_shape),
        10,
        channels=m.channels,
        kernel_size=m.kernel_size,
        fc=m.fc,
        activation=m.activation,
        batch_norm=m.batch_norm,
        dropout=m.dropout,
        pretrained=m.pretrained if pretrained is None else pretrained,
        lifter=m.lifter,
    )
