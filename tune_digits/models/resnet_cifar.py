"""The ResNets He et al. (2016, "Deep Residual Learning for Image Recognition", section 4.2) built for small images.

``resnet20``, ``resnet32``, ``resnet44`` and ``resnet56`` (depth 6n + 2) on a (B, C, F, T) spectrogram::

    conv3x3(C -> 16) -> BN -> ReLU                              # (B, 16, F, T): no stride-4 stem
    n basic blocks, 16 channels                                # (B, 16, F, T)
    n basic blocks, 32 channels, the first with stride 2      # (B, 32, F/2, T/2)
    n basic blocks, 64 channels, the first with stride 2      # (B, 64, F/4, T/4)
    global average pool -> dropout -> fc(64 -> num_classes)    # (B, num_classes) logits

A basic block is conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the input (a 1x1 convolution with BN where
the shape changes: the paper's option B), then ReLU. ResNet-20 has 0.27 M parameters. ImageNet ResNets
(timm's ``resnet18``) divide each side by four before their first block, made for 224 x 224 photographs;
these keep a 40 x 63 log-mel image at full resolution through the first stage.
"""

from __future__ import annotations

import torch
from torch import nn

from tune_digits.errors import ConfigError

DEPTHS: dict[str, int] = {"resnet20": 20, "resnet32": 32, "resnet44": 44, "resnet56": 56}
WIDTHS: tuple[int, int, int] = (16, 32, 64)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; ``stride`` 2 halves F and T."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_chans != out_chans:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chans, out_chans, 1, stride=stride, bias=False), nn.BatchNorm2d(out_chans)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for (B, C, F, T) inputs with F, T >= 4; returns logits (B, num_classes)."""

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int = 10, *, depth: int = 20, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"model.name: a CIFAR ResNet's depth must be 6n + 2 (20, 32, 44, 56), got {depth}")
        if min(input_shape[1:]) < 4:
            raise ConfigError(
                f"model.name: resnet{depth} halves the input twice, too often for a "
                f"{input_shape[1]}x{input_shape[2]} spectrogram; use more mels/frames"
            )
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], WIDTHS[0], 3, padding=1, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_chans = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                blocks.append(BasicBlock(in_chans, width, 2 if stage > 0 and i == 0 else 1))
                in_chans = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.fc = nn.Linear(in_chans, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))))  # (B, num_classes)
