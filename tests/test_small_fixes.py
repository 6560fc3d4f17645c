"""Small things seen by a new user: a search space that starts where it says, predict listing each file once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from tune_digits.cli import app
from tune_digits.inference import collect_audio
from tune_digits.space import load_space

REPO = Path(__file__).resolve().parents[1]


def test_timm_space_starts_from_the_model_b_preset() -> None:
    space = load_space(REPO / "search_spaces" / "timm.yaml")
    assert space.start, "timm.yaml says it starts from the preset: it needs a start: block"
    first = space.start[0]
    assert first["model.name"] == "resnet20" and first["model.lifter"] == 20
    assert first["train.lr"] == 0.002


def test_collect_audio_lists_a_file_once_when_named_and_inside_a_folder(tmp_path: Path) -> None:
    t = np.arange(800) / 8000
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
    audio, _ = collect_audio([tmp_path / "b.wav", tmp_path, tmp_path / "./b.wav"])
    assert [p.name for p in audio] == ["b.wav", "a.wav"]


def test_predict_prints_each_file_once(tmp_path: Path) -> None:
    from test_injection import fake_model

    clips = tmp_path / "clips"
    clips.mkdir()
    t = np.arange(8000) / 8000
    sf.write(clips / "one.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
    model = fake_model(tmp_path / "model.pt")
    result = CliRunner().invoke(app, ["predict", "--model", str(model), str(clips / "one.wav"), str(clips)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("one.wav") == 1, result.stdout


def test_help_shows_no_type_for_flags_and_a_type_for_valued_options() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=120)
    assert result.exit_code == 0
    assert "<bool>" not in result.output
    epochs = next(line for line in result.output.splitlines() if "--epochs" in line)
    assert "<int>" in epochs


def test_train_with_an_unknown_model_fails_before_reading_data(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import tune_digits.train as train_module

    def no_data(*_: object, **__: object) -> None:
        raise AssertionError("data was loaded before the model name was checked")

    monkeypatch.setattr(train_module, "prepare", no_data)
    result = CliRunner().invoke(app, ["train", "--model", "lenet", "--wandb", "disabled", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "unknown model 'lenet'" in result.stderr
