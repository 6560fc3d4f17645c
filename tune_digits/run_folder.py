"""The run folder: the one module that writes it (:func:`write_run`) and reads it (:func:`read_run`).

A run folder, as ``train``, a search trial, a final-eight training and ``submit`` see it::

    RUN/
        config.yaml      the fully resolved config
        metrics.json     val_f1, val_loss, num_parameters, ... (a trained run adds test_f1, per_class_f1, ...)
        model.pt         best-validation weights + flat config + metrics (torch.load(weights_only=True))
        run.json         what made the run: kind, created, data_root, split_spec, split_digest, ...
        history.jsonl / history.csv   one row per epoch
        split.json       the resolved split (a search keeps one for all its trials: SEARCH/split.json)
        predictions.csv  test files: file, label, predicted, probability (runs that were tested)
        val_predictions.csv  the same for the validation files (what submit's bootstrap advice reads)
        labels.json      final-eight only: the arm and grid values of the training

``model.pt``, ``metrics.json``, ``run.json`` and ``config.yaml`` make a folder a run. Its split is
its own ``split.json``, else its config's ``data.split`` file, else the nearest ``split.json`` above
it (a search trial's). Folders written before this module existed read the same way.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tune_digits.atomic import write_bytes
from tune_digits.checkpoint import save_checkpoint
from tune_digits.config import Config, save_config, to_flat
from tune_digits.corpus import Split, save_split
from tune_digits.errors import UserError
from tune_digits.safe_csv import csv_name, csv_text

if TYPE_CHECKING:
    import torch

    from tune_digits.train import FitResult, Prepared

MODEL = "model.pt"
METRICS = "metrics.json"
RUN_JSON = "run.json"
CONFIG = "config.yaml"
SPLIT = "split.json"
HISTORY_CSV = "history.csv"
HISTORY_JSONL = "history.jsonl"
PREDICTIONS = "predictions.csv"
VAL_PREDICTIONS = "val_predictions.csv"
LABELS = "labels.json"
REQUIRED = (MODEL, METRICS, RUN_JSON, CONFIG)
PREDICTION_COLUMNS = ["file", "label", "predicted", "probability"]


class NotARun(UserError):
    """A folder that is not a (complete, readable) run folder; the message says why."""


def split_digest(split: Split) -> str:
    """Identifies a split by its file lists (not its name): equal digests, equal test speakers."""
    return hashlib.sha256(json.dumps([split.train, split.val, split.test]).encode()).hexdigest()[:16]


def read_split_file(path: Path) -> Split:
    """The split a ``split.json`` holds, as written (no corpus needed; ``corpus.load_split`` checks files)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return Split(str(data.get("spec", path)), *(tuple(data[k]) for k in ("train", "val", "test")))


@dataclass(frozen=True)
class Predictions:
    """Test predictions, one entry per recording (files relative to the data folder)."""

    files: Sequence[str]
    labels: Sequence[int]
    predicted: Sequence[int]
    probabilities: Sequence[float]

    @classmethod
    def from_fit(cls, data: Prepared, result: FitResult, part: str = "test") -> Predictions:
        """The test (or val) split in row order (rows are sorted, as ``fit`` evaluates them)."""
        fs, rows = data.features, sorted(data.rows[part].tolist())
        return cls([fs.files[r] for r in rows], [int(fs.labels[r]) for r in rows], *_scores(getattr(result, part)))


def _scores(test: Mapping[str, Any]) -> tuple[list[int], list[float]]:
    return list(test["predictions"]), list(test["probabilities"])


def check_out_dir(out: Path) -> None:
    """Refuse a non-empty ``out`` or one below a file; creates nothing."""
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"cannot create the run folder {out}: {blocking} is a file; choose another --out")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output folder {out} already exists and is not empty; choose another --out or remove it")


