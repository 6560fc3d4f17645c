"""Models for (B, C, F, T) log-mel spectrograms: the registry :data:`MODELS` and :func:`model_from_config`.

``MODELS[name]`` is a :class:`ModelSpec`: how to build the model from a ``model:`` config section and
what the rest of the toolkit needs to know about it (its family, the GPU share of a search trial, the
input shape it is built for by default). Registered: ``lenet5`` (:class:`~tune_digits.models.lenet.LeNet5`),
``resnet20``, ``resnet32``, ``resnet44`` and ``resnet56`` (He et al.'s ResNets for small images,
:mod:`tune_digits.models.resnet_cifar`) and the timm backbones of :data:`LISTED_TIMM`; any other timm name
gets a timm spec from :func:`model_spec` (see :mod:`tune_digits.models.timm_backbone`). The LeNet-only
settings (``channels``, ``kernel_size``, ``fc``, ``activation``, ``batch_norm``) are ignored by the other
models; ``dropout`` becomes timm's ``drop_rate`` (for the small-image ResNets: dropout before the classifier).
Every model returns logits of shape (B, num_classes) and carries ``tune_digits_name`` and ``input_shape``
attributes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import nn

from tune_digits.config import ModelConfig
from tune_digits.errors import ConfigError
from tune_digits.models.cepstral import Smoothed
from tune_digits.models.lenet import LeNet5, check_input
from tune_digits.models.resnet_cifar import DEPTHS, CifarResNet

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "LISTED_TIMM",
    "MODELS",
    "LeNet5",
    "ModelSpec",
    "count_parameters",
    "create_model",
    "list_models",
    "model_from_config",
    "model_spec",
]

# What the default pipeline makes: 40 mel bands x 63 frames of one second at 8 kHz (features.spectrogram_shape).
DEFAULT_INPUT_SHAPE: tuple[int, int, int] = (1, 40, 63)

# timm backbones known to build and run on 1-channel spectrograms from (1, 40, 101) upwards.
LISTED_TIMM: tuple[str, ...] = (
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "resnet18",
    "densenet121",
    "inception_v3",
)

Build = Callable[[ModelConfig, tuple[int, int, int], int], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One model name: ``build(m, input_shape, num_classes)`` and what the toolkit needs to know about it."""

    name: str
    build: Build
    family: str  # "lenet" (Model A), "cifar-resnet" or "timm"
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE  # what it is built for unless told otherwise
    has_pretrained: bool = False  # weights to start from can exist (on disk, never downloaded)
    gpu_share: float = 1.0  # of one GPU per search trial (small models share a GPU)

    @property
    def is_lenet(self) -> bool:
        """LeNet-5: the contest's Model A; every other model is a Model B candidate."""
        return self.family == "lenet"

    @property
    def is_timm(self) -> bool:
        return self.family == "timm"


def _lenet(m: ModelConfig, shape: tuple[int, int, int], n: int) -> nn.Module:
    return LeNet5(shape, n, m)


def _cifar(depth: int) -> Build:
    return lambda m, shape, n: CifarResNet(shape, n, depth=depth, dropout=m.dropout)


def _timm_build(name: str) -> Build:
    def build(m: ModelConfig, shape: tuple[int, int, int], n: int) -> nn.Module:
        from tune_digits.models.timm_backbone import create_timm_model  # timm is imported only when used

        return create_timm_model(name, shape, n, float(m.dropout), bool(m.pretrained))

    return build


def _timm_spec(name: str) -> ModelSpec:
    return ModelSpec(name, _timm_build(name), "timm", has_pretrained=True)


MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec("lenet5", _lenet, "lenet", gpu_share=0.25),
    **{name: ModelSpec(name, _cifar(depth), "cifar-resnet") for name, depth in DEPTHS.items()},
    **{name: _timm_spec(name) for name in LISTED_TIMM},
}


def list_models() -> list[str]:
    """The known-good model names: ``lenet5``, the small-image ResNets (``resnet20`` ...) and :data:`LISTED_TIMM`."""
    return list(MODELS)


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name``: a registered model or any other timm model; else a ConfigError with close matches."""
    if isinstance(name, str) and name in MODELS:
        return MODELS[name]
    if isinstance(name, str) and name and _timm().is_model(name):
        return _timm_spec(name)
    raise _unknown_model(name)


def model_from_config(
    m: ModelConfig,
    input_shape: tuple[int, int, int] | None = None,
    *,
    num_classes: int = 10,
    pretrained: bool | None = None,
) -> nn.Module:
    """The untrained model a ``model:`` config section describes, for inputs (B, *input_shape).

    ``input_shape`` defaults to the spec's (:data:`DEFAULT_INPUT_SHAPE`); ``pretrained`` overrides
    ``m.pretrained`` (loading a checkpoint needs no downloaded weights). Raises ConfigError for an
    unknown name (listing the closest matches), an input the model cannot take, or pretrained weights
    that do not exist or are not already on disk. Nothing is ever downloaded. ``m.lifter`` > 0 puts
    :class:`~tune_digits.models.cepstral.CepstralSmoothing` in front (that many cepstral coefficients
    of every frame are kept); the smoothing has no parameters.
    """
    spec = model_spec(m.name)
    shape = tuple(input_shape) if input_shape is not None else spec.input_shape
    check_input(shape, num_classes)  # type: ignore[arg-type]
    if pretrained is not None:
        m = replace(m, pretrained=pretrained)
    if m.pretrained and not spec.has_pretrained:
        raise ConfigError(f"model.pretrained: {m.name} has no pretrained weights; use model.pretrained=false")
    model = spec.build(m, shape, num_classes)  # type: ignore[arg-type]
    if m.lifter:
        model = Smoothed(model, shape[1], int(m.lifter))
    model.tune_digits_name = m.name
    model.input_shape = shape
    return model


def create_model(
    name: str, input_shape: tuple[int, int, int] | None = None, num_classes: int = 10, **settings: Any
) -> nn.Module:
    """``model_from_config(ModelConfig(name, **settings), input_shape, num_classes=num_classes)``.

    ``settings`` are the ``model:`` section's keys (``channels``, ``dropout``, ``pretrained``, ``lifter``, ...).
    """
    return model_from_config(ModelConfig(name=name, **settings), input_shape, num_classes=num_classes)


def _timm():  # noqa: ANN202
    import timm

    return timm


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def _unknown_model(name: object) -> ConfigError:
    matches = difflib.get_close_matches(str(name), [*MODELS, *_timm().list_models()], n=5)
    if matches:
        return ConfigError(f"unknown model {name!r}; closest matches: {', '.join(matches)}")
    return ConfigError(f"unknown model {name!r}; known-good models: {', '.join(list_models())}")
