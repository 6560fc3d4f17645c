"""Tests for tune_digits.models: lenet5, the listed timm backbones and the error messages."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from torch import nn

from tune_digits.config import AudioConfig, FeatureConfig, ModelConfig, load_config
from tune_digits.errors import ConfigError
from tune_digits.features import spectrogram_shape
from tune_digits.models import (
    DEFAULT_INPUT_SHAPE,
    LISTED_TIMM,
    MODELS,
    count_parameters,
    create_model,
    list_models,
    model_from_config,
    model_spec,
)
from tune_digits.models.cepstral import smoothing_matrix
from tune_digits.models.resnet_cifar import DEPTHS, BasicBlock
from tune_digits.models.timm_backbone import TimmBackbone, min_input_side

torch.set_num_threads(2)

SHAPES = [(1, 64, 126), (1, 40, 101), (1, 128, 63)]


def _forward(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 2) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, *input_shape))  # (B, num_classes)


def _first_linear(model: nn.Module) -> nn.Linear:
    return next(m for m in model.modules() if isinstance(m, nn.Linear))


def test_list_models_is_lenet5_and_known_timm_names() -> None:
    names = list_models()
    assert names[0] == "lenet5"
    assert names[1:5] == list(DEPTHS) == ["resnet20", "resnet32", "resnet44", "resnet56"]
    assert names[5:] == list(LISTED_TIMM)
    assert all(timm.is_model(name) for name in LISTED_TIMM)
    assert not any(timm.is_model(name) for name in DEPTHS)  # no timm model is shadowed


@pytest.mark.parametrize("name", list_models())
def test_listed_model_forward_on_spectrogram_sizes(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name)
    assert model.tune_digits_name == name
    assert model.input_shape == MODELS[name].input_shape == (1, 40, 63)  # the default pipeline's images
    # timm backbones take any spectrogram size, so one build serves both sizes (lenet5 covers SHAPES).
    for input_shape in SHAPES if name == "lenet5" else SHAPES[:2]:
        net = create_model(name, input_shape) if name == "lenet5" else model
        logits = _forward(net, input_shape)
        assert logits.shape == (2, 10), input_shape
        assert torch.isfinite(logits).all(), input_shape


def test_lenet5_backward() -> None:
    torch.manual_seed(0)
    model = create_model("lenet5", (1, 64, 126), dropout=0.2)
    model.train()
    x = torch.randn(4, 1, 64, 126)  # (B, 1, F, T)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("input_shape", [*SHAPES, (3, 32, 48), (1, 4, 4)])
def test_lenet5_input_shapes(input_shape: tuple[int, int, int]) -> None:
    model = create_model("lenet5", input_shape, num_classes=7)
    assert _forward(model, input_shape, batch=3).shape == (3, 7)


@pytest.mark.parametrize(
    "options",
    [
        {"channels": (8,), "fc": ()},
        {"channels": (8, 16, 32), "kernel_size": 3, "fc": (64,)},
        {"kernel_size": 7, "activation": "tanh", "batch_norm": False},
        {"activation": "gelu", "dropout": 0.5},
        {"activation": "silu", "fc": (32, 32, 32)},
        {"channels": [4, 8], "fc": [16]},
    ],
)
def test_lenet5_hyperparameters(options: dict[str, object]) -> None:
    model = create_model("lenet5", (1, 40, 101), **options)
    assert _forward(model, (1, 40, 101)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == list(options.get("channels", (6, 16)))
    assert [lin.out_features for lin in linears] == [*options.get("fc", (120, 84)), 10]
    assert all(c.kernel_size[0] == options.get("kernel_size", 5) for c in convs)
    has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert has_bn == options.get("batch_norm", True)
    assert all(d.p == options.get("dropout", 0.0) for d in model.modules() if isinstance(d, nn.Dropout))


def test_lenet5_flatten_size_adapts_to_input_shape() -> None:
    small = create_model("lenet5", (1, 40, 101))
    default = create_model("lenet5", (1, 64, 126))
    tall = create_model("lenet5", (1, 128, 63))
    assert _first_linear(small).in_features == 16 * (40 // 4) * (101 // 4)
    assert _first_linear(default).in_features == 16 * (64 // 4) * (126 // 4)
    assert _first_linear(tall).in_features == 16 * (128 // 4) * (63 // 4)
    assert _first_linear(small).in_features != _first_linear(default).in_features


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"channels": ()}, "model.channels"),
        ({"channels": (0, 16)}, "model.channels"),
        ({"channels": 6}, "model.channels"),
        ({"channels": (6, 16, 32, 64, 128, 256, 512)}, "model.channels"),
        ({"kernel_size": 4}, "model.kernel_size"),
        ({"kernel_size": 0}, "model.kernel_size"),
        ({"kernel_size": 5.0}, "model.kernel_size"),
        ({"fc": (0,)}, "model.fc"),
        ({"fc": 120}, "model.fc"),
        ({"activation": "swish"}, "model.activation"),
        ({"batch_norm": "yes"}, "model.batch_norm"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"dropout": -0.1}, "model.dropout"),
        ({"num_classes": 1}, "num_classes"),
        ({"input_shape": (64, 126)}, "input_shape"),
        ({"input_shape": (1, 0, 126)}, "input_shape"),
        ({"pretrained": True}, "model.pretrained"),
    ],
)
def test_lenet5_invalid_hyperparameters_raise_config_error(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_model("lenet5", **options)
    message = str(info.value)
    assert message.startswith(key)
    assert "\n" not in message


def test_timm_invalid_common_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^model\.dropout"):
        create_model("resnet18", dropout=1.5)


def test_unknown_name_lists_close_matches_on_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        create_model("resnet1")
    message = str(info.value)
    assert message.startswith("unknown model 'resnet1'; closest matches: ")
    assert "resnet18" in message
    assert "\n" not in message
    assert len(message.split(": ", 1)[1].split(", ")) <= 5


def test_unknown_name_without_close_match_lists_known_models() -> None:
    with pytest.raises(
        ConfigError, match="known-good models: lenet5, resnet20, resnet32, resnet44, resnet56, efficientnet_b0"
    ):
        create_model("zzzzqqqq")


def test_timm_ignores_lenet_options_and_maps_dropout() -> None:
    model = create_model("resnet18", (1, 40, 101), num_classes=5, channels=(1,), kernel_size=3, dropout=0.3)
    assert isinstance(model, TimmBackbone)
    assert model.backbone.drop_rate == 0.3
    assert _forward(model, (1, 40, 101)).shape == (2, 5)


def test_timm_upsamples_inputs_below_min_side() -> None:
    assert min_input_side("inception_v3") >= 75
    assert min_input_side("resnet18") == 32
    model = create_model("resnet18", (1, 8, 20))
    assert _forward(model, (1, 8, 20)).shape == (2, 10)
    assert _forward(model, (1, 128, 20)).shape == (2, 10)  # only the short side is stretched


def test_timm_multichannel_input() -> None:
    model = create_model("mobilenetv3_small_100", (3, 40, 101), num_classes=4)
    assert _forward(model, (3, 40, 101)).shape == (2, 4)


def test_pretrained_weights_not_on_disk_raise_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    offline_before = huggingface_hub.constants.HF_HUB_OFFLINE
    with pytest.raises(ConfigError) as info:
        create_model("mobilenetv3_small_100", pretrained=True)
    assert str(info.value) == (
        "pretrained weights for mobilenetv3_small_100 are not on this machine; "
        "use model.pretrained=false or put them in the Hugging Face cache"
    )
    assert offline_before == huggingface_hub.constants.HF_HUB_OFFLINE
    assert "HF_HUB_OFFLINE" not in os.environ


def _fake_hf_cache(cache: Path, name: str) -> dict[str, torch.Tensor]:
    """Put random ImageNet-shaped weights for ``name`` where the Hugging Face cache keeps them."""
    from safetensors.torch import save_file

    repo = cache / f"models--{timm.models.get_pretrained_cfg(name).hf_hub_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    state = timm.create_model(name, pretrained=False).state_dict()  # 3 channels, 1000 classes
    save_file({k: v.contiguous() for k, v in state.items()}, str(repo / "snapshots" / commit / "model.safetensors"))
    return state


def test_pretrained_weights_in_hf_cache_load_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    name = "mobilenetv3_small_100"
    saved = _fake_hf_cache(tmp_path, name)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    model = create_model(name, (1, 40, 101), pretrained=True)
    assert _forward(model, (1, 40, 101)).shape == (2, 10)
    assert model.backbone.conv_stem.in_channels == 1
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["conv_head.weight"], saved["conv_head.weight"])
    assert torch.allclose(loaded["conv_stem.weight"], saved["conv_stem.weight"].sum(dim=1, keepdim=True))


def test_count_parameters() -> None:
    model = create_model("lenet5", (1, 64, 126))
    n = count_parameters(model)
    assert n == sum(p.numel() for p in model.parameters())
    assert 10_000 < n < 2_000_000
    assert count_parameters(create_model("lenet5", (1, 40, 101))) < n


def test_cepstral_smoothing_is_a_projection_that_keeps_the_envelope() -> None:
    p = smoothing_matrix(40, 13)
    torch.testing.assert_close(p, p.T)
    torch.testing.assert_close(p @ p, p, atol=1e-5, rtol=0)  # smoothing twice = smoothing once
    torch.testing.assert_close(p @ torch.ones(40), torch.ones(40), atol=1e-5, rtol=0)  # a flat spectrum stays
    torch.testing.assert_close(smoothing_matrix(40, 40), torch.eye(40), atol=1e-5, rtol=0)
    bins = torch.arange(40, dtype=torch.float32)
    envelope = 10 * torch.cos(torch.pi * (bins + 0.5) * 3 / 40)  # cepstral coefficient 3: a formant-like shape
    ripple = 4 * torch.cos(torch.pi * (bins + 0.5) * 30 / 40)  # coefficient 30: a harmonic comb
    torch.testing.assert_close(p @ (envelope + ripple), envelope, atol=1e-4, rtol=0)
    torch.testing.assert_close(smoothing_matrix(40, 31) @ ripple, ripple, atol=1e-4, rtol=0)  # kept from lifter 31


def test_lifter_puts_a_parameter_free_smoothing_in_front_of_any_model() -> None:
    torch.manual_seed(0)
    plain = create_model("lenet5", (1, 40, 63))
    torch.manual_seed(0)
    smoothed = create_model("lenet5", (1, 40, 63), lifter=13)
    assert count_parameters(smoothed) == count_parameters(plain)
    assert (smoothed.tune_digits_name, smoothed.input_shape) == ("lenet5", (1, 40, 63))
    x = torch.randn(3, 1, 40, 63)
    p = smoothing_matrix(40, 13)
    with torch.no_grad():
        smoothed.eval(), plain.eval()
        torch.testing.assert_close(smoothed(x), plain(torch.einsum("gf,bcft->bcgt", p, x)))
        assert not torch.allclose(smoothed(x), plain(x), atol=1e-4)
    assert _forward(create_model("resnet18", (1, 64, 126), lifter=20), (1, 64, 126)).shape == (2, 10)


def test_lifter_beyond_the_mel_bands_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"model.lifter: must be in \[1, 40\]") as info:
        create_model("lenet5", (1, 40, 63), lifter=41)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="model.lifter"):
        ModelConfig(lifter=-1)


@pytest.mark.parametrize(
    ("name", "blocks", "params"), [("resnet20", 9, 0.27e6), ("resnet32", 15, 0.46e6), ("resnet56", 27, 0.85e6)]
)
def test_small_image_resnets_keep_the_paper_depths_and_sizes(name: str, blocks: int, params: float) -> None:
    """He et al.'s table 6: ResNet-20/32/56 have 0.27/0.46/0.85 M parameters (3n basic blocks, 16/32/64 channels)."""
    model = create_model(name, (1, 40, 63))
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == blocks
    assert abs(count_parameters(model) - params) / params < 0.03
    x = torch.randn(2, 1, 40, 63)
    model.eval()
    with torch.no_grad():
        assert model.stem(x).shape == (2, 16, 40, 63)  # full resolution into the first stage
        assert model.blocks(model.stem(x)).shape == (2, 64, 10, 16)  # two stride-2 stages
        assert model(x).shape == (2, 10)


