"""timm image backbones adapted to one-channel spectrogram images of any size.

The backbone is built with ``in_chans`` from the input shape and a fresh ``num_classes`` head.
Spectrograms smaller than a backbone's minimum side are upsampled bilinearly in ``forward``.
Pretrained weights are only ever read from disk: the Hugging Face Hub is put in offline mode
while the backbone is built, and a weight file that would have to be downloaded is an error.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import huggingface_hub.constants
import timm
import torch
import torch.nn.functional as F
from torch import nn

from tune_digits.errors import ConfigError

# Smallest input side per architecture family (by name prefix). Five stride-2 stages need 32 pixels
# to keep a 1x1 map; inception_v3's stem needs 75 and is given a little margin.
MIN_SIDE_BY_PREFIX: dict[str, int] = {"inception": 80}
DEFAULT_MIN_SIDE = 32


class TimmBackbone(nn.Module):
    """A timm model on (B, C, F, T) spectrograms; inputs smaller than ``min_side`` are upsampled.

    Shapes: input (B, C, F, T) -> upsampled to (B, C, max(F, min_side), max(T, min_side))
    -> backbone -> logits (B, num_classes).
    """

    def __init__(self, backbone: nn.Module, min_side: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.min_side = min_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_freq, n_time = x.shape[-2:]
        size = (max(n_freq, self.min_side), max(n_time, self.min_side))
        if size != (n_freq, n_time):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (B, C, F', T')
        return self.backbone(x)  # (B, num_classes)


def min_input_side(name: str, backbone: nn.Module | None = None) -> int:
    """The smallest input side ``name`` accepts: the prefix table, timm's ``min_input_size``, at least 32."""
    side = DEFAULT_MIN_SIDE
    for prefix, prefix_side in MIN_SIDE_BY_PREFIX.items():
        if name.startswith(prefix):
            side = max(side, prefix_side)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    min_size = cfg.get("min_input_size")
    if min_size:
        side = max(side, *min_size[-2:])
    return side


def create_timm_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, dropout: float, pretrained: bool
) -> TimmBackbone:
    """Build timm model ``name`` for (B, C, F, T) inputs; ``pretrained`` loads weights from disk only."""
    kwargs = {"in_chans": input_shape[0], "num_classes": num_classes, "drop_rate": dropout}
    if not pretrained:
        backbone = timm.create_model(name, pretrained=False, **kwargs)
    else:
        backbone = _create_pretrained(name, kwargs)
    return TimmBackbone(backbone, min_input_side(name, backbone))


def _not_on_disk(name: str) -> ConfigError:
    return ConfigError(
        f"pretrained weights for {name} are not on this machine; "
        "use model.pretrained=false or put them in the Hugging Face cache"
    )


def _create_pretrained(name: str, kwargs: dict[str, object]) -> nn.Module:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ConfigError(f"timm has no pretrained weights for {name}; use model.pretrained=false")
    if not cfg.hf_hub_id and not cfg.file and not _url_cached(cfg.url):
        raise _not_on_disk(name)  # timm would download from the URL
    try:
        with _hf_hub_offline():
            return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        raise _not_on_disk(name) from exc


def _url_cached(url: str | tuple[str, str] | None) -> bool:
    """True when torch.hub already holds the checkpoint file for ``url``."""
    if not url:
        return False
    filename = url[1] if isinstance(url, (tuple, list)) else os.path.basename(urlparse(url).path)
    return (Path(torch.hub.get_dir()) / "checkpoints" / filename).is_file()


@contextlib.contextmanager
def _hf_hub_offline() -> Iterator[None]:
    """Offline mode for the Hugging Face Hub: only the local cache is read."""
    old_env = os.environ.get("HF_HUB_OFFLINE")
    old_flag = huggingface_hub.constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    huggingface_hub.constants.HF_HUB_OFFLINE = True  # read once at import; the env var alone is too late
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = old_flag
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env
