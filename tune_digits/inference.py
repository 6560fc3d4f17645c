"""Predict digits with a saved model: a run's or a submission's ``model.pt`` and nothing else.

A ``model.pt`` holds the weights, the flat resolved config and the metrics (input shape and the
training-set normalisation), so :func:`load_model` rebuilds the model without the run folder,
the corpus or the feature cache. :func:`featurize` turns recordings into the same float16
log-mel images the feature cache holds (for the bilateral variant the filter runs on the
float16-rounded raw image, as the cache derives it), and :func:`predict_files` normalises
them as in training and returns a digit and its probability per file; given several models it
averages their probabilities (:func:`ensemble_proba`, each model fed as its own config says).

:func:`export_onnx` writes the model, with its normalisation and softmax, as ONNX
(input ``features`` (B, 1, F, T) float32 dB, output ``probabilities`` (B, 10)) and checks
it against PyTorch with onnxruntime.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_digits import vad
from tune_digits.audio import AudioReadError, load_clip
from tune_digits.calibration import apply_temperature
from tune_digits.checkpoint import load_checkpoint
from tune_digits.config import Config, from_saved
from tune_digits.errors import UserError
from tune_digits.features import bilateral, features_from_waves, normalize_batch, spectrogram_shape
from tune_digits.models import model_from_config
from tune_digits.run_folder import model_file, write_csv
from tune_digits.safe_csv import csv_name
from tune_digits.train import predict_proba

AUDIO_SUFFIXES = (".wav",)
ONNX_TOLERANCE = 1e-4


@dataclass
class LoadedModel:
    """A model in eval mode with everything needed to feed it."""

    model: nn.Module
    cfg: Config
    norm: tuple[float, float]  # training-set mean and std (used when features.normalize=corpus)
    input_shape: tuple[int, int, int]  # (1, F, T)
    metrics: dict[str, Any]
    path: Path  # the model.pt it came from

    @property
    def temperature(self) -> float:
        """The logits' divisor fitted on validation (1 for runs saved before calibration)."""
        return float(self.metrics.get("temperature") or 1.0)


@dataclass(frozen=True)
class Prediction:
    file: str
    digit: int
    probability: float
    heard: bool = True  # False: no word found (near silence or noise only), see tune_digits/vad.py


def build_model(cfg: Config, input_shape: tuple[int, int, int]) -> nn.Module:
    """The untrained model ``cfg.model`` describes, for inputs (B, *input_shape)."""
    return model_from_config(cfg.model, input_shape, pretrained=False)  # the weights come from the checkpoint


def load_model(path: str | Path, device: str = "cpu") -> LoadedModel:
    """Load ``path`` (a model.pt, or a folder holding one) into a model in eval mode on ``device``."""
    path = Path(path)
    try:
        folder = path.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UserError(f"checkpoint {path} cannot be opened ({exc.strerror or exc})") from None
    path = model_file(path) if folder else path
    payload = load_checkpoint(path)
    cfg = from_saved(dict(payload.get("config") or {}))
    metrics = dict(payload.get("metrics") or {})
    shape = tuple(metrics.get("input_shape") or spectrogram_shape(cfg.audio, cfg.features))
    norm_values = metrics.get("norm") or (0.0, 1.0)
    model = build_model(cfg, shape)  # type: ignore[arg-type]
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"checkpoint {path} does not match its own config ({first})") from None
    model.to(device).eval()
    norm = (float(norm_values[0]), float(norm_values[1]))
    return LoadedModel(model, cfg, norm, shape, metrics, path)  # type: ignore[arg-type]


