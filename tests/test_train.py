"""The fit loop: learning on real FSDD, augmentation only in training, early stopping, resume, determinism, NaN."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

import tune_digits.train as train_mod
from tune_digits.augment import SpecAugment
from tune_digits.config import Config, load_config, parse_overrides, with_values
from tune_digits.errors import DataError, UserError
from tune_digits.train import Prepared, Trainer, channels_last, evaluate, fit, predict_proba, prepare

RATE = 8000


def make_corpus(root: Path, speakers: int = 6, takes: int = 2) -> Path:
    """Noisy tones: the pitch (and a second partial) depends on the digit, a little on the speaker."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.5 * RATE)) / RATE
    for s in range(speakers):
        for digit in range(10):
            for take in range(takes):
                f0 = 250 + 170 * digit + 10 * s + 5 * take
                wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 2.5 * f0 * t)
                wave = wave * np.hanning(len(t)) + 0.02 * rng.standard_normal(len(t))
                path = root / f"{digit}_spk{s}_{take}.wav"
                sf.write(path, wave.astype(np.float32), RATE, subtype="PCM_16")
    return root


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``train.threads`` sets torch's global thread count: give the next tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Prepared]:
    """A 120-recording corpus (6 speakers) with its features, built once for the module."""
    root = make_corpus(tmp_path_factory.mktemp("tones"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNE_DIGITS_CACHE", str(tmp_path_factory.mktemp("cache")))
        cfg = load_config(
            overrides=[
                f"data.root={root}",
                "data.split=speakers",
                "train.epochs=4",
                "train.threads=1",
                "train.device=cpu",
            ]
        )
        prepared = prepare(cfg)
    return cfg, prepared


def run(cfg: Config, data: Prepared, overrides: list[str] | None = None, **kwargs: Any):
    cfg = with_values(cfg, parse_overrides(overrides or []))
    return fit(cfg, data=data, **kwargs)


def without_time(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in rec.items() if k != "seconds"} for rec in history]


class Stop(Exception):
    pass


def test_prepare_splits_by_speaker(tones: tuple[Config, Prepared]) -> None:
    _, data = tones
    fs = data.features
    spk = {part: {fs.speakers[i] for i in rows} for part, rows in data.rows.items()}
    assert not (spk["train"] & spk["val"]) and not (spk["train"] & spk["test"]) and not (spk["val"] & spk["test"])
    assert sum(len(r) for r in data.rows.values()) == 120


def test_fit_result_and_metrics(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    result = run(cfg, data)
    m = result.metrics()
    assert len(result.history) == 4 and [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert 1 <= m["best_epoch"] <= 4
    best = result.history[m["best_epoch"] - 1]
    assert m["val_f1"] == pytest.approx(best["val_f1"])  # the best-validation weights are the ones evaluated
    assert m["val_f1"] == max(h["val_f1"] for h in result.history)
    assert len(m["per_class_f1"]) == 10 and np.array(m["confusion_matrix"]).shape == (10, 10)
    assert np.array(m["confusion_matrix"]).sum() == len(data.rows["test"])
    assert m["input_shape"] == [1, 40, 63] and m["num_parameters"] > 0
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine ends at zero
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert m["augmented_batches"] > 0  # augmentation is on by default


@pytest.mark.real_data
def test_lenet5_learns_real_fsdd(shared_data: Path, tmp_path: Path, tmp_cache: Path) -> None:
    """Real recordings, the official split's test and validation clips (0-4, 5-9) and 20 training clips a pair."""
    root = tmp_path / "fsdd"
    root.mkdir()
    for wav in (shared_data / "fsdd" / "recordings").glob("*.wav"):
        if int(wav.stem.rsplit("_", 1)[1]) < 30:
            (root / wav.name).symlink_to(wav)
    cfg = load_config(overrides=[f"data.root={root}", "data.split=fsdd-official", "train.epochs=4"])
    result = fit(cfg)
    m = result.metrics()
    assert len(m["confusion_matrix"]) == 10 and np.array(m["confusion_matrix"]).sum() == 250
    assert m["test_f1"] > 0.6, m  # chance is 0.1
    assert m["val_f1"] > 0.6, m


def test_augmentation_runs_only_in_training(tones: tuple[Config, Prepared], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, data = tones
    calls: list[tuple[bool, bool]] = []
    changed: list[bool] = []
    original = SpecAugment.forward

    def counting(self: SpecAugment, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        out = original(self, x, generator)
        calls.append((self.training, bool(torch.is_grad_enabled())))
        changed.append(not torch.equal(out, x))
        return out

    monkeypatch.setattr(SpecAugment, "forward", counting)
    cfg = with_values(cfg, {"augment.enabled": True, "augment.repeats": 2, "train.epochs": 2})
    trainer = Trainer(cfg, data)
    batches = math.ceil(len(data.rows["train"]) / cfg.train.batch_size)
    trainer.step()
    assert len(calls) == 2 * batches and all(training for training, _ in calls)
    assert any(changed)  # it really augments in training
    assert trainer.augmented_batches == 2 * batches
    calls.clear()
    model = trainer.model
    x_val, y_val = trainer.x_val, trainer.y_val
    first = evaluate(model, x_val, y_val, "utterance", (0.0, 1.0))
    assert trainer.finish().metrics()["augmented_batches"] == 2 * batches
    assert calls == []  # neither validation nor the final test evaluation augments

    # the same weights give the same evaluation with augmentation on or off
    plain = Trainer(with_values(cfg, {"augment.enabled": False}), data)
    plain.model.load_state_dict(model.state_dict())
    second = evaluate(plain.model, plain.x_val, plain.y_val, "utterance", (0.0, 1.0))
    assert first["predictions"] == second["predictions"] and first["loss"] == pytest.approx(second["loss"])


def test_predict_proba_ignores_the_training_mode(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    trainer = Trainer(with_values(cfg, {"model.dropout": 0.5}), data)
    trainer.step()
    trainer.model.train()
    a = predict_proba(trainer.model, trainer.x_val, "utterance", (0.0, 1.0))
    trainer.model.train()
    b = predict_proba(trainer.model, trainer.x_val, "utterance", (0.0, 1.0))
    assert torch.equal(a, b)  # eval mode: no dropout, BatchNorm running statistics
    assert a.shape == (len(trainer.x_val), 10)
    assert torch.allclose(a.sum(dim=1), torch.ones(len(a)), atol=1e-5)


def test_early_stopping(tones: tuple[Config, Prepared], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, data = tones
    real = train_mod.evaluate

    def flat(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**real(*args, **kwargs), "f1": 0.5, "loss": 1.0}  # validation that can never improve

    monkeypatch.setattr(train_mod, "evaluate", flat)
    result = run(cfg, data, ["train.epochs=20", "train.patience=3"])
    assert len(result.history) == 4  # epoch 1 is the best; 3 stale epochs stop it
    assert result.best_epoch == 1
    assert [h["improved"] for h in result.history] == [True, False, False, False]
    monkeypatch.setattr(train_mod, "evaluate", real)
    assert len(run(cfg, data, ["train.epochs=5", "train.patience=0"]).history) == 5  # 0 = never stop early


def test_same_seed_same_history(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    overrides = ["train.epochs=2", "augment.enabled=true", "model.dropout=0.2"]
    a = run(cfg, data, overrides)
    b = run(cfg, data, overrides)
    assert without_time(a.history) == without_time(b.history)
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    c = run(cfg, data, [*overrides, "train.seed=1"])
    assert without_time(c.history) != without_time(a.history)


def test_resume_after_interruption_equals_an_uninterrupted_run(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    # dropout draws from the global generator, augmentation from the trainer's: both must be restored
    overrides = ["train.epochs=4", "augment.enabled=true", "model.dropout=0.3"]
    full = run(cfg, data, overrides)
    saved: dict[str, Any] = {}

    def stop_after_two(record: dict[str, Any], state: Any) -> None:
        if record["epoch"] == 2:
            saved.update(state())
            raise Stop

    with pytest.raises(Stop):
        run(cfg, data, overrides, on_epoch=stop_after_two)
    torch.manual_seed(12345)  # whatever happened in between must not matter
    resumed = run(cfg, data, overrides, resume=saved)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert without_time(resumed.history) == without_time(full.history)
    assert resumed.best_epoch == full.best_epoch and resumed.test["f1"] == full.test["f1"]
    assert resumed.augmented_batches == full.augmented_batches > 0


def test_resume_state_is_a_snapshot(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    kept: dict[str, Any] = {}

    def keep(record: dict[str, Any], state: Any) -> None:
        if record["epoch"] == 2:
            kept["state"] = state()
            kept["weights"] = {k: v.clone() for k, v in kept["state"]["model"].items()}
            kept["history"] = len(kept["state"]["history"])

    run(cfg, data, ["train.epochs=4"], on_epoch=keep)
    state = kept["state"]
    assert len(state["history"]) == kept["history"] == 2  # not extended by the later epochs
    assert all(torch.equal(state["model"][k], v) for k, v in kept["weights"].items())  # not trained further
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # a checkpoint of it loads safely
    assert loaded["counters"][0] == 2 and torch.equal(loaded["rng"], state["rng"])


def test_resume_with_more_epochs_continues(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    states: list[dict[str, Any]] = []
    first = run(cfg, data, ["train.epochs=2"], on_epoch=lambda rec, state: states.append(state()))
    assert len(first.history) == 2 and first.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    seen: list[int] = []
    longer = run(cfg, data, ["train.epochs=4"], resume=states[-1], on_epoch=lambda rec, _s: seen.append(rec["epoch"]))
    assert seen == [3, 4]
    assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4]
    assert without_time(longer.history[:2]) == without_time(first.history)
    # the cosine now spans four epochs: the lr is back up at epoch 3 and ends at zero after epoch 4
    lr = cfg.train.lr
    assert longer.history[2]["lr"] == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * 3 / 4)), rel=1e-6)
    assert longer.history[3]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_resume_uses_the_new_optimiser_settings(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    states: list[dict[str, Any]] = []
    base = ["train.epochs=3", "train.schedule=constant"]
    run(cfg, data, base, on_epoch=lambda rec, state: states.append(state()))
    changed = with_values(cfg, {"train.epochs": 3, "train.schedule": "constant", "train.lr": 1e-4})
    trainer = Trainer(changed, data)
    trainer.load_state(states[0])
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert trainer.step()["lr"] == pytest.approx(1e-4)


def test_onecycle_cannot_resume_with_other_epochs(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    states: list[dict[str, Any]] = []
    run(cfg, data, ["train.epochs=1", "train.schedule=onecycle"], on_epoch=lambda r, s: states.append(s()))
    with pytest.raises(UserError, match="onecycle cannot resume"):
        run(cfg, data, ["train.epochs=3", "train.schedule=onecycle"], resume=states[0])


def test_resume_cannot_switch_to_or_from_onecycle(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    states: list[dict[str, Any]] = []
    run(cfg, data, ["train.epochs=1"], on_epoch=lambda r, s: states.append(s()))
    with pytest.raises(UserError, match="train.schedule=onecycle cannot resume"):
        run(cfg, data, ["train.epochs=2", "train.schedule=onecycle"], resume=states[0])
    assert len(run(cfg, data, ["train.epochs=2", "train.schedule=constant"], resume=states[0]).history) == 2


def test_unreadable_part_is_an_error(tmp_path: Path, tmp_cache: Path) -> None:
    root = make_corpus(tmp_path / "c", speakers=3, takes=1)
    for digit in range(3):
        (root / f"{digit}_zz_0.wav").write_text("junk")
    files = sorted(p.name for p in root.iterdir())
    junk = [f for f in files if "_zz_" in f]
    good = [f for f in files if f not in junk]
    (tmp_path / "split.json").write_text(json.dumps({"train": good[:20], "val": good[20:], "test": junk}))
    cfg = load_config(overrides=[f"data.root={root}", f"data.split={tmp_path / 'split.json'}"])
    with pytest.warns(UserWarning, match="skipped unreadable"), pytest.raises(DataError, match="none of the 3 test"):
        prepare(cfg)


def test_diverging_loss_raises(tones: tuple[Config, Prepared], monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, data = tones

    class NaNModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((len(x), 10), float("nan")) + self.w

    monkeypatch.setattr(train_mod, "model_from_config", lambda *a, **k: NaNModel())
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 1; lower train.lr") as info:
        run(cfg, data)
    assert isinstance(info.value, UserError)  # the CLI prints it as one line


def test_too_high_learning_rate_raises(tones: tuple[Config, Prepared]) -> None:
    cfg, data = tones
    with pytest.raises(FloatingPointError, match=r"lower train\.lr \(now 10\)"):
        run(
            cfg,
            data,
            [
                "train.lr=10",
                "train.optimizer=sgd",
                "train.schedule=constant",
                "train.epochs=30",
                "augment.enabled=false",
            ],
        )


def test_wide_lenet_trains_channels_last_on_cpu_and_matches_the_plain_layout(
    tones: tuple[Config, Prepared],
) -> None:
    """From 16 first-layer channels LeNet-5 runs channels-last on a CPU; the layout changes speed, not results."""
    cfg, data = tones
    assert not channels_last("lenet5", (6, 16), torch.device("cpu"))
    assert channels_last("lenet5", (16, 32), torch.device("cpu")) and channels_last(
        "resnet18", (6, 16), torch.device("cpu")
    )
    wide = with_values(cfg, {"model.channels": [16, 32], "train.epochs": 1, "augment.enabled": False})
    trainer = Trainer(wide, data)
    conv = next(p for p in trainer.model.parameters() if p.dim() == 4 and p.shape[1] > 1)  # conv2: 16 in
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    plain = Trainer(wide, data)
    plain.model = plain.model.to(memory_format=torch.contiguous_format)
    x = data.features.x[data.rows["val"][:16]]
    xb = torch.as_tensor(np.asarray(x, dtype=np.float32))
    trainer.model.eval(), plain.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(trainer.model(xb), plain.model(xb), rtol=1e-4, atol=1e-4)


def _thin_corpus(root: Path) -> Path:
    """The tones corpus without any 3 and with only two clips of 7 (one speaker's, wherever the split puts it)."""
    make_corpus(root)
    for path in [*root.glob("3_*.wav"), *sorted(root.glob("7_*.wav"))[2:]]:
        path.unlink()
    return root


def test_prepare_warns_once_about_digits_training_barely_has(tmp_path: Path, tmp_cache: Path) -> None:
    import warnings

    from tune_digits.corpus import thin_digits

    root = _thin_corpus(tmp_path / "thin")
    cfg = load_config(overrides=[f"data.root={root}", "data.split=speakers", "train.device=cpu"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # as the command line runs: each distinct warning once
        data = prepare(cfg)
        prepare(with_values(cfg, {"features.variant": "bilateral"}))  # final-eight prepares each variant
    lines = [str(w.message) for w in seen if "clips of digit" in str(w.message)]
    assert len(lines) == 1, lines
    thin = thin_digits(data.catalog, data.split)
    assert thin[3] == 0 and thin[7] <= 2 and set(thin) == {3, 7}
    assert "\n" not in lines[0]
    assert f"3 (0 clips), 7 ({thin[7]} clip" in lines[0] and "fewer than 5 clips of digits" in lines[0]


def test_prepare_does_not_warn_when_every_digit_has_clips(tones: tuple[Config, Prepared]) -> None:
    import warnings

    from tune_digits.corpus import thin_digits

    cfg, data = tones
    assert thin_digits(data.catalog, data.split) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(cfg)
        assert thin_digits(data.catalog, data.split, minimum=100) == {d: n for d, n in _train_counts(data).items()}


def test_prepare_warn_digits_off_for_trials(tmp_path: Path, tmp_cache: Path) -> None:
    import warnings

    root = _thin_corpus(tmp_path / "thin")
    cfg = load_config(overrides=[f"data.root={root}", "data.split=speakers", "train.device=cpu"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare(cfg, warn_digits=False)


def _train_counts(data: Prepared) -> dict[int, int]:
    digits = {data.catalog.rel(r): r.digit for r in data.catalog.recordings}
    counts = {d: 0 for d in range(10)}
    for rel in data.split.train:
        counts[digits[rel]] += 1
    return counts


def test_train_command_warns_in_one_line(tmp_path: Path, tmp_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import warnings

    from typer.testing import CliRunner

    from tune_digits.cli import app

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # as outside pytest: to stderr
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    root = _thin_corpus(tmp_path / "thin")
    args = ["train", "--data", str(root), "--epochs", "1", "--out", str(tmp_path / "run"), "--wandb", "disabled"]
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        monkeypatch.setattr(warnings, "showwarning", show)
        result = CliRunner().invoke(app, [*args, "--set", "train.threads=1", "--set", "train.device=cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "clips of digit" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: the training split of ")
    assert "3 (0 clips)" in lines[0] and lines[0].endswith("add recordings or choose another --split")
