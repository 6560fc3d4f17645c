"""``tune-digits report RUN_DIR``: rebuild the plots, tables and report.html of a run folder without retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tune_digits.cli.app import app, out, user_errors


@app.command("report")
@user_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A train run, a search or a final-eight folder.", metavar="RUN_DIR")],
) -> None:
    """Rebuild the plots, tables and a self-contained report.html of a train run, a search or a final-eight folder."""
    from tune_digits.report import write_report

    files = write_report(run_dir)
    out.print(f"report: {files[-1]}", highlight=False, soft_wrap=True)
    for path in files[:-1]:
        out.print(f"wrote {path}", highlight=False, soft_wrap=True)
