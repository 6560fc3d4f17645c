"""Command line: ``tune-digits``. Each command parses, loads config and calls one library function."""

from tune_digits.cli import data as _data  # noqa: F401
from tune_digits.cli import evaluate as _evaluate  # noqa: F401
from tune_digits.cli import matrix as _matrix  # noqa: F401
from tune_digits.cli import report as _report  # noqa: F401
from tune_digits.cli import search as _search  # noqa: F401  (registers commands)
from tune_digits.cli import submit as _submit  # noqa: F401
from tune_digits.cli import train as _train  # noqa: F401
from tune_digits.cli.app import app, main

__all__ = ["app", "main"]
