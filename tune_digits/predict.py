"""``tune-digits predict`` as one library call: check the output path, load the models, predict, write the CSV."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tune_digits.errors import UserError


@dataclass(frozen=True)
class PredictResult:
    models: list[Any]  # the loaded models (inference.LoadedModel), in --model order
    rows: list[Any]  # one inference.Prediction per readable recording, file names relative to the inputs
    csv: Path | None = None  # where they were written, when --out was given


def check_out_csv(out_csv: Path | None) -> None:
    """``--out`` must name a file in an existing folder (checked before any model is loaded)."""
    if out_csv is not None and (out_csv.is_dir() or not out_csv.parent.is_dir()):
        problem = "is a folder" if out_csv.is_dir() else f"cannot be written: no folder {out_csv.parent}"
        raise UserError(f"--out {out_csv} {problem}; pass a CSV file name in an existing folder")


def predict_inputs(
    inputs: list[Path],
    model_paths: list[Path],
    out_csv: Path | None,
    say: Callable[[str], None],
    min_confidence: float = 0.5,
) -> PredictResult:
    """Predict every recording under ``inputs`` with the mean of the models; warnings go to ``say``.

    A prediction below ``min_confidence`` (calibrated probability) is noted as low confidence in the CSV.
    """
    from tune_digits.inference import collect_audio, load_model, predict_files, relative_name, write_prediction_csv

    check_out_csv(out_csv)
    if not 0.0 <= min_confidence <= 1.0:
        raise UserError(f"--min-confidence {min_confidence}: must be in [0, 1], e.g. 0.5")
    models = [load_model(m) for m in model_paths]
    audio, other = collect_audio(list(inputs))
    if other:
        say(f"warning: {len(other)} non-audio files skipped (first: {relative_name(other[0], inputs)})")
    errors: list[str] = []
    preds = predict_files(models, audio, errors=errors)
    if errors:
        say(f"warning: {len(errors)} unreadable recordings skipped (first: {errors[0]})")
    if not preds:
        raise UserError("no readable recordings among the inputs; pass *.wav files or folders holding them")
    preds = [replace(p, file=relative_name(p.file, inputs)) for p in preds]
    if out_csv is not None:
        try:
            write_prediction_csv(out_csv, preds, min_confidence)
        except OSError as exc:
            raise UserError(f"--out {out_csv} cannot be written ({exc.strerror or exc})") from None
    return PredictResult(models, preds, out_csv)