def write_csv(path: Path, header: list[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV atomically, every text cell made safe for spreadsheets (see :mod:`tune_digits.safe_csv`)."""
    write_bytes(Path(path), csv_text(header, rows).encode("utf-8"))


def write_predictions(path: Path, preds: Predictions) -> None:
    """``predictions.csv``: file, label, predicted, probability (a run's and a submission's)."""
    rows = zip(preds.files, preds.labels, preds.predicted, preds.probabilities, strict=True)
    write_csv(path, PREDICTION_COLUMNS, ([csv_name(f), int(y), int(p), f"{q:.6f}"] for f, y, p, q in rows))


def write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def read_history(folder: Path) -> list[dict[str, Any]]:
    """``history.jsonl`` of ``folder``, one dict per epoch (none when it is missing)."""
    path = Path(folder) / HISTORY_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_run(
    folder: Path,
    cfg: Config,
    metrics: dict[str, Any],
    *,
    kind: str,
    split: Split,
    model: Mapping[str, torch.Tensor] | Path,
    data_root: str | Path,
    history: list[dict[str, Any]] | None = None,
    predictions: Predictions | None = None,
    val_predictions: Predictions | None = None,
    own_split: bool = True,
    labels: dict[str, Any] | None = None,
    **meta: Any,
) -> None:
    """Write a run into ``folder`` (created when missing); ``run.json`` last, so a run is complete or no run.

    ``model`` is the best weights (saved with ``cfg`` and ``metrics``) or a ``model.pt`` to copy as it is.
    ``own_split=False`` leaves ``split.json`` to a folder above (a search's trials share one).
    ``meta`` goes into ``run.json`` after kind, created, data_root, split_spec and split_digest.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / CONFIG)
    if own_split:
        save_split(split, folder / SPLIT)
    (folder / METRICS).write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    if isinstance(model, Path):
        write_bytes(folder / MODEL, model.read_bytes())
    else:
        save_checkpoint(folder / MODEL, dict(model), to_flat(cfg), metrics)
    write_history_csv(folder / HISTORY_CSV, history or [])
    if predictions is not None:
        write_predictions(folder / PREDICTIONS, predictions)
    if val_predictions is not None:
        write_predictions(folder / VAL_PREDICTIONS, val_predictions)
    if labels is not None:
        (folder / LABELS).write_text(json.dumps(labels), encoding="utf-8")
    info = {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_root": str(data_root),
        "split_spec": split.spec,
        "split_digest": split_digest(split),
        **meta,
    }
    (folder / RUN_JSON).write_text(json.dumps(info, indent=1), encoding="utf-8")


def write_fit_run(
    folder: Path, cfg: Config, data: Prepared, result: FitResult, kind: str = "train", **extra: Any
) -> None:
    """The run folder of a finished ``fit``: weights, test predictions, history, its own split."""
    write_run(
        folder,
        cfg,
        result.metrics(),
        kind=kind,
        split=data.split,
        model=result.state_dict,
        data_root=data.catalog.root,
        history=result.history,
        predictions=Predictions.from_fit(data, result),
        val_predictions=Predictions.from_fit(data, result, "val"),
        feature_cache=data.features.key,
        skipped_recordings=data.features.skipped,
        **extra,
    )


@dataclass(frozen=True)
class Run:
    """A run folder as read back; ``config`` is config.yaml's mapping as written (old keys and all)."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]  # run.json
    split_file: Path | None  # see the module docstring
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def split_digest(self) -> str:
        return str(self.meta.get("split_digest") or "")

    @property
    def predictions_path(self) -> Path | None:
        path = self.path / PREDICTIONS
        return path if path.is_file() else None

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", ""))

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))

    def history(self) -> list[dict[str, Any]]:
        return read_history(self.path)

    def load_config(self) -> Config:
        """config.yaml as a Config; a removed experiment's setting is dropped, as for a saved model."""
        from tune_digits.config import flatten, from_saved

        if not self.config:
            raise NotARun(f"{self.path / CONFIG} holds no config mapping")
        return from_saved(flatten(self.config))


def model_file(path: Path) -> Path:
    """``path`` itself, or the ``model.pt`` of the run folder ``path`` names."""
    return path / MODEL if path.is_dir() else path


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def read_run(folder: str | Path, root: str | Path | None = None) -> Run:
    """Read the run in ``folder``; its split file is looked for up to ``root`` (default: the folder itself).

    Raises :class:`NotARun` (one line: the files missing, or the one that cannot be read).
    """
    folder = Path(folder)
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    if missing:
        raise NotARun(f"no {', '.join(missing)}")
    try:
        metrics, meta = _read_json(folder / METRICS), _read_json(folder / RUN_JSON)
    except (OSError, ValueError) as exc:
        raise NotARun(f"unreadable metrics.json or run.json ({exc})") from None
    config = _read_config(folder / CONFIG)
    try:
        labels = _read_json(folder / LABELS) if (folder / LABELS).is_file() else {}
    except (OSError, ValueError):
        labels = {}
    split_file = _find_split_file(folder, config, Path(root) if root is not None else folder)
    return Run(folder, config, metrics, meta, split_file, labels)


def _read_config(path: Path) -> dict[str, Any]:
    from tune_digits.config import read_yaml

    try:
        data = read_yaml(path)
    except UserError:
        return {}
    return data if isinstance(data, dict) else {}


def _find_split_file(folder: Path, config: dict[str, Any], root: Path) -> Path | None:
    if (folder / SPLIT).is_file():
        return folder / SPLIT
    section = config.get("data")
    spec = str(section.get("split", "")) if isinstance(section, dict) else ""
    if spec.endswith(".json"):
        for path in (Path(spec).expanduser(), folder / spec):
            if path.is_file():
                return path
    for parent in folder.resolve().parents:
        if not parent.is_relative_to(root.resolve()):
            break
        if (parent / SPLIT).is_file():
            return parent / SPLIT
    return None


def finished_epoch(folder: Path) -> dict[str, Any] | None:
    """The last ``history.jsonl`` record of a complete run folder (``run.json`` is written last), else None."""
    history = read_history(folder) if (folder / RUN_JSON).is_file() else []
    return history[-1] if history else None
