"""Tests for tune_digits.inference and ``tune-digits predict``: an attempt folder predicts on its own."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tune_digits.checkpoint import save_checkpoint
from tune_digits.cli import app
from tune_digits.config import load_config, to_flat
from tune_digits.corpus import scan
from tune_digits.data import build_features
from tune_digits.demo import demo_root
from tune_digits.errors import UserError
from tune_digits.features import spectrogram_shape
from tune_digits.inference import build_model, collect_audio, ensemble_proba, featurize, load_model, predict_files
from tune_digits.models.cepstral import Smoothed
from tune_digits.run import train_run
from tune_digits.train import predict_proba

torch.set_num_threads(2)
runner = CliRunner()


@pytest.fixture(scope="module")
def attempt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """submissions/attempt-1 (with model.onnx) of a 3-epoch demo run; the runs folder is then moved away."""
    base = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNE_DIGITS_CACHE", str(tmp_path_factory.mktemp("cache")))
        cfg = load_config(None, ["train.epochs=3", "train.threads=2", "train.device=cpu"])
        train_run(cfg, base / "runs" / "only", wandb="disabled", progress=False)
        argv = ["submit", "--attempt", "1", "--runs", str(base / "runs"), "--submissions", str(base / "submissions")]
        result = runner.invoke(app, [*argv, "--onnx", "--wandb", "disabled"])
        assert result.exit_code == 0, result.output
    (base / "runs").rename(base / "runs-moved-away")
    return base / "submissions" / "attempt-1"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_reproduces_the_attempts_test_predictions(attempt: Path, tmp_path: Path, tmp_cache: Path) -> None:
    expected = _rows(attempt / "predictions.csv")
    files = [str(demo_root() / row["file"]) for row in expected]
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", "--model", str(attempt), *files, "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = _rows(out)
    assert [Path(r["file"]).name for r in got] == [Path(r["file"]).name for r in expected]
    assert [int(r["digit"]) for r in got] == [int(r["predicted"]) for r in expected]
    assert np.allclose([float(r["probability"]) for r in got], [float(r["probability"]) for r in expected], atol=1e-4)
    assert not any(tmp_cache.iterdir())  # no feature cache: the recordings were decoded directly


def test_predict_table_and_warnings(attempt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(demo_root() / "4_usm2_1.wav", folder / "4_usm2_1.wav")
    (folder / "notes.txt").write_text("no audio")
    (folder / "broken.wav").write_bytes(b"RIFF0000WAVE")
    result = runner.invoke(app, ["predict", "--model", str(attempt / "model.pt"), str(folder)])
    assert result.exit_code == 0, result.output
    assert "4_usm2_1.wav" in result.output
    assert "1 non-audio files skipped" in result.output and "1 unreadable recordings skipped" in result.output
    missing = runner.invoke(app, ["predict", "--model", str(attempt), str(tmp_path / "nope.wav")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output


def _untrained_model(path: Path, overrides: list[str], seed: int) -> Path:
    """A model.pt of a randomly initialised model (no training needed to test how predictions combine)."""
    cfg = load_config(None, overrides)
    shape = spectrogram_shape(cfg.audio, cfg.features)
    torch.manual_seed(seed)
    model = build_model(cfg, shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model.state_dict(), to_flat(cfg), {"input_shape": list(shape), "norm": [0.0, 1.0]})
    return path


def test_an_ensemble_averages_models_that_take_different_images(tmp_path: Path) -> None:
    """A 40 x 63 and a 64 x 126 model: each is fed its own features, and the probabilities are averaged."""
    a = load_model(_untrained_model(tmp_path / "a" / "model.pt", [], seed=1))
    b = load_model(_untrained_model(tmp_path / "b" / "model.pt", ["features.n_mels=64", "features.hop_length=64"], 2))
    assert a.input_shape != b.input_shape
    files = sorted(demo_root().glob("*_0.wav"))[:12]
    proba, ok, errors = ensemble_proba([a, b], files)
    assert ok == files and errors == [] and proba.shape == (12, 10)
    singles = [predict_proba(m.model, featurize(files, m.cfg)[0], m.cfg.features.normalize, m.norm) for m in (a, b)]
    assert torch.allclose(proba, (singles[0] + singles[1]) / 2, atol=1e-6)
    assert not torch.allclose(proba, singles[0], atol=1e-3)  # the second model counts
    preds = predict_files([a, b], files, errors=[])
    assert [p.digit for p in preds] == proba.argmax(dim=1).tolist()
    assert np.allclose([p.probability for p in preds], proba.max(dim=1).values.numpy())
    assert predict_files([a], files) == predict_files(a, files)  # one model in a list is that model


def test_an_ensemble_refuses_models_that_read_different_recordings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tune_digits.inference as inference

    a = load_model(_untrained_model(tmp_path / "a" / "model.pt", [], seed=1))
    b = load_model(_untrained_model(tmp_path / "b" / "model.pt", ["features.n_mels=64", "features.hop_length=64"], 2))
    files = sorted(demo_root().glob("*_0.wav"))[:3]
    real = inference.featurize

    def drops_one_at_64_bands(paths, cfg):  # as if one model's decoding failed where the other's did not
        x, ok, errors = real(paths, cfg)
        return (x[1:], ok[1:], [*errors, "gone"]) if cfg.features.n_mels == 64 else (x, ok, errors)

    monkeypatch.setattr(inference, "featurize", drops_one_at_64_bands)
    with pytest.raises(UserError, match="cannot read the same recordings as"):
        ensemble_proba([a, b], files)


def test_predict_cli_with_two_models(tmp_path: Path) -> None:
    a = _untrained_model(tmp_path / "a" / "model.pt", [], seed=1)
    b = _untrained_model(tmp_path / "b" / "model.pt", ["features.n_mels=64", "features.hop_length=64"], seed=2)
    files = sorted(demo_root().glob("*_1.wav"))[:6]
    out = tmp_path / "pred.csv"
    result = runner.invoke(
        app, ["predict", "--model", str(a), "--model", str(b.parent), *map(str, files), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    want = predict_files([load_model(a), load_model(b)], files)
    got = _rows(out)
    assert [Path(r["file"]).name for r in got] == [f.name for f in files]
    assert [int(r["digit"]) for r in got] == [p.digit for p in want]
    assert np.allclose([float(r["probability"]) for r in got], [p.probability for p in want], atol=1e-4)
    table = runner.invoke(app, ["predict", "--model", str(a), "--model", str(b), str(files[0])])
    assert table.exit_code == 0 and "mean of" in table.output
    missing = runner.invoke(app, ["predict", "--model", str(a), "--model", str(tmp_path / "gone.pt"), str(files[0])])
    assert missing.exit_code == 2 and "not found" in missing.output


def test_onnx_export_matches_pytorch(attempt: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    manifest = json.loads((attempt / "manifest.json").read_text())
    assert "model.onnx" in manifest["files"]
    loaded = load_model(attempt)
    x, ok, errors = featurize(sorted(demo_root().glob("2_*_0.wav")), loaded.cfg)
    assert len(ok) == 8 and errors == []
    runtime = ort.InferenceSession(str(attempt / "model.onnx"), providers=["CPUExecutionProvider"])
    got = runtime.run(None, {"features": x.numpy()})[0]
    want = predict_proba(loaded.model, x, loaded.cfg.features.normalize, loaded.norm).numpy()
    assert got.shape == (8, 10)
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("variant", ["raw", "bilateral"])
def test_featurize_matches_the_training_feature_cache(variant: str, tmp_cache: Path) -> None:
    cfg = load_config(None, [f"features.variant={variant}"])
    catalog = scan(demo_root())
    fs = build_features(catalog, cfg.audio, cfg.features, cfg.bilateral, progress=False)
    rows = [0, 57, 300]
    x, ok, errors = featurize([demo_root() / fs.files[r] for r in rows], cfg)
    assert errors == [] and len(ok) == 3
    assert x.dtype == torch.float32 and tuple(x.shape[1:]) == fs.shape
    assert np.array_equal(x.numpy(), np.asarray(fs.x[rows], dtype=np.float32))


def test_featurize_counts_unreadable_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    cfg = load_config(None, [])
    x, ok, errors = featurize([demo_root() / "0_enf2_0.wav", bad, tmp_path / "gone.wav"], cfg)
    assert ok == [demo_root() / "0_enf2_0.wav"] and x.shape == (1, 1, 40, 63)
    assert len(errors) == 2 and all("\n" not in e for e in errors)
    empty, none_ok, _ = featurize([bad], cfg)
    assert empty.shape == (0, 1, 40, 63) and none_ok == []


def test_collect_audio_recurses_folders_and_keeps_named_files(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/e/1_a_0.wav", "d/2_a_0.WAV", "d/notes.md", "d/.hidden.wav", "x.flac"):
        (tmp_path / name).write_bytes(b"")
    audio, other = collect_audio([tmp_path / "d", tmp_path / "x.flac"])
    assert [p.relative_to(tmp_path).as_posix() for p in audio] == ["d/2_a_0.WAV", "d/e/1_a_0.wav", "x.flac"]
    assert [p.name for p in other] == ["notes.md"]


def test_load_model_refuses_damaged_checkpoint(attempt: Path, tmp_path: Path) -> None:
    loaded = load_model(attempt)
    assert not loaded.model.training and loaded.input_shape == (1, 40, 63)
    preds = predict_files(loaded, [demo_root() / "9_rpf1_2.wav"])
    assert len(preds) == 1 and 0 <= preds[0].digit <= 9 and 0.0 < preds[0].probability <= 1.0
    damaged = tmp_path / "model.pt"
    damaged.write_bytes((attempt / "model.pt").read_bytes()[:1000])
    with pytest.raises(UserError, match="cannot be loaded"):
        load_model(damaged)


def test_onnx_without_its_packages_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    subs = tmp_path / "submissions"
    argv = ["submit", "--attempt", "1", "--onnx", "--runs", str(tmp_path), "--submissions", str(subs)]
    result = runner.invoke(app, [*argv, "--wandb", "disabled"])
    assert result.exit_code == 2
    assert "--onnx needs the onnx packages (onnxruntime is missing)" in result.output
    assert not subs.exists()


def test_a_smoothed_model_round_trips_through_its_checkpoint(tmp_path: Path) -> None:
    """model.lifter is rebuilt from the checkpoint's config: the loaded model smooths as the saved one did."""
    path = _untrained_model(tmp_path / "s" / "model.pt", ["model.lifter=13"], seed=3)
    loaded = load_model(path)
    assert isinstance(loaded.model, Smoothed) and loaded.model.smooth.keep == 13
    files = sorted(demo_root().glob("*_2.wav"))[:5]
    x = featurize(files, loaded.cfg)[0]
    torch.manual_seed(3)
    saved = build_model(loaded.cfg, loaded.input_shape).eval()
    want = predict_proba(saved, x, loaded.cfg.features.normalize, loaded.norm)
    torch.testing.assert_close(ensemble_proba([loaded], files)[0], want)


def test_a_smoothed_resnet20_exports_to_onnx(tmp_path: Path) -> None:
    """The model-b architecture (cepstral smoothing + ResNet-20) runs the same in onnxruntime as in PyTorch."""
    pytest.importorskip("onnxruntime")
    from tune_digits.inference import ONNX_TOLERANCE, export_onnx

    path = _untrained_model(tmp_path / "r" / "model.pt", ["model.name=resnet20", "model.lifter=20"], seed=4)
    loaded = load_model(path)
    gap = export_onnx(loaded, tmp_path / "r" / "model.onnx")
    assert (tmp_path / "r" / "model.onnx").stat().st_size > 0
    assert gap <= ONNX_TOLERANCE
