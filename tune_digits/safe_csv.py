"""CSV text a spreadsheet opens without running anything (OWASP "CSV injection").

A text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets; :func:`csv_safe_cell` prefixes such a cell
with a single quote, which those tools show as text. Numbers (``-0.5``, ``1e-3`` as a number or
as its text) are kept as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    if text != text.strip():
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_safe_cell(value: Any) -> Any:
    """``value``, or ``'`` + ``value`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
        return "'" + value
    return value


def csv_name(name: str) -> str:
    """``name`` fit for one CSV cell on one line: control characters, line breaks and undecodable bytes escaped.

    A newline becomes the two characters backslash and n, an undecodable byte ``\\udcff`` and so on; printable
    text, non-ASCII letters included, is kept. Commas and quotes need nothing here: the CSV writer quotes such cells.
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in name)


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A whole CSV file (header first) with every cell passed through :func:`csv_safe_cell`."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow([csv_safe_cell(c) for c in header])
    writer.writerows([csv_safe_cell(c) for c in row] for row in rows)
    return buf.getvalue()
