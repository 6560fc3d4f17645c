"""The typer app, the one-line error handling and the options several commands share."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tune_digits.errors import UserError


def _flag_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """typer 0.2x shows every option's Python type in --help, ``<bool>`` for flags too: a flag takes no value."""
    return None if self.is_flag else _option_type_rich(self, ctx)


_option_type_rich = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type_rich  # type: ignore[method-assign]

app = typer.Typer(
    help="Tune, compare and submit spectrogram CNNs that classify spoken digits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Download corpora and build feature caches.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out = Console()
F = TypeVar("F", bound=Callable[..., Any])
MAX_MESSAGE = 500


def _format_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"warning: {message}\n"


def short(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` cut to ``limit`` characters (saying how much was left out): an error line stays one line."""
    if len(message) <= limit:
        return message
    return f"{message[:limit]}... ({len(message) - limit} more characters)"


def user_errors(fn: F) -> F:
    """Print a UserError as one line and exit with code 2; Ctrl-C exits 130 without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.formatwarning = _format_warning  # type: ignore[assignment]
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            console.print(f"[bold red]error:[/] {escape(short(str(exc)))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("interrupted", highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def overrides_from_flags(**flags: Any) -> list[str]:
    """``--epochs 3`` style flags as ``train.epochs=3`` overrides; unset flags are skipped."""
    keys = {
        "model": "model.name",
        "data": "data.root",
        "variant": "features.variant",
        "augment": "augment.enabled",
        "split": "data.split",
        "epochs": "train.epochs",
        "seed": "train.seed",
        "strict": "data.strict",
    }
    items = []
    for flag, value in flags.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        elif isinstance(value, Path):
            value = str(value.expanduser().resolve())
        items.append(f"{keys[flag]}={value}")
    return items


def announce_data(root: str) -> None:
    if not root:
        console.print("data: the bundled demo corpus (espeak-ng voices); pass --data DIR for AudioMNIST or FSDD")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except UserError as exc:  # raised outside a command, e.g. while parsing
        print(f"error: {short(str(exc))}", file=sys.stderr)
        sys.exit(2)
