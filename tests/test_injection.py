"""Nothing a data file says runs: report.html escapes every field, CSV cells never start a spreadsheet formula."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from tune_digits import report
from tune_digits.checkpoint import save_checkpoint
from tune_digits.cli import app
from tune_digits.config import load_config, to_flat
from tune_digits.features import spectrogram_shape
from tune_digits.inference import (
    Prediction,
    build_model,
    write_prediction_csv,
    write_submission,
)
from tune_digits.run_folder import Predictions, write_predictions
from tune_digits.safe_csv import csv_safe_cell
from tune_digits.scoring import SplitEvaluation

SCRIPT = "<script>document.title='pwned'</script>"
FORMULAS = ["=1+2", "+SUM(A1)", "-2+3+cmd|' /C calc'!A0", "@SUM(1)", "\t=1", "\r=1"]
TINY = ["model.channels=[4,8]", "model.fc=[32,16]", "train.threads=2", "train.device=cpu"]


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def write_summary(folder: Path, hostile: str) -> None:
    rows = []
    for model in "AB":
        for variant in ("raw", "bilateral"):
            for aug in (False, True):
                for seed in (hostile, "1"):
                    f1 = 0.8 + 0.01 * aug
                    rows.append(
                        {"model": model, "model_name": hostile, "variant": variant, "augment": aug, "seed": seed}
                        | {"val_f1": f1, "test_f1": f1, "run_dir": f"runs/{hostile}"}
                    )
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)


# ---------------------------------------------------------------- report.html


def test_final_eight_report_escapes_the_seed_and_every_other_field(tmp_path: Path) -> None:
    write_summary(tmp_path / "eight", SCRIPT)
    page = report.write_report(tmp_path / "eight")[-1].read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "(&lt;script&gt;" in page  # the seeds sentence, the field that ran before


def test_search_report_escapes_trial_ids_and_errors(tmp_path: Path) -> None:
    folder = tmp_path / "search"
    folder.mkdir()
    df = pd.DataFrame(
        {
            "trial_id": [SCRIPT, "b"],
            "status": ["ERROR", f"TERMINATED{SCRIPT}"],
            "val_f1": [np.nan, 0.8],
            "error": [SCRIPT, ""],
            "train.lr": [1e-3, 1e-2],
            f"model.{SCRIPT}": ["x", SCRIPT],
        }
    )
    df.to_csv(folder / "results.csv", index=False)
    page = report.write_report(folder)[-1].read_text(encoding="utf-8")
    assert "<script" not in page and "&lt;script&gt;" in page


def test_page_refuses_blocks_that_did_not_pass_the_escaping_helpers() -> None:
    with pytest.raises(TypeError):
        report._page("t", {}, [SCRIPT], [])  # type: ignore[list-item]


# ---------------------------------------------------------------- CSV cells


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_text_is_quoted(text: str) -> None:
    assert csv_safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", [-0.5, "-0.5", "+1e-3", 3, "-7", "clip.wav", "a=b", "", True, None])
def test_numbers_and_plain_text_are_kept(value: object) -> None:
    assert csv_safe_cell(value) == value


def test_a_number_with_a_leading_tab_is_still_quoted() -> None:
    assert csv_safe_cell("\t1") == "'\t1"


def test_submission_and_prediction_csvs_quote_formula_names(tmp_path: Path) -> None:
    write_submission(tmp_path / "submission.csv", [(f, 3) for f in FORMULAS] + [("ok.wav", 4)])
    ids = [row[0] for row in read_rows(tmp_path / "submission.csv")[1:]]
    assert ids[:4] == ["'" + f for f in FORMULAS[:4]]
    assert ids[4:6] == ["\\t=1", "\\r=1"]  # csv_name already spells a tab or CR as two characters
    assert ids[-1] == "ok.wav"
    preds = [Prediction(str(tmp_path / "=1+2.wav"), 1, 0.5)]
    write_prediction_csv(tmp_path / "out.csv", preds)
    assert read_rows(tmp_path / "out.csv")[1] == ["'=1+2.wav", "1", "0.500000", ""]  # file, digit, probability, note


def test_predictions_csv_of_submit_and_of_train_quote_formula_names(tmp_path: Path) -> None:
    test = {"predictions": [2, 3], "probabilities": [0.9, 0.8]}
    ev = SplitEvaluation({}, test, ["@evil.wav", "-x.wav"], [2, 3], tmp_path, torch.zeros(0), "cpu")
    write_predictions(tmp_path / "predictions.csv", ev.predictions())
    assert [r[0] for r in read_rows(tmp_path / "predictions.csv")[1:]] == ["'@evil.wav", "'-x.wav"]
    features = SimpleNamespace(files=["=a.wav", "b.wav"], labels=np.array([1, 2]))
    data = SimpleNamespace(features=features, rows={"test": np.array([1, 0])})
    result = SimpleNamespace(test=test)
    write_predictions(tmp_path / "train.csv", Predictions.from_fit(data, result))  # type: ignore[arg-type]
    assert read_rows(tmp_path / "train.csv")[1:] == [["'=a.wav", "1", "2", "0.900000"], ["b.wav", "2", "3", "0.800000"]]


def fake_model(path: Path) -> Path:
    """An untrained LeNet-5 model.pt: loads and predicts like a real one, in milliseconds."""
    cfg = load_config(None, TINY)
    shape = spectrogram_shape(cfg.audio, cfg.features)
    model = build_model(cfg, shape)
    save_checkpoint(path, model.state_dict(), to_flat(cfg), {"input_shape": list(shape), "norm": [0.0, 1.0]})
    return path


def test_predict_out_quotes_formula_file_names(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    t = np.arange(8000) / 8000
    sf.write(clips / "=HYPERLINK(1).wav", 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
    model = fake_model(tmp_path / "model.pt")
    clip = clips / "=HYPERLINK(1).wav"
    result = CliRunner().invoke(app, ["predict", "--model", str(model), str(clip), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert read_rows(tmp_path / "p.csv")[1][0] == "'=HYPERLINK(1).wav"