def collect_audio(inputs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Expand files and folders into ``(audio files, other files)``.

    Folders are searched recursively and only their ``*.wav`` files count as audio (hidden
    files are ignored); a file named directly is always tried. A file found twice is listed once, where it is
    first found. A missing input is a UserError.
    """
    audio: list[Path] = []
    other: list[Path] = []
    seen: set[Path] = set()
    for item in map(Path, inputs):
        if item.is_file():
            found = [item]
        elif item.is_dir():
            found = [p for p in sorted(item.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        else:
            raise UserError(f"{item}: no such file or folder")
        for p in found:  # a file named directly and again inside a named folder counts once, where first seen
            if p.resolve() not in seen:
                seen.add(p.resolve())
                (audio if p is item or p.suffix.lower() in AUDIO_SUFFIXES else other).append(p)
    return audio, other


def relative_name(path: str | Path, inputs: Sequence[str | Path] = (), cwd: str | Path | None = None) -> str:
    """How a recording is named in tables and CSV files: never absolute, never with ``..``.

    Relative to the working folder when the file is inside it; otherwise relative to the folder
    holding the input (a file or a folder from ``inputs``) it was found under; otherwise its name.
    """
    where = Path(os.path.abspath(path))
    here = Path(os.path.abspath(cwd if cwd is not None else Path.cwd()))
    if where != here and where.is_relative_to(here):
        return csv_name(where.relative_to(here).as_posix())
    for item in inputs:
        base = Path(os.path.abspath(item))
        if where == base or where.is_relative_to(base):
            return csv_name(where.relative_to(base.parent).as_posix())
    return csv_name(where.name)


def featurize(
    paths: list[str | Path], cfg: Config, words: list[Any] | None = None
) -> tuple[torch.Tensor, list[Path], list[str]]:
    """Log-mel images of ``paths`` as ``cfg`` makes them: ``(x, ok_paths, errors)``.

    ``x`` is (N, 1, F, T) float32 holding float16-rounded dB values, one row per path in
    ``ok_paths``; a recording that cannot be decoded goes to ``errors`` (one line each). ``words``,
    when given, receives the word found in each readable recording (:class:`tune_digits.vad.Word` or None).
    """
    waves, ok, errors = [], [], []
    for p in map(Path, paths):
        try:
            wave, word = load_clip(p, cfg.audio.sample_rate, cfg.audio.num_samples, cfg.audio.trim)
            waves.append(wave)
            if words is not None:
                words.append(word)
            ok.append(p)
        except AudioReadError as exc:
            errors.append(str(exc))
    _, n_mels, n_frames = spectrogram_shape(cfg.audio, cfg.features)
    if not waves:
        return torch.zeros((0, 1, n_mels, n_frames)), ok, errors
    raw_cfg = replace(cfg.features, variant="raw")
    spec = features_from_waves(np.stack(waves), cfg.audio.sample_rate, raw_cfg, cfg.bilateral)  # (N, F, T) float16
    if cfg.features.variant == "bilateral":
        spec = bilateral(spec.astype(np.float32), cfg.bilateral).astype(np.float16)
    return torch.from_numpy(spec.astype(np.float32))[:, None], ok, errors


def ensemble_proba(
    models: Sequence[LoadedModel], paths: list[str | Path], words: list[Any] | None = None
) -> tuple[torch.Tensor, list[Path], list[str]]:
    """The mean of the models' class probabilities for ``paths``: ``(proba (N, 10), ok_paths, errors)``.

    Each model sees the recordings as its own config featurises them (LeNet-5 on 40 x 63 and a
    timm model on 64 x 126 images can be averaged); recordings that share a config are decoded once.
    ``words`` receives the word found in each readable recording, as the first model's config reads it.
    """
    if not models:
        raise ValueError("ensemble_proba needs at least one model")
    cached: dict[str, tuple[torch.Tensor, list[Path], list[str]]] = {}
    total: torch.Tensor | None = None
    first_ok: list[Path] | None = None
    for loaded in models:
        cfg = loaded.cfg
        key = repr((cfg.audio, cfg.features, cfg.bilateral if cfg.features.variant == "bilateral" else None))
        if key not in cached:
            first = words is not None and not cached
            cached[key] = featurize(paths, cfg, words) if first else featurize(paths, cfg)
        x, ok, errors = cached[key]
        first_ok = ok if first_ok is None else first_ok
        if ok != first_ok:
            raise UserError(
                f"{loaded.path} cannot read the same recordings as {models[0].path}; predict with each alone"
            )
        if len(x) and tuple(x.shape[1:]) != tuple(loaded.input_shape):
            raise UserError(f"features of shape {tuple(x.shape[1:])} do not fit {loaded.path}'s {loaded.input_shape}")
        proba = predict_proba(loaded.model, x, cfg.features.normalize, loaded.norm).cpu()
        proba = apply_temperature(proba, loaded.temperature)  # fitted on validation
        broken = (~torch.isfinite(proba).all(dim=1)).nonzero().flatten().tolist()
        if broken:
            raise UserError(
                f"{loaded.path} gives NaN or infinite probabilities for {len(broken)} recordings "
                f"(first: {ok[broken[0]]}); the model file is damaged or was trained on broken features"
            )
        total = proba if total is None else total + proba
    assert total is not None
    return total / len(models), ok, errors


def predict_files(
    loaded: LoadedModel | Sequence[LoadedModel], paths: list[str | Path], *, errors: list[str] | None = None
) -> list[Prediction]:
    """One :class:`Prediction` per readable file, in order; several models predict together (mean probability).

    Unreadable files are left out and their one-line reasons appended to ``errors``
    (a warning each when ``errors`` is None).
    """
    models = [loaded] if isinstance(loaded, LoadedModel) else list(loaded)
    words: list[Any] = []
    proba, ok, bad = ensemble_proba(models, paths, words)
    if errors is not None:
        errors.extend(bad)
    else:
        for line in bad:
            warnings.warn(f"skipped unreadable recording {line}", stacklevel=2)
    best = proba.max(dim=1)
    window_s = models[0].cfg.audio.duration
    heard = [vad.heard(w, window_s) for w in words] if len(words) == len(ok) else [True] * len(ok)
    rows = zip(ok, best.indices, best.values, heard, strict=True)
    return [Prediction(str(p), int(d), float(q), h) for p, d, q, h in rows]


class _Probabilities(nn.Module):
    """dB images -> normalisation -> model -> softmax: what ONNX users call."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.model = loaded.model
        self.mode, self.norm = loaded.cfg.features.normalize, loaded.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(normalize_batch(x, self.mode, *self.norm)).softmax(dim=1)


def _onnx_modules() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"--onnx needs the onnx packages ({exc.name} is missing): pip install 'tune-digits[onnx]'"
        ) from None
    return onnxruntime


