"""Presets, the search spaces that start from them, and training with the whole voice-and-room recipe."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.config import Config, list_presets, load_config, preset_values, with_values
from tune_digits.errors import ConfigError
from tune_digits.models import LISTED_TIMM
from tune_digits.space import load_space
from tune_digits.train import Prepared, Trainer, evaluate, fit, prepare

REPO = Path(__file__).resolve().parents[1]
RATE = 8000
runner = CliRunner()
SPACE_OF = {"lenet5": "search_spaces/lenet.yaml", "model-b": "search_spaces/timm.yaml"}
RECIPE = [
    "augment.enabled=true",
    "augment.freq_warp=0.15",
    "augment.time_stretch=0.1",
    "augment.eq_db=6",
    "augment.noise_prob=0.5",
]


def test_presets_are_valid_configs() -> None:
    assert {"lenet5", "model-b"} <= set(list_presets())
    for name in list_presets():
        cfg = load_config(preset=name)
        assert isinstance(cfg, Config) and cfg.augment.enabled
    assert load_config(preset="lenet5").model.name == "lenet5"
    assert load_config(preset="model-b").model.name == "resnet20"  # not LeNet-5: final-eight's Model B
    assert load_config(preset="model-b").model.lifter > 0
    assert load_config(preset="model-b-resnet18").model.name in LISTED_TIMM


def test_overrides_win_over_the_preset(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  epochs: 7\n  lr: 0.01\n", encoding="utf-8")
    cfg = load_config(file, ["train.lr=0.5"], preset="lenet5")
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.5
    assert cfg.augment.freq_warp == preset_values("lenet5")["augment.freq_warp"]


def test_a_preset_extends_another() -> None:
    base, wide = preset_values("lenet5"), preset_values("lenet5-wide")
    assert wide["model.channels"] == [32, 64] and base["model.channels"] == [16, 32]
    assert {k: v for k, v in wide.items() if k != "model.channels"} == {
        k: v for k, v in base.items() if k != "model.channels"
    }
    assert load_config(preset="lenet5-wide").model.channels == (32, 64)


def test_preset_extends_loops_and_unknown_bases_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tune_digits import config

    (tmp_path / "a.yaml").write_text("extends: b\ntrain:\n  lr: 0.1\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("extends: a\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("extends: nope\n", encoding="utf-8")
    (tmp_path / "d.yaml").write_text("extends: d\n", encoding="utf-8")
    monkeypatch.setattr(config, "PRESETS_DIR", tmp_path)
    for name in ("a", "d"):
        with pytest.raises(ConfigError, match="extends must name another preset, without a loop"):
            preset_values(name)
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        preset_values("c")


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'lenet6'; presets: .*lenet5.*model-b"):
        load_config(preset="lenet6")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_values("../search_spaces/lenet")


@pytest.mark.parametrize("name", sorted(SPACE_OF))
def test_search_spaces_start_from_the_presets(name: str) -> None:
    space = load_space(REPO / SPACE_OF[name])
    searched = {d.key for d in space.dims}
    preset = preset_values(name)
    first = space.start[0] if space.start else {}
    for key, value in preset.items():
        if key.startswith("data."):  # how to validate is the search's own choice: whole speakers
            assert key not in space.fixed, key
        elif key in searched:
            assert not first or first[key] == (list(value) if isinstance(value, tuple) else value), key
        else:
            assert space.fixed.get(key) == value, key
    base = space.base_config()
    assert base.augment.freq_warp == preset["augment.freq_warp"]


def make_corpus(root: Path, speakers: int = 5) -> Path:
    rng = np.random.default_rng(4)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.4 * RATE)) / RATE
    for s in range(speakers):
        for digit in range(10):
            for take in range(2):
                f0 = 250 + 170 * digit + 10 * s + 5 * take
                wave = (0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(5 * np.pi * f0 * t)) * np.hanning(len(t))
                wave += 0.02 * rng.standard_normal(len(t))
                sf.write(root / f"{digit}_s{s}_{take}.wav", wave.astype(np.float32), RATE, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Prepared]:
    root = make_corpus(tmp_path_factory.mktemp("tones"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNE_DIGITS_CACHE", str(tmp_path_factory.mktemp("cache")))
        cfg = load_config(
            overrides=[f"data.root={root}", "data.split=loso:s0", "train.epochs=2", "train.device=cpu", *RECIPE]
        )
        return cfg, prepare(cfg)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _history(result: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in result.history]


def test_whole_recipe_trains_deterministically(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    a, b = fit(cfg, data=data), fit(cfg, data=data)
    assert _history(a) == _history(b)
    assert all(math.isfinite(h["train_loss"]) for h in a.history)
    batches = math.ceil(len(data.rows["train"]) / cfg.train.batch_size) * cfg.augment.repeats
    assert a.augmented_batches == 2 * batches


def test_signal_stage_leaves_evaluation_alone(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    trainer = Trainer(cfg, data)
    trainer.step()
    before = evaluate(trainer.model, trainer.x_val, trainer.y_val, "utterance", (0.0, 1.0))
    off = Trainer(with_values(cfg, {"augment.enabled": False}), data)
    off.model.load_state_dict(trainer.model.state_dict())
    after = evaluate(off.model, off.x_val, off.y_val, "utterance", (0.0, 1.0))
    assert before["predictions"] == after["predictions"] and before["loss"] == pytest.approx(after["loss"])


def test_the_recipe_is_off_when_augmentation_is(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    off = with_values(cfg, {"augment.enabled": False, "train.epochs": 1})
    result = fit(off, data=data)
    assert result.augmented_batches == 0
    bare = {"augment.freq_warp": 0.0, "augment.time_stretch": 0.0, "augment.eq_db": 0.0, "augment.noise_prob": 0.0}
    assert _history(result) == _history(fit(with_values(off, bare), data=data))


def test_cli_preset(tmp_path: Path, tmp_cache: Path) -> None:
    root = make_corpus(tmp_path / "c", speakers=3)
    out = tmp_path / "run"
    args = ["train", "--preset", "lenet5", "--data", str(root), "--epochs", "1", "--out", str(out)]
    result = runner.invoke(app, [*args, "--wandb", "disabled", "--set", "augment.eq_db=7.5"])
    assert result.exit_code == 0, result.output
    cfg = load_config(out / "config.yaml")
    assert cfg.augment.eq_db == 7.5 and cfg.train.epochs == 1
    assert cfg.augment.freq_warp == preset_values("lenet5")["augment.freq_warp"]
    split = json.loads((out / "split.json").read_text())
    voices = {part: {Path(f).stem.split("_")[1] for f in split[part]} for part in ("train", "val", "test")}
    assert cfg.data.val_clips > 0 and voices["val"] == voices["train"] == {"s0", "s1", "s2"} - voices["test"]
    bad = runner.invoke(app, ["train", "--preset", "nope", "--data", str(root), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "presets: " in bad.stderr and "lenet5" in bad.stderr
