"""What every report shares: atomic writes, matplotlib set-up, escaped HTML blocks and the page itself."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tune_digits.atomic import write_bytes
from tune_digits.errors import UserError

DPI = 110
CSS = (  # one column that fits a 1,400 px window; a wide table scrolls inside its own box, not the page
    "body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}"
    ".table{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}td{max-width:40em;overflow-wrap:break-word}"
    "th{background:#f2f2f2}img{max-width:100%;height:auto}figure{margin:1em 0}figcaption{color:#666;font-size:90%}"
)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    _plt().close(fig)
    return write_bytes(path, buf.getvalue())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as JSON ({exc})") from None


def _read_csv(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as CSV ({exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return df


class Html(str):
    """Markup built only by :func:`_h2`, :func:`_p`, :func:`_table` and :func:`_page`, which escape every text."""


def _cell(value: Any, fmt: str = ".4g") -> str:
    """The one place a value becomes page text: formatted (floats with ``fmt``, missing as —) and escaped."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "—"
    if isinstance(value, float | np.floating):
        return html.escape(f"{float(value):{fmt}}")
    return html.escape(str(value))


def _h2(text: str) -> Html:
    return Html(f"<h2>{_cell(text)}</h2>")


def _p(text: str) -> Html:
    return Html(f"<p>{_cell(text)}</p>")


def _table(df: pd.DataFrame, fmt: str = ".4g") -> Html:
    head = "".join(f"<th>{_cell(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v, fmt)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False)
    )
    return Html(f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


Image = Path | tuple[Path, str]  # a PNG, with a caption saying what it shows (else its file name)


def _figure(image: Image) -> str:
    path, caption = image if isinstance(image, tuple) else (image, image.name)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_cell(path.stem)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_cell(caption)}</figcaption></figure>"
    )


def _page(title: str, facts: dict[str, Any], blocks: list[Html], images: list[Image]) -> str:
    if not all(isinstance(b, Html) for b in blocks):
        raise TypeError("report blocks must be built by _h2, _p or _table (they escape their text)")
    rows = "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v, '.4f')}</td></tr>" for k, v in facts.items())
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_cell(title)}</title>'
        f'<style>{CSS}</style></head><body><h1>{_cell(title)}</h1><div class="table"><table>{rows}</table></div>'
        f"{''.join(blocks)}<h2>Plots</h2>{''.join(map(_figure, images))}</body></html>\n"
    )


def _style(ax: Any, title: str, xlabel: str, ylabel: str, legend: bool = False, **kw: Any) -> None:
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, **kw)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _confusion(ax: Any, cm: Any, title: str, fontsize: float = 8) -> None:
    cm = np.asarray(cm, dtype=float)
    ax.imshow(cm, cmap="Blues")
    for i, j in zip(*np.nonzero(cm), strict=True):  # zero cells stay blank: a matrix of 0s is hard to read
        color = "white" if cm[i, j] > cm.max() / 2 else "black"
        ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", fontsize=fontsize, color=color, in_layout=False)
    ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(cm)), yticks=range(len(cm)))