def check_onnx_available() -> None:
    """Raise a UserError when onnx, onnxscript or onnxruntime cannot be imported."""
    _onnx_modules()


def _export(wrapper: nn.Module, shape: tuple[int, int, int], path: Path) -> None:
    example = torch.randn(2, *shape) * 10 - 40
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecation chatter
        try:
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=["features"],
                output_names=["probabilities"],
                dynamic_shapes=({0: batch},),
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many types; the message names it
            first = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(f"ONNX export failed ({type(exc).__name__}: {first})") from None


def export_onnx(loaded: LoadedModel, path: Path, samples: torch.Tensor | None = None) -> float:
    """Write ``path`` (one self-contained file) and return the largest |ONNX - PyTorch| probability gap.

    The check runs on up to 4 rows of ``samples`` (dB images) and on random images of batch
    sizes 1 and 3; a gap above :data:`ONNX_TOLERANCE` is a UserError.
    """
    ort = _onnx_modules()
    wrapper = _Probabilities(loaded).cpu().eval()
    shape = loaded.input_shape
    _export(wrapper, shape, path)
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    checks = [torch.randn(1, *shape, generator=gen) * 10 - 40, torch.randn(3, *shape, generator=gen) * 10 - 40]
    if samples is not None and len(samples):
        checks.append(samples[:4].float())
    gap = 0.0
    with torch.no_grad():
        for x in checks:
            got = runtime.run(None, {"features": x.numpy()})[0]
            gap = max(gap, float(np.abs(got - wrapper(x).numpy()).max()))
    if gap > ONNX_TOLERANCE:
        raise UserError(f"ONNX outputs differ from PyTorch by {gap:.2e} (> {ONNX_TOLERANCE:g}); not exported")
    return gap


def predict_folder(loaded: LoadedModel, folder: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """``(id, digit)`` for every readable *.wav under ``folder`` (id: the path relative to it) and warnings."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"test folder {folder} does not exist")
    audio, other = collect_audio([folder])
    notes = []
    if other:
        rel = other[0].relative_to(folder).as_posix()
        notes.append(f"warning: {len(other)} non-audio files in {folder} skipped (first: {rel})")
    errors: list[str] = []
    preds = predict_files(loaded, audio, errors=errors)
    if errors:
        notes.append(f"warning: {len(errors)} unreadable recordings in {folder} skipped (first: {errors[0]})")
    if not preds:
        raise UserError(f"no readable *.wav recordings under {folder}")
    return [(csv_name(Path(p.file).relative_to(folder).as_posix()), p.digit) for p in preds], notes


def write_submission(path: Path, rows: list[tuple[str, int]]) -> None:
    """The contest's CSV: ``id,label`` (ids relative to the test folder, see :func:`csv_name`)."""
    write_csv(path, ["id", "label"], ([csv_name(i), label] for i, label in rows))


def prediction_note(pred: Prediction, min_confidence: float = 0.0) -> str:
    """``no digit heard`` (no word found), ``low confidence`` (probability under ``min_confidence``) or ""."""
    if not pred.heard:
        return "no digit heard"
    return "low confidence" if pred.probability < min_confidence else ""


def write_prediction_csv(path: Path, preds: list[Prediction], min_confidence: float = 0.0) -> None:
    """``file,digit,probability,note`` per prediction (digit empty when none is heard); names relative."""
    cells = (
        [relative_name(p.file), p.digit if p.heard else "", f"{p.probability:.6f}", prediction_note(p, min_confidence)]
        for p in preds
    )
    write_csv(path, ["file", "digit", "probability", "note"], cells)