def test_resnet20_learns_a_batch() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", (1, 40, 63), dropout=0.1)
    x, y = torch.randn(16, 1, 40, 63), torch.arange(16) % 10
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pretrained": True}, "model.pretrained: resnet20 has no pretrained weights"),
        ({"input_shape": (1, 3, 63)}, "halves the input twice, too often for a 3x63 spectrogram"),
    ],
)
def test_small_image_resnet_errors_are_one_line(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        create_model("resnet20", **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_default_input_shape_is_the_default_pipelines() -> None:
    assert spectrogram_shape(AudioConfig(), FeatureConfig()) == DEFAULT_INPUT_SHAPE


@pytest.mark.parametrize("name", list(MODELS))
def test_registry_specs_build_from_a_config_section(name: str) -> None:
    spec = model_spec(name)
    assert spec is MODELS[name] and spec.name == name
    assert spec.is_timm == timm.is_model(name) and spec.is_lenet == (name == "lenet5")
    assert spec.gpu_share == (0.25 if spec.is_lenet else 1.0)
    m = ModelConfig(name=name, dropout=0.1, channels=(4, 8), fc=(16,))
    model = model_from_config(m, spec.input_shape, num_classes=3)
    assert model.tune_digits_name == name and _forward(model, spec.input_shape).shape == (2, 3)
    if not spec.has_pretrained:
        with pytest.raises(ConfigError, match=rf"^model\.pretrained: {name} has no pretrained weights"):
            model_from_config(m, pretrained=True)


def test_an_unregistered_timm_name_gets_a_timm_spec() -> None:
    spec = model_spec("resnet10t")
    assert spec.is_timm and spec.has_pretrained and "resnet10t" not in MODELS


@pytest.mark.parametrize("channels", [[8], [4, 8, 16]])
def test_config_and_lenet_take_the_same_channels(channels: list[int]) -> None:
    """One rule: one or more positive ints, in a config file as in ``create_model``."""
    cfg = load_config(None, [f"model.channels={channels}"])
    model = model_from_config(cfg.model)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels


@pytest.mark.parametrize("bad", ["model.channels=[]", "model.channels=[8, 0]", "model.fc=[0]"])
def test_bad_model_settings_in_a_config_are_one_line_errors(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [bad])
    assert str(info.value).startswith(bad.split("=")[0] + ":") and "\n" not in str(info.value)
