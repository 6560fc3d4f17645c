"""``tune-digits data verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from tune_digits.cli.app import data_app, out, user_errors


@data_app.command("verify")
@user_errors
def verify_cmd(
    folder: Annotated[Path, typer.Argument(help="An AudioMNIST copy: the folder holding data/NN/ (or data/ itself).")],
    subset: Annotated[
        bool, typer.Option("--subset", help="Check only the files present; missing ones are counted, not errors.")
    ] = False,
    checksums: Annotated[
        Optional[Path], typer.Option("--checksums", help="A path/sha256/bytes TSV (default: the shipped list).")
    ] = None,
) -> None:
    """Check every recording against the AudioMNIST checksums: missing, extra and changed files; exit 1 on any."""
    from tune_digits.verify import data_folder, load_manifest, verify_tree

    manifest = load_manifest(checksums)
    report = verify_tree(data_folder(folder), manifest, subset=subset, progress=True)
    out.print(escape(report.summary()), highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)
