"""A saved model scored again on the validation and test parts of its run's split (submit and its advice)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tune_digits.errors import UserError
from tune_digits.inference import LoadedModel
from tune_digits.run_folder import Predictions, split_digest


@dataclass
class SplitEvaluation:
    """A model scored on the validation and test parts of a saved split."""

    val: dict[str, Any]  # train.evaluate output: f1, accuracy, loss, per_class_f1, confusion_matrix, predictions
    test: dict[str, Any]
    test_files: list[str]  # relative to data_root, in the order of test["predictions"]
    test_labels: list[int]
    data_root: Path
    samples: torch.Tensor  # up to 4 test images (dB), e.g. to check an ONNX export
    device: str  # where it was scored: cpu or cuda
    val_files: list[str] = field(default_factory=list)  # in the order of val["predictions"]
    val_labels: list[int] = field(default_factory=list)

    def predictions(self, part: str = "test") -> Predictions:
        """The test (or val) split's predictions, as a run folder's ``predictions.csv`` holds them."""
        if part == "val":
            return Predictions(self.val_files, self.val_labels, self.val["predictions"], self.val["probabilities"])
        return Predictions(self.test_files, self.test_labels, self.test["predictions"], self.test["probabilities"])


def _split_features(loaded: LoadedModel, data_root: str | Path, split_file: str | Path, digest: str | None) -> Any:
    """``(features, split)`` of ``data_root`` for ``loaded``'s settings, the split checked against ``digest``."""
    from tune_digits.corpus import load_split, scan
    from tune_digits.data import build_features

    root = Path(data_root)
    if not root.is_dir():
        raise UserError(f"data folder {root} not found; pass --data with the corpus the run was trained on")
    catalog = scan(root)
    split = load_split(catalog, Path(split_file))
    if digest and split_digest(split) != digest:
        raise UserError(f"{split_file} does not match its run.json (split_digest {digest}); the run was changed")
    cfg = loaded.cfg
    fs = build_features(catalog, cfg.audio, cfg.features, cfg.bilateral, progress=False)
    if tuple(fs.shape) != tuple(loaded.input_shape):
        raise UserError(f"features of {root} have shape {fs.shape}, the model expects {loaded.input_shape}")
    return fs, split


def _score_part(loaded: LoadedModel, fs: Any, names: Any, part: str, where: tuple[Any, Any]) -> dict[str, Any]:
    """``train.evaluate`` of ``loaded`` on the rows of ``names``; ``where`` = (split file, data root) for errors."""
    from tune_digits.data import to_device
    from tune_digits.train import evaluate

    found = fs.rows(names)
    if not len(found):
        raise UserError(f"none of the {part} recordings of {where[0]} can be read from {where[1]}")
    x, y = to_device(fs, found, next(loaded.model.parameters()).device)
    return evaluate(loaded.model, x, y, loaded.cfg.features.normalize, loaded.norm, loaded.temperature)


def evaluate_split(
    loaded: LoadedModel, data_root: str | Path, split_file: str | Path, digest: str | None = None
) -> SplitEvaluation:
    """Re-scan ``data_root``, load ``split_file`` and score ``loaded`` on its val and test parts.

    ``digest`` (a run.json ``split_digest``), when given, must match the split file.
    """
    fs, split = _split_features(loaded, data_root, split_file, digest)
    scores = {
        part: _score_part(loaded, fs, getattr(split, part), part, (split_file, data_root)) for part in ("val", "test")
    }
    rows = np.sort(fs.rows(split.test))
    samples = torch.from_numpy(np.asarray(fs.x[rows[:4]], dtype=np.float32))
    files, labels = [fs.files[r] for r in rows], fs.labels[rows].tolist()
    val_rows = np.sort(fs.rows(split.val))
    val_files, val_labels = [fs.files[r] for r in val_rows], fs.labels[val_rows].tolist()
    device = next(loaded.model.parameters()).device
    return SplitEvaluation(
        scores["val"], scores["test"], files, labels, Path(data_root), samples, device.type, val_files, val_labels
    )


def evaluate_val(
    loaded: LoadedModel, data_root: str | Path, split_file: str | Path, digest: str | None = None
) -> Predictions:
    """``loaded`` scored on the validation part only (no test recording is read): the advice before a submit."""
    fs, split = _split_features(loaded, data_root, split_file, digest)
    scores = _score_part(loaded, fs, split.val, "val", (split_file, data_root))
    rows = np.sort(fs.rows(split.val))
    return Predictions(
        [fs.files[r] for r in rows], fs.labels[rows].tolist(), scores["predictions"], scores["probabilities"]
    )
